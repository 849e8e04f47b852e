"""What a warp's tensor-core instruction computes, bit for bit as isasim defines it:
`mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32` (and its `.bf16` twin), D = A . B + C for a 16x16 fp16
(bf16) A, a 16x8 fp16 (bf16) B and a 16x8 float32 C, spread over the registers of the warp's 32 lanes as the
PTX ISA defines the fragments (PTX ISA 8.0, sec. 9.7.13.4.8, "Matrix Fragments for mma.m16n8k16 with floating
point type": one layout for .f16 and .bf16). With
g = lane / 4 and t = lane % 4:

- A, four .f16x2 registers: register r holds row g + 8 (r % 2), columns 2t + 8 (r / 2) and the next one;
- B, two .f16x2 registers: register r holds rows (k) 2t + 8r and the next one, column (n) g;
- C and D, four float32 registers: register i holds row g + 8 (i / 2), column 2t + i % 2.

Of each .f16x2 pair, the lower-numbered element is in the low 16 bits (`cvt.rn.f16x2.f32 d, a, b` puts b
there; `cvt.rn.bf16x2.f32` packs bf16 the same way, rounding to nearest even and keeping denormals, as it
has no .ftz). The products of fp16 numbers are exact in float32, and so are those of bf16 numbers (8-bit
significands) wherever they stay in float32's normal range; isasim adds the 16 of each output to its
accumulator in k order, each sum rounded to nearest even. The PTX ISA does not fix that order, and the
hardware sums differently (models/fp16.py): so these are isasim's bits, which the executors and the
reference share.
"""

from __future__ import annotations

import numpy as np

from isasim.isa import bfloat16

F32 = np.float32
M, N, K = 16, 8, 16
WARP = 32


def pack_f16x2(hi, lo) -> np.ndarray:
    """Two float32 rounded to fp16 (nearest even) in one 32-bit value, lo in the low half (as int64 bits)."""
    h = np.asarray(hi, F32).astype(np.float16).view(np.uint16).astype(np.int64)
    lo16 = np.asarray(lo, F32).astype(np.float16).view(np.uint16).astype(np.int64)
    return (h << 16) | lo16


def pack_bf16x2(hi, lo) -> np.ndarray:
    """Two float32 rounded to bf16 (nearest even, denormals kept) in one 32-bit value, lo in the low half."""
    return (bfloat16.to_bf16(hi).astype(np.int64) << 16) | bfloat16.to_bf16(lo).astype(np.int64)


def _halves(reg: np.ndarray, bf16: bool) -> tuple[np.ndarray, np.ndarray]:
    """A .f16x2 (.bf16x2) register's (low, high) element as float32."""
    bits = np.asarray(reg, np.int64) & 0xFFFFFFFF
    if bf16:
        return bfloat16.from_bf16(bits & 0xFFFF), bfloat16.from_bf16(bits >> 16)
    low = (bits & 0xFFFF).astype(np.uint16).view(np.float16).astype(F32)
    high = (bits >> 16).astype(np.uint16).view(np.float16).astype(F32)
    return low, high


def _lanes() -> tuple[np.ndarray, np.ndarray]:
    lane = np.arange(WARP)
    return lane // 4, lane % 4


def matrices(a: list, b: list, c: list, bf16: bool = False) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The warps' A [W, 16, 16], B [W, 16, 8] and C [W, 16, 8] from their fragments (each register a [W, 32]
    array over the lanes; A and B hold bf16 pairs where `bf16`, else fp16 ones)."""
    g, t = _lanes()
    warps = np.asarray(a[0]).shape[0]
    am = np.zeros((warps, M, K), F32)
    for r in range(4):
        low, high = _halves(a[r], bf16)
        rows, cols = g + 8 * (r % 2), 2 * t + 8 * (r // 2)
        am[:, rows, cols], am[:, rows, cols + 1] = low, high
    bm = np.zeros((warps, K, N), F32)
    for r in range(2):
        low, high = _halves(b[r], bf16)
        bm[:, 2 * t + 8 * r, g], bm[:, 2 * t + 8 * r + 1, g] = low, high
    cm = np.zeros((warps, M, N), F32)
    for i in range(4):
        cm[:, g + 8 * (i // 2), 2 * t + i % 2] = np.asarray(c[i], F32)
    return am, bm, cm


def product(am: np.ndarray, bm: np.ndarray, cm: np.ndarray) -> np.ndarray:
    """C + A . B, the 16 exact products of each output added in k order, each sum rounded (float32)."""
    d = cm.astype(F32)
    for k in range(K):
        d = d + am[:, :, k, None] * bm[:, None, k, :]
    return d


def mma_m16n8k16(a: list, b: list, c: list, bf16: bool = False) -> list[np.ndarray]:
    """The four D registers of every warp's lanes, from flat per-thread arrays of the ten source registers
    (threads in whole warps, in order)."""
    shape = np.shape(c[0])
    per_warp = [np.asarray(x).reshape(-1, WARP) for x in (*a, *b, *c)]
    d = product(*matrices(per_warp[:4], per_warp[4:6], per_warp[6:], bf16))
    g, t = _lanes()
    return [d[:, g + 8 * (i // 2), 2 * t + i % 2].reshape(shape) for i in range(4)]


# ---- int8: mma.sync.aligned.m16n8k32.row.col.s32.s8.s8.s32 ------------------------------------------------
# The same lanes, four signed bytes to a 32-bit register, the lowest k in the lowest byte (PTX ISA, "Matrix
# Fragments for mma.m16n8k32" with .s8): A register r holds row g + 8 (r % 2), columns 4t + 16 (r / 2) and the
# next three; B register r holds rows (k) 4t + 16 r and the next three, column g; C and D are int32 as above.
# Integer products and sums are exact, so any order gives these bits: the hardware's too.
K8 = 32


def _bytes(reg: np.ndarray) -> list[np.ndarray]:
    """A register's four signed bytes, lowest first, as int64."""
    bits = np.asarray(reg, np.int64) & 0xFFFFFFFF
    return [((bits >> (8 * i)) & 0xFF).astype(np.uint8).view(np.int8).astype(np.int64) for i in range(4)]


def int_matrices(a: list, b: list) -> tuple[np.ndarray, np.ndarray]:
    """The warps' A [W, 16, 32] and B [W, 32, 8] (int64) from their int8 fragments ([W, 32] per register)."""
    g, t = _lanes()
    warps = np.asarray(a[0]).shape[0]
    am = np.zeros((warps, M, K8), np.int64)
    for r in range(4):
        for i, v in enumerate(_bytes(a[r])):
            am[:, g + 8 * (r % 2), 4 * t + 16 * (r // 2) + i] = v
    bm = np.zeros((warps, K8, N), np.int64)
    for r in range(2):
        for i, v in enumerate(_bytes(b[r])):
            bm[:, 4 * t + 16 * r + i, g] = v
    return am, bm


def mma_m16n8k32_s8(a: list, b: list, c: list) -> list[np.ndarray]:
    """The four int32 D registers of every warp's lanes (as int64), C + A . B wrapped to 32 bits as the
    hardware's .s32 accumulators without .satfinite."""
    shape = np.shape(c[0])
    per_warp = [np.asarray(x).reshape(-1, WARP) for x in (*a, *b, *c)]
    am, bm = int_matrices(per_warp[:4], per_warp[4:6])
    g, t = _lanes()
    cm = np.zeros((am.shape[0], M, N), np.int64)
    for i in range(4):
        cm[:, g + 8 * (i // 2), 2 * t + i % 2] = per_warp[6 + i]
    d = cm + np.einsum("wmk,wkn->wmn", am, bm)
    d = (d + 2**31) % 2**32 - 2**31
    return [d[:, g + 8 * (i // 2), 2 * t + i % 2].reshape(shape) for i in range(4)]
