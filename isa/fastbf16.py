"""Arm's bfdot (isa/bfloat16.py `bfdot`), the executors' slowest bf16 step in numpy, in C: the same
operations per lane (exact products in double, TwoSum for each addition's error, round to odd on the double's
bits, denormals flushed), over contiguous float32 arrays. isa/bfloat16.py keeps the numpy formulation as the
definition and uses this where a C compiler is found; tests/test_bf16.py holds the two equal bit for bit."""

from __future__ import annotations

import ctypes

import numpy as np

from isasim.isa import toolchain

SOURCE = r"""
#include <float.h>
#include <math.h>
#include <stdint.h>
#include <string.h>

static inline float f32(uint32_t bits) { float f; memcpy(&f, &bits, 4); return f; }
static inline float flushed(float x) { return fabsf(x) < FLT_MIN ? copysignf(0.0f, x) : x; }

/* s + err (err: what the double sum s lost) rounded to float by round to odd; tiny values flush to zero,
   values of 2^128 or more overflow to infinity (below it, truncation keeps the largest float) */
static inline float odd(double s, double err) {
    if (fabs(s) < (double)FLT_MIN) return copysignf(0.0f, (float)s);
    uint64_t b, dropped = (1ull << 29) - 1, ulp = 1ull << 29;
    memcpy(&b, &s, 8);
    uint64_t low = b & dropped, t = b & ~dropped;
    int inside = low == 0 && err != 0 && ((err < 0) != (s < 0));
    if (fabs(s) > 0x1p128 || (fabs(s) == 0x1p128 && !inside)) return copysignf(INFINITY, (float)s);
    if (inside) t -= ulp;
    if (low != 0 || err != 0) t |= ulp;
    double r;
    memcpy(&r, &t, 8);
    return (float)r;
}

static inline float add_odd(float x, float y) {
    double X = x, Y = y, s = X + Y, bb = s - X, err = (X - (s - bb)) + (Y - bb);
    return odd(s, err);
}

void bfdot_flat(long n, const float *acc, const uint32_t *a, const uint32_t *b, float *out) {
    for (long i = 0; i < n; i++) {
        float a0 = flushed(f32(a[i] << 16)), a1 = flushed(f32(a[i] & 0xFFFF0000u));
        float b0 = flushed(f32(b[i] << 16)), b1 = flushed(f32(b[i] & 0xFFFF0000u));
        float p0 = odd((double)a0 * b0, 0.0), p1 = odd((double)a1 * b1, 0.0);
        out[i] = add_odd(flushed(acc[i]), add_odd(p0, p1));
    }
}
"""
_LIB: list = []


def _function():
    if not _LIB:
        try:
            lib = toolchain.c_library(SOURCE, "bfdot_flat")
            lib.bfdot_flat.restype = None
            lib.bfdot_flat.argtypes = [ctypes.c_long] + [ctypes.c_void_p] * 4
            _LIB.append(lib.bfdot_flat)
        except Exception:  # no compiler: the numpy formulation serves
            _LIB.append(None)
    return _LIB[0]


def bfdot(acc, a, b) -> np.ndarray | None:
    """bfloat16.bfdot(acc, a, b) in C; None where the C library is not available."""
    fn = _function()
    if fn is None:
        return None
    ops = np.broadcast_arrays(np.asarray(acc, np.float32), np.asarray(a, np.float32), np.asarray(b, np.float32))
    acc, a, b = (np.ascontiguousarray(x) for x in ops)
    out = np.empty_like(acc)
    fn(out.size, acc.ctypes.data, a.ctypes.data, b.ctypes.data, out.ctypes.data)
    return out
