"""The fused multiply-add the executors run most (every GEMM's inner loop), in C: libm's `fmaf`, which rounds
once as the hardware's FMA does (C99 7.12.13.1), walked over numpy's broadcast strides in one pass.

isa/semantics.py keeps its numpy formulation as the definition and uses this where a C compiler is found
(the library is built once and cached, isa/toolchain.py `c_library`); tests/test_executors.py holds the two
equal bit for bit, hard rounding cases included.

The executors' operands are broadcast outer products: a vector loop's lanes (4 on NEON, 16 on AVX-512)
against registers replicated over rows, so the innermost axis is often short. Axes that every operand walks
alike are merged first (numpy's own iterator does the same), and the C walks the last two axes as plain loops
and the rest by an odometer that moves pointers, so a short inner axis costs no index arithmetic.
"""

from __future__ import annotations

import ctypes

import numpy as np

from isasim.isa import toolchain

MAX_DIMS = 16
SOURCE = r"""
#include <math.h>
typedef const char *ptr;
/* out (C-contiguous, `shape`) = a * b + c; each operand walked with byte strides (0 along a broadcast axis);
   ndim >= 2 (the caller pads with axes of one) */
void fma_nd(int ndim, const long *shape, ptr a, const long *sa, ptr b, const long *sb, ptr c, const long *sc,
            float *restrict out) {
    long idx[16] = {0}, outer = 1;
    long n1 = shape[ndim - 2], n0 = shape[ndim - 1];
    long a1 = sa[ndim - 2], b1 = sb[ndim - 2], c1 = sc[ndim - 2];
    long a0 = sa[ndim - 1], b0 = sb[ndim - 1], c0 = sc[ndim - 1];
    for (int d = 0; d < ndim - 2; d++) outer *= shape[d];
    if (n0 <= 0 || n1 <= 0) return;
    for (long r = 0; r < outer; r++) {
        for (long j = 0; j < n1; j++, out += n0) {
            const float *restrict pa = (const float *)(a + j * a1), *restrict pb = (const float *)(b + j * b1),
                        *restrict pc = (const float *)(c + j * c1);
            /* the strides a GEMM's inner loop has, written out so the compiler vectorises them; a vector
               register's lanes (4, 8 or 16) as fixed-length loops, which it turns into whole vectors */
            if (a0 == 4 && b0 == 4 && c0 == 4 && n0 == 4)
                for (long i = 0; i < 4; i++) out[i] = fmaf(pa[i], pb[i], pc[i]);
            else if (a0 == 4 && b0 == 4 && c0 == 4 && n0 == 8)
                for (long i = 0; i < 8; i++) out[i] = fmaf(pa[i], pb[i], pc[i]);
            else if (a0 == 4 && b0 == 4 && c0 == 4 && n0 == 16)
                for (long i = 0; i < 16; i++) out[i] = fmaf(pa[i], pb[i], pc[i]);
            else if (a0 == 4 && b0 == 4 && c0 == 4)
                for (long i = 0; i < n0; i++) out[i] = fmaf(pa[i], pb[i], pc[i]);
            else if (a0 == 0 && b0 == 4 && c0 == 4)
                for (long i = 0; i < n0; i++) out[i] = fmaf(pa[0], pb[i], pc[i]);
            else if (a0 == 4 && b0 == 0 && c0 == 4)
                for (long i = 0; i < n0; i++) out[i] = fmaf(pa[i], pb[0], pc[i]);
            else
                for (long i = 0; i < n0; i++)
                    out[i] = fmaf(*(const float *)((ptr)pa + i * a0), *(const float *)((ptr)pb + i * b0),
                                  *(const float *)((ptr)pc + i * c0));
        }
        for (int d = ndim - 3; d >= 0; d--) {  /* the odometer: the next outer index, pointers moved with it */
            a += sa[d]; b += sb[d]; c += sc[d];
            if (++idx[d] < shape[d]) break;
            a -= sa[d] * shape[d]; b -= sb[d] * shape[d]; c -= sc[d] * shape[d];
            idx[d] = 0;
        }
    }
}

/* the common case, operands of one shape and contiguous: out[i] = a[i] * b[i] + c[i] */
void fma_flat(long n, const float *restrict a, const float *restrict b, const float *restrict c,
              float *restrict out) {
    for (long i = 0; i < n; i++) out[i] = fmaf(a[i], b[i], c[i]);
}
"""
_LIB: list = []  # [(fma_nd, fma_flat)] or [None] when no compiler is found


def _functions():
    if not _LIB:
        try:
            lib = toolchain.c_library(SOURCE, "fma_nd")
            lib.fma_nd.restype = lib.fma_flat.restype = None
            # declared, so a call converts its arguments without guessing (the per-call cost counts: the
            # executors call this for every FMA instruction)
            lib.fma_flat.argtypes = [ctypes.c_long] + [ctypes.c_void_p] * 4
            _LIB.append((lib.fma_nd, lib.fma_flat))
        except Exception:  # no compiler (or it failed): the numpy formulation serves
            _LIB.append(None)
    return _LIB[0]


def _merged(shape: tuple[int, ...], strides: list[tuple[int, ...]]) -> tuple[list[int], list[list[int]]]:
    """The same walk over fewer axes: axes of one dropped, and each axis merged into the one before it
    wherever every operand steps across both as across one (stride before = stride after x its length)."""
    dims, walks = [], [[] for _ in strides]
    for d, n in enumerate(shape):
        if n == 1:
            continue
        if dims and all(w[-1] == s[d] * n for w, s in zip(walks, strides)):
            dims[-1] *= n
            for w, s in zip(walks, strides):
                w[-1] = s[d]
            continue
        dims.append(n)
        for w, s in zip(walks, strides):
            w.append(s[d])
    while len(dims) < 2:  # the C walks two axes at least
        dims.insert(0, 1)
        for w in walks:
            w.insert(0, 0)
    return dims, walks


def fma(a, b, c) -> np.ndarray | None:
    """a*b + c in float32, rounded once; None where the C library is not available."""
    fns = _functions()
    if fns is None:
        return None
    if (type(a) is np.ndarray and type(b) is np.ndarray and type(c) is np.ndarray and a.dtype == b.dtype == c.dtype
            == np.float32 and a.shape == b.shape == c.shape and a.flags.c_contiguous and b.flags.c_contiguous
            and c.flags.c_contiguous):
        out = np.empty_like(a)
        fns[1](a.size, a.ctypes.data, b.ctypes.data, c.ctypes.data, out.ctypes.data)
        return out
    fn = fns[0]
    ops = [np.asarray(x, dtype=np.float32) for x in (a, b, c)]
    shape = np.broadcast_shapes(*(x.shape for x in ops))
    views = [np.broadcast_to(x, shape) for x in ops]
    out = np.empty(shape, dtype=np.float32)
    dims, walks = _merged(shape, [v.strides for v in views] + [out.strides])
    if len(dims) > MAX_DIMS:
        return None
    longs = ctypes.c_long * len(dims)
    args = [ctypes.c_int(len(dims)), longs(*dims)]
    for v, w in zip(views, walks):
        args += [ctypes.c_void_p(v.ctypes.data), longs(*w)]
    fn(*args, ctypes.c_void_p(out.ctypes.data))
    return out
