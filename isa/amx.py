"""What the AMX tile multiplies compute, bit for bit, as the Intel SDM (vol. 2, TDPBUSD and TDPBF16PS) defines
them. A tile register's value is a float32 array whose trailing axis holds its rows x 16 dwords row-major (as
the executors keep every register: one array slot per lane, leading axes for loop iterations run together).

- TDPBUSD: C[m, n] += sum over k of the four unsigned bytes of A[m, k] times the four signed bytes of B[k, n],
  in int32 (exact here: 7-bit activations, models/quantize.py).
- TDPBF16PS: per row m and column n, two float32 partial sums start at zero, take the even and the odd bf16
  products of each k in turn (each a fused multiply-add, nearest even, denormals as zero and flushed), are
  added together, and the sum is added to C[m, n]: the SDM's pseudo-code, which real hardware may sum in
  another order (not run here: no AMX host).
"""

from __future__ import annotations

import numpy as np

from isasim.isa.bfloat16 import flushed, halves

F32 = np.float32
COLS = 16  # dwords in a row of the accumulator and B tiles used here (64 bytes)


def _grid(x, rows: int, dwords: int) -> np.ndarray:
    x = np.asarray(x, dtype=F32)
    return x.reshape(x.shape[:-1] + (rows, dwords))


def tdpbusd(a, b, c, rows: int, kd: int) -> np.ndarray:
    """C (rows x 16 int32) + A (rows x kd dwords of 4 unsigned bytes) . B (kd x 16 dwords of 4 signed bytes)."""
    ab = _grid(a, rows, kd).view(np.uint8).astype(np.int64).reshape(np.shape(a)[:-1] + (rows, kd, 4))
    bb = _grid(b, kd, COLS).view(np.int8).astype(np.int64).reshape(np.shape(b)[:-1] + (kd, COLS, 4))
    acc = _grid(c, rows, COLS).view(np.int32).astype(np.int64)
    total = acc + np.einsum("...mkj,...knj->...mn", ab, bb)
    out = total.astype(np.int32).view(F32)
    return out.reshape(out.shape[:-2] + (rows * COLS,))


def largest_divisor(n: int, most: int = 16) -> int:
    """The tile extent the AMX kernels use for a dimension of n (rows of a tile, or its k dwords)."""
    return max(d for d in range(1, min(n, most) + 1) if n % d == 0)


def bf16_tile_product(a, b, acc, fma_f32) -> np.ndarray:
    """acc [.., M, N] + A [.., M, kd] . B [.., kd, N] (bf16 pairs as float32 bit patterns), as one TDPBF16PS
    computes each of its elements: even and odd partial sums from zero, then their sum added to acc."""
    a0, a1 = (flushed(h) for h in halves(a))
    b0, b1 = (flushed(h) for h in halves(b))
    shape = np.broadcast_shapes(a0.shape[:-1] + (1,), b0.shape[:-2] + (1, b0.shape[-1]))
    even, odd = np.zeros(shape, F32), np.zeros(shape, F32)
    for k in range(a0.shape[-1]):
        even = flushed(fma_f32(a0[..., :, k, None], b0[..., None, k, :], even))
        odd = flushed(fma_f32(a1[..., :, k, None], b1[..., None, k, :], odd))
    return flushed(flushed(np.asarray(acc, F32)) + flushed(even + odd)).astype(F32)


def tdpbf16ps(a, b, c, rows: int, kd: int, fma_f32) -> np.ndarray:
    """C (rows x 16 float32) + A (rows x kd bf16 pairs) . B (kd x 16 bf16 pairs), in the SDM's operations."""
    out = bf16_tile_product(_grid(a, rows, kd), _grid(b, kd, COLS), _grid(c, rows, COLS), fma_f32)
    return out.reshape(out.shape[:-2] + (rows * COLS,))
