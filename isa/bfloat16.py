"""bfloat16 arithmetic as the hardware defines it, bit for bit, on numpy arrays.

A bfloat16 is the upper 16 bits of a float32 (8-bit exponent, 7-bit fraction). Vector registers hold bf16
pairs in 32-bit lanes: element 0 in the low half, element 1 in the high half.

- Conversion from float32 rounds to nearest even. Intel's VCVTNE(2)PS2BF16 flushes denormal inputs to zero
  (Intel SDM vol. 2, "VCVTNE2PS2BF16", convert_fp32_to_bfloat16); Arm's BFCVTN follows FPCR, whose default
  under Linux (FZ = 0) keeps them (Arm ARM, FPConvertBF).
- Intel's VDPBF16PS (SDM vol. 2, "VDPBF16PS") is two float32 fused multiply-adds per lane, the odd (high)
  pair first, rounded to nearest even, with denormal inputs treated as zero and denormal outputs flushed.
- Arm's BFDOT without FEAT_EBF16 (Arm ARM, BFDotAdd: FPCR is ignored) rounds to odd: the two products (exact,
  8-bit by 8-bit fractions), their sum, and that sum added to the accumulator, each rounded to odd, with
  denormal inputs and outputs flushed to zero. QEMU's bfdotadd (target/arm/vec_helper.c) implements the
  same, and the tests run the emitted code under it.
NaNs are not modelled: BERT has none.
"""

from __future__ import annotations

import numpy as np

from isasim.isa import fastbf16

F32, U32, U16 = np.float32, np.uint32, np.uint16
MIN_NORMAL = 2.0 ** -126
OVERFLOW = 2.0 ** 128  # round to odd never carries into the exponent: only values from 2^128 up overflow
HIGH = U32(0xFFFF0000)


def _bits(x) -> np.ndarray:
    return np.asarray(x, dtype=F32).view(U32)


def flushed(x) -> np.ndarray:
    """float32 (or float64) values with those below the smallest normal float32 made signed zeros."""
    x = np.asarray(x)
    return np.where(np.abs(x) < MIN_NORMAL, np.copysign(np.zeros_like(x), x), x)


def to_bf16(x, flush_denormals: bool = False) -> np.ndarray:
    """float32 values rounded to bfloat16, nearest even, as their 16 bits (uint16): the rounding bias trick
    of the Intel SDM's convert_fp32_to_bfloat16, exact for normal and denormal values alike."""
    b = _bits(flushed(np.asarray(x, dtype=F32)) if flush_denormals else x).astype(np.uint64)
    rounded = (b + 0x7FFF + ((b >> 16) & 1)) >> 16
    return rounded.astype(U16)


def from_bf16(bits) -> np.ndarray:
    """bfloat16 bits (uint16) as the float32 values they are exactly."""
    return (np.asarray(bits, dtype=U16).astype(U32) << 16).view(F32)


def halves(raw) -> tuple[np.ndarray, np.ndarray]:
    """(element 0, element 1) of the bf16 pair in each 32-bit lane (a float32 array holding the raw bits),
    each as float32."""
    b = _bits(raw)
    return (b << 16).view(F32), (b & HIGH).view(F32)


def vdpbf16ps(acc, a, b, fma_f32) -> np.ndarray:
    """Intel VDPBF16PS on each lane: acc + a1*b1 + a0*b0, two fused multiply-adds (high pair first), round to
    nearest even, denormal inputs as zero, denormal results flushed. `fma_f32` is the float32 fused
    multiply-add (isa/semantics.py)."""
    a0, a1 = (flushed(h) for h in halves(a))
    b0, b1 = (flushed(h) for h in halves(b))
    t = flushed(fma_f32(a1, b1, flushed(np.asarray(acc, dtype=F32))))
    return flushed(fma_f32(a0, b0, t)).astype(F32)


DROPPED = np.uint64((1 << 29) - 1)  # the float64 fraction bits a float32 does not have
ULP = np.uint64(1 << 29)  # a float32's last fraction bit, in a float64's bits


def _round_odd(s: np.ndarray, err: np.ndarray) -> np.ndarray:
    """The exact value s + err (float64 s, and the error of the sum that gave it) rounded to float32 by round
    to odd: toward zero, and the last bit set when anything was discarded. Values too small for a normal
    float32 flush to zero (tininess before rounding); values of 2^128 or more overflow to infinity (below it,
    truncation keeps the largest float32).
    On the float64's bits: clearing the 29 fraction bits float32 lacks truncates toward zero, in either sign."""
    s = np.asarray(s, dtype=np.float64)
    b = s.view(np.uint64)
    low = b & DROPPED
    t = b & ~DROPPED
    # s fits a float32, but the sum's error points toward zero: the value lies just inside it
    inside = (low == 0) & (err != 0) & ((err < 0) != (s < 0))
    t = np.where(inside, t - ULP, t)
    t = t | np.where((low != 0) | (err != 0), ULP, np.uint64(0))
    with np.errstate(over="ignore", invalid="ignore"):
        out = t.view(np.float64).astype(F32)  # exact: 24 significant bits (infinity from 2^128 on, replaced below)
    over = (np.abs(s) > OVERFLOW) | ((np.abs(s) == OVERFLOW) & ~inside)
    out = np.where(over, np.copysign(F32(np.inf), s).astype(F32), out)
    return np.where(np.abs(s) < MIN_NORMAL, np.copysign(F32(0), s).astype(F32), out).astype(F32)


def _add_odd(x, y) -> np.ndarray:
    """float32 x + y rounded to odd (see _round_odd): TwoSum gives the float64 sum's exact error."""
    x64, y64 = np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64)
    with np.errstate(invalid="ignore"):  # (an infinite sum has no finite error; it stays infinite)
        s = x64 + y64
        bb = s - x64
        err = (x64 - (s - bb)) + (y64 - bb)
    return _round_odd(s, err)


def bfdot(acc, a, b) -> np.ndarray:
    """Arm BFDOT on each lane: acc + (a0*b0 + a1*b1), every step rounded to odd, denormals flushed (module
    docstring): in C where a compiler is found (isa/fastbf16.py), else `bfdot_numpy`, its definition."""
    out = fastbf16.bfdot(acc, a, b)
    return bfdot_numpy(acc, a, b) if out is None else out


def bfdot_numpy(acc, a, b) -> np.ndarray:
    """bfdot in numpy. The products of two bf16 are exact in float64 and, unless tiny or huge, in float32."""
    a0, a1 = (flushed(h) for h in halves(a))
    b0, b1 = (flushed(h) for h in halves(b))
    zero = np.zeros((), np.float64)
    p0 = _round_odd(a0.astype(np.float64) * b0, zero)
    p1 = _round_odd(a1.astype(np.float64) * b1, zero)
    return _add_odd(flushed(np.asarray(acc, dtype=F32)), _add_odd(p0, p1))
