"""Analytic cache-traffic model (isa/cache_model.py) against the exact LRU simulator (isa/lru_cache.py)."""

from __future__ import annotations


import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from isasim.isa.cache_model import (
    Access,
    CacheLevel,
    Loop,
    analytic_fills,
    analytic_traffic,
    compulsory_lines,
    distinct_lines,
    loop_footprints,
)
from isasim.isa.cache_model import Analysis  # item footprints, to skip cliff shapes
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


def no_reuse_fills(tree) -> float:
    """A wrong model on purpose: every access misses (ignores all temporal and spatial reuse)."""
    lines, _, _ = line_trace(tree, 64)
    return float(lines.size)


def random_cases(seed: int, count: int) -> list:
    rng = np.random.default_rng(seed)
    r = lambda hi: int(rng.integers(1, hi + 1))  # noqa: E731
    makers = [
        lambda: gemm(r(60), r(60), r(60)),
        lambda: gemm(r(60), r(60), r(60), b_transposed=True),
        lambda: add2d(r(200), r(200)),
        lambda: layernorm(r(64), r(800)),
        lambda: permute(r(40), r(40), r(40)),
        lambda: transpose(r(200), r(200)),
    ]
    return [makers[i % len(makers)]() for i in range(count)]


def error_table(trees) -> np.ndarray:
    """[case, level] relative error of the model's fills."""
    return np.array([rel_errors(t) for t in trees])


# ------------------------------------------------------------------------------------------- agreement
# Tolerances.  The model is a step (ramped) function of footprint / capacity while set-associative LRU
# loses reuse gradually around capacity, so a shape whose working set sits right at a cache size can be
# off by up to ~0.9 (measured).  Medians and 90th percentiles over a population are the honest accuracy
# statement; per-shape agreement is asserted only away from those cliffs.
MEDIAN_TOL = 0.05  # measured medians are ~0.00-0.01
P90_TOL = 0.30  # measured 90th percentiles: <= 0.28 (explicit L1), <= 0.18 (random L2)
CLIFF_FREE_TOL = 0.25  # worst seen: row seams of a column walk in the 4-set L1 (50 vs 32 lines)
CLIFF_FREE_SLACK_LINES = 8


def test_explicit_cases_agree():
    errs = error_table(EXPLICIT.values())
    assert np.all(np.median(errs, axis=0) <= MEDIAN_TOL), np.median(errs, axis=0)
    assert np.all(np.quantile(errs, 0.9, axis=0) <= P90_TOL), np.quantile(errs, 0.9, axis=0)


def test_random_population_agrees():
    trees = random_cases(seed=7, count=90)
    errs = error_table(trees)
    assert np.all(np.median(errs, axis=0) <= MEDIAN_TOL), np.median(errs, axis=0)
    assert np.all(np.quantile(errs, 0.9, axis=0) <= P90_TOL), np.quantile(errs, 0.9, axis=0)


def test_tolerance_rejects_models_without_reuse():
    """The same tolerances fail a model that ignores reuse, and one that ignores capacity limits."""
    trees = list(EXPLICIT.values()) + random_cases(seed=7, count=30)
    exact = np.array([simulate_lru(t, LEVELS).fills for t in trees], dtype=float)
    no_reuse = np.array([[no_reuse_fills(t)] * 3 for t in trees])
    infinite = np.array([[compulsory_lines(t, 64)] * 3 for t in trees])
    for wrong in (no_reuse, infinite):
        err = np.abs(wrong - exact) / exact
        median_ok = np.median(err, axis=0) <= MEDIAN_TOL
        p90_ok = np.quantile(err, 0.9, axis=0) <= P90_TOL
        assert not np.all(median_ok & p90_ok)
    # ignoring reuse is wrong by a large factor at every level
    assert np.all(np.median(np.abs(no_reuse - exact) / exact, axis=0) > 1.0)


def _near_cliff(tree, band=(0.6, 1.6)) -> bool:
    """Some reuse distance the model thresholds -- a loop iteration's footprint, or one body item's (the
    distance between sibling loops re-reading a row) -- lies where set conflicts blur the capacity step."""
    fps = list(loop_footprints(tree, 64).values())
    fps += [f for items in Analysis(tree, 64).item_footprint.values() for f in items]
    return any(band[0] * lv.lines <= f <= band[1] * lv.lines for lv in LEVELS for f in fps)


def _folds_sets(tree) -> bool:
    """A large-stride walk lands on too few sets to hold its lines (pitches at or near a power of two):
    set conflicts, which the model does not track -- a documented limit."""

    def walk(node, extents):
        if isinstance(node, Loop):
            return any(walk(item, extents + (node.extent,)) for item in node.body)
        for n, s in zip(extents, node.strides):
            if abs(s) > 64 and n > 1:
                for lv in LEVELS:
                    load = np.bincount(np.arange(n) * abs(s) // 64 % lv.sets)
                    if load.max() >= lv.assoc and n <= lv.lines:  # fits by capacity, not by sets
                        return True
        return False

    return walk(tree, ())


odd = st.integers(1, 48)


@st.composite
def kernels(draw):
    kind = draw(st.sampled_from(["gemm", "gemm_bt", "add", "ln", "permute", "transpose"]))
    if kind in ("gemm", "gemm_bt"):
        return gemm(draw(odd), draw(odd), draw(odd), b_transposed=kind == "gemm_bt")
    if kind == "add":
        return add2d(draw(st.integers(1, 120)), draw(st.integers(1, 120)))
    if kind == "ln":
        return layernorm(draw(st.integers(1, 40)), draw(st.integers(1, 600)))
    if kind == "permute":
        return permute(draw(odd), draw(odd), draw(odd))
    return transpose(draw(st.integers(1, 150)), draw(st.integers(1, 150)))


# derandomize: the model is an approximation with documented blind spots (a column walk over rows that end
# mid-line can miss ~30% more at L1 than predicted); CI checks the same 200 shapes every run instead of
# drawing new ones, and test_random_population_agrees bounds the error over the whole population.
@settings(max_examples=200, deadline=None, derandomize=True)
@given(kernels())
def test_agrees_away_from_capacity_cliffs(tree):
    if _near_cliff(tree) or _folds_sets(tree):
        return
    exact = simulate_lru(tree, LEVELS).fills
    model = analytic_fills(tree, LEVELS)
    for level, ex, mo in zip(LEVELS, exact, model):
        # + a few lines: seam lines of partial rows and the 4-set L1's conflicts are not tracked
        assert abs(mo - ex) <= CLIFF_FREE_TOL * ex + CLIFF_FREE_SLACK_LINES, (level.name, ex, mo)


# ------------------------------------------------------------------------------------------- invariants
@settings(max_examples=60, deadline=None)
@given(kernels())
def test_invariants(tree):
    exact = simulate_lru(tree, LEVELS)
    traffic = analytic_traffic(tree, LEVELS)
    compulsory = exact.distinct_lines * 64
    # the model's cold-miss count is the exact number of distinct lines
    assert compulsory_lines(tree, 64) == pytest.approx(exact.distinct_lines, rel=1e-9)
    for t in (traffic, exact.traffic()):
        assert t.l2 >= t.llc >= t.dram >= compulsory - 32  # rounding of expected fills
        assert t.l1 == exact.core_bytes
    # never more fills than lines touched by accesses (each access misses at worst)
    assert traffic.l2 <= no_reuse_fills(tree) * 64 + 32


@pytest.mark.parametrize("b_transposed", [False, True])
def test_gemm_traffic_monotone_in_size(b_transposed):
    sizes = [4, 8, 13, 20, 31, 37, 48, 64, 97, 128, 200, 513]
    prev = None
    for n in sizes:
        t = analytic_traffic(gemm(n, n, n, b_transposed), LEVELS)
        cur = (t.l1, t.l2, t.llc, t.dram)
        if prev is not None:
            assert all(c >= p for c, p in zip(cur, prev)), (n, prev, cur)
        prev = cur
    for dim in range(3):  # growing any single dimension
        prev = None
        for n in (5, 17, 37, 70, 150):
            shape = [23, 29, 31]
            shape[dim] = n
            t = analytic_traffic(gemm(*shape, b_transposed=b_transposed), LEVELS)
            cur = (t.l1, t.l2, t.llc, t.dram)
            if prev is not None:
                assert all(c >= p for c, p in zip(cur, prev)), (shape, prev, cur)
            prev = cur


# ------------------------------------------------------------------------------------------- unit checks
@pytest.mark.parametrize(
    "base,width,dims",
    [
        (0, 4, [(37, 4)]),  # partial last line
        (20, 4, [(37, 4)]),  # unaligned start
        (0, 4, [(37, 4), (11, 148)]),  # rows of 37 floats back to back
        (0, 4, [(9, 4), (11, 148)]),  # 36-byte runs at drifting offsets
        (0, 4, [(50, 256)]),  # transposed walk: one line per access
        (0, 4, [(13, 8)]),  # every other float: still every line
        (0, 32, [(7, 32), (5, 0)]),  # ymm vectors, stride-0 dim reused
        (640, 4, [(10, -4)]),  # descending walk
        (0, 8, [(3, 4), (4, 200), (5, 1000)]),  # three levels
    ],
)
def test_distinct_lines_exact(base, width, dims):
    addrs = np.array([base], dtype=np.int64)
    for n, s in dims:
        addrs = (addrs[:, None] + s * np.arange(n)[None, :]).ravel()
    lines = set()
    for a in addrs.tolist():
        lines.update(range(a // 64, (a + width - 1) // 64 + 1))
    assert distinct_lines(base, width, dims, 64) == len(lines)


def test_simulator_matches_reference_lru():
    """The vectorised per-set simulator against a naive one-line-at-a-time LRU."""
    rng = np.random.default_rng(3)
    lines = rng.integers(0, 200, size=5000) // rng.integers(1, 4, size=5000)
    level = CacheLevel("t", 1024, 4, 64)
    sets: dict[int, list[int]] = {}
    naive = []
    for x in lines.tolist():
        ways = sets.setdefault(x % level.sets, [])
        if x in ways:
            ways.remove(x)
        else:
            naive.append(x)
            if len(ways) == level.assoc:
                ways.pop(0)
        ways.append(x)
    assert lru_misses(lines, level).tolist() == naive


def test_tuple_kernel_and_validation():
    x = add2d(4, 37)
    # two kernels in sequence: the second reuses what the first left in cache
    seq = (x, x)
    assert simulate_lru(seq, LEVELS).fills[2] == simulate_lru(x, LEVELS).fills[2]
    assert analytic_fills(seq, LEVELS)[2] == pytest.approx(analytic_fills(x, LEVELS)[2])
    with pytest.raises(ValueError):
        analytic_traffic(Loop(3, (Access("a", 0, (), 4, False),)), LEVELS)
    with pytest.raises(ValueError):
        CacheLevel("bad", 1000, 3, 64)
