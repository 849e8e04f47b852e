"""Analytic cache-traffic model (isa/cache_model.py) against the exact LRU simulator (isa/lru_cache.py)."""

from __future__ import annotations

import statistics

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from isasim.isa.cache_model import (
    Access,
    CacheLevel,
    Loop,
    analytic_fills,
    analytic_traffic,
    compulsory_lines,
    distinct_lines,
)
from isasim.isa.lru_cache import line_trace, lru_misses, simulate_lru

# Small caches keep exact traces short while every kernel still crosses each capacity.
LEVELS = (
    CacheLevel("l1", 1024, 4, 64),
    CacheLevel("l2", 8 * 1024, 8, 64),
    CacheLevel("llc", 64 * 1024, 16, 64),
)
F32 = 4


class _Arena:
    """Disjoint, 64-byte aligned buffers."""

    def __init__(self) -> None:
        self.top = 0

    def alloc(self, nbytes: int) -> int:
        base = self.top
        self.top += -(-nbytes // 64) * 64
        return base


def acc(buf: str, base: int, strides, width: int = F32, store: bool = False) -> Access:
    return Access(buf, base, tuple(strides), width, store)


# ------------------------------------------------------------------------------------------------ kernels
def gemm(m: int, n: int, k: int, b_transposed: bool = False) -> Loop:
    """out[i,j] = sum_k A[i,k] * B[k,j] (or B[j,k]); loops i, j, k; accumulator kept in a register."""
    mem = _Arena()
    a, b, o = mem.alloc(m * k * F32), mem.alloc(k * n * F32), mem.alloc(m * n * F32)
    b_strides = (0, k * F32, F32) if b_transposed else (0, F32, n * F32)
    inner = Loop(k, (acc("A", a, (k * F32, 0, F32)), acc("B", b, b_strides)))
    return Loop(
        m,
        (
            Loop(
                n,
                (
                    acc("out", o, (n * F32, F32)),
                    inner,
                    acc("out", o, (n * F32, F32), store=True),
                ),
            ),
        ),
    )


def gemm_rmw(m: int, n: int, k: int) -> Loop:
    """GEMM whose innermost body loads and stores out[i,j] every k (no register accumulator)."""
    mem = _Arena()
    a, b, o = mem.alloc(m * k * F32), mem.alloc(k * n * F32), mem.alloc(m * n * F32)
    body = (
        acc("A", a, (k * F32, 0, F32)),
        acc("B", b, (0, F32, n * F32)),
        acc("out", o, (n * F32, F32, 0)),
        acc("out", o, (n * F32, F32, 0), store=True),
    )
    return Loop(m, (Loop(n, (Loop(k, body),)),))


def add2d(m: int, n: int, width: int = F32) -> Loop:
    """z = x + y over [m, n] fp32; `width` 32 is an 8-lane ymm vector (n must be a multiple of 8)."""
    mem = _Arena()
    x, y, z = (mem.alloc(m * n * F32) for _ in range(3))
    lanes = width // F32
    assert n % lanes == 0
    row, step = n * F32, width
    body = (acc("x", x, (row, step), width), acc("y", y, (row, step), width), acc("z", z, (row, step), width, True))
    return Loop(m, (Loop(n // lanes, body),))


def layernorm(m: int, n: int) -> Loop:
    """Per row: mean pass, variance pass, normalise pass writing y (gamma, beta broadcast over rows)."""
    mem = _Arena()
    x, g, b, y = mem.alloc(m * n * F32), mem.alloc(n * F32), mem.alloc(n * F32), mem.alloc(m * n * F32)
    row = n * F32
    return Loop(
        m,
        (
            Loop(n, (acc("x", x, (row, F32)),)),
            Loop(n, (acc("x", x, (row, F32)),)),
            Loop(
                n,
                (
                    acc("x", x, (row, F32)),
                    acc("gamma", g, (0, F32)),
                    acc("beta", b, (0, F32)),
                    acc("y", y, (row, F32), store=True),
                ),
            ),
        ),
    )


def permute(a: int, b: int, c: int) -> Loop:
    """out[b, a, c] = in[a, b, c], loops over the output (b, a, c)."""
    mem = _Arena()
    src, dst = mem.alloc(a * b * c * F32), mem.alloc(a * b * c * F32)
    load = acc("in", src, (c * F32, b * c * F32, F32))
    store = acc("out", dst, (a * c * F32, c * F32, F32), store=True)
    return Loop(b, (Loop(a, (Loop(c, (load, store)),)),))


def transpose(m: int, n: int) -> Loop:
    """out[j, i] = in[i, j] walked over the output: the load's innermost stride is a whole row."""
    mem = _Arena()
    src, dst = mem.alloc(m * n * F32), mem.alloc(m * n * F32)
    return Loop(n, (Loop(m, (acc("in", src, (F32, n * F32)), acc("out", dst, (m * F32, F32), store=True))),))


EXPLICIT = {
    # tiny: everything fits in L1
    "gemm_4x5x6": gemm(4, 5, 6),
    "add_5x7": add2d(5, 7),
    "ln_3x9": layernorm(3, 9),
    # beyond L1, within L2
    "gemm_12x13x14": gemm(12, 13, 14),
    "gemm_bt_12x13x14": gemm(12, 13, 14, b_transposed=True),
    "add_16x37": add2d(16, 37),
    "ln_20x37": layernorm(20, 37),
    "permute_5x7x9": permute(5, 7, 9),
    # beyond L2 (and some beyond the LLC)
    "gemm_37x37x37": gemm(37, 37, 37),
    "gemm_bt_37x37x37": gemm(37, 37, 37, b_transposed=True),
    "gemm_rmw_30x33x41": gemm_rmw(30, 33, 41),
    "gemm_48x100x40": gemm(48, 100, 40),
    "gemm_bt_60x61x70": gemm(60, 61, 70, b_transposed=True),
    "gemm_70x90x110": gemm(70, 90, 110),
    "add_vec_64x200": add2d(64, 200, width=32),
    "add_150x130": add2d(150, 130),
    "ln_64x300": layernorm(64, 300),
    "ln_16x1500": layernorm(16, 1500),
    "permute_13x37x11": permute(13, 37, 11),
    "permute_40x50x6": permute(40, 50, 6),
    "transpose_37x45": transpose(37, 45),
    "transpose_150x170": transpose(150, 170),
}


def rel_errors(tree) -> list[float]:
    """Relative error of the model's fills, per level."""
    exact = simulate_lru(tree, LEVELS).fills
    model = analytic_fills(tree, LEVELS)
    return [abs(mo - ex) / ex for mo, ex in zip(model, exact)]
