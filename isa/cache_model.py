"""Analytic memory-traffic model for loop nests: bytes moved into each cache level.

A kernel's memory behaviour is a loop tree (`Loop` nodes whose bodies hold `Access`es and inner `Loop`s,
in program order).  `analytic_traffic` estimates, per cache level, the line fills the tree causes, in time
O(depth x size of the tree) -- never O(trip counts), so it serves the full-size models (~10^10 accesses).
`isasim.isa.lru_cache.simulate_lru` is the exact reference it is tested against on small shapes.

Assumptions (shared with the simulator unless noted):
  * Cold caches at the start of the tree; nothing is reused across calls.
  * Write-allocate: a store fills its line exactly like a load.  Only fills are counted, never the dirty
    write-backs they later cause.
  * Inclusive hierarchy: level i+1 is consulted only on a miss in level i, so fills(i+1) <= fills(i).
  * Every level uses the same line size.  A level missing from `levels` passes traffic through (with only
    L1 and L2 given, `llc == dram`).
  * Model only (the simulator is exact): each cache is a fully associative LRU store of
    `capacity_fraction * size / line` lines, with the fits/does-not-fit step softened into a linear ramp
    (`DEFAULT_RAMP`) that stands in for set conflicts near capacity.  Sets are not otherwise modelled:
    power-of-two row pitches walked column-wise fold onto few sets and can miss more than predicted.

The model (the classic "footprint fits" reuse analysis, cf. Wolf & Lam, PLDI 1991; Ferrente, Sarkar & Thrash,
LCPC 1991):
  1. `distinct lines` of an access over a set of loops: dims with stride 0 (reuse) or extent 1 drop out; dims
     are sorted by |stride| and merged into one line-dense run while the gap between consecutive copies is
     under a line (every line of the span is then touched); the remaining dims repeat that run, and the
     lines each copy covers are counted exactly from the distribution of run start offsets modulo the line
     (this handles partial-line runs such as rows of 37 floats).  Interleaved repeats are capped by the span.
  2. The footprint of ONE iteration of a loop is the union of the distinct lines of every access in its
     body (accesses with identical address sets -- a load and store of one element, the same row read by
     three sibling loops -- count once).
  3. Reuse carried by a loop is captured iff one iteration's footprint fits in the cache (LRU reuse distance
     <= capacity; ramped, see above).  Seams between back-to-back rows count once; an access re-reading
     what an earlier sibling loop read in the same iteration hits for the share of its walk whose reuse
     distance (linear along the walk) fits.  For an access, walk its loops inner to outer while they fit; stop at the first that does
     not.  With p the outermost fitting loop, misses = distinct lines over loops p.. innermost x product of
     the extents of the loops outside p: every re-execution of loop p refetches (a cyclic LRU working set
     larger than the cache thrashes).  Accesses with identical address sets under the same loop p miss once.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from math import gcd, prod

import numpy as np

__all__ = [
    "Access",
    "Loop",
    "CacheLevel",
    "Traffic",
    "Kernel",
    "analytic_traffic",
    "analytic_fills",
    "compulsory_lines",
    "core_bytes",
    "distinct_lines",
    "loop_footprints",
    "DEFAULT_RAMP",
    "DEFAULT_CAPACITY_FRACTION",
]

# Share of a cache's lines the model treats as usable before reuse is lost.  1.0 = exact LRU capacity;
# measured against the exact simulator on the shapes in tests/test_cache_model.py.
DEFAULT_CAPACITY_FRACTION = 1.0
# Reuse kept fully below RAMP[0] x capacity, lost above RAMP[1] x capacity, linear in between.
DEFAULT_RAMP = (0.85, 1.25)  # fitted on ~300 random shapes against the exact simulator
_T_SAMPLES = 32


@dataclass(frozen=True)
class Access:
    """One load or store instruction in a loop body.

    `strides` gives the byte stride per ENCLOSING loop, outermost first, so `len(strides)` is the number of
    loops around the access.  Every execution touches bytes [addr, addr + width).
    """

    buffer: str
    base: int
    strides: tuple[int, ...]
    width: int
    is_store: bool

    def __post_init__(self) -> None:
        if self.width <= 0:
            raise ValueError(f"access width must be positive, got {self.width}")
        if self.base < 0:
            raise ValueError(f"access base must be non-negative, got {self.base}")


@dataclass(frozen=True)
class Loop:
    """A counted loop; `body` runs `extent` times, its items in program order."""

    extent: int
    body: tuple["Loop | Access", ...]

    def __post_init__(self) -> None:
        if self.extent < 0:
            raise ValueError(f"loop extent must be non-negative, got {self.extent}")


@dataclass(frozen=True)
class CacheLevel:
    name: str
    size: int
    assoc: int
    line: int

    def __post_init__(self) -> None:
        if self.line <= 0 or self.assoc <= 0 or self.size <= 0:
            raise ValueError(f"cache {self.name}: size, assoc and line must be positive")
        if self.size % (self.line * self.assoc):
            raise ValueError(f"cache {self.name}: size must be a multiple of line * assoc")

    @property
    def lines(self) -> int:
        return self.size // self.line

    @property
    def sets(self) -> int:
        return self.size // (self.line * self.assoc)


@dataclass(frozen=True)
class Traffic:
    """Bytes moved, per destination: `l1` is what the core loads and stores (sum of accesses x width);
    `l2` the bytes filled into L1 from L2 (L1 misses x line); `llc` L2 misses x line; `dram` LLC misses x
    line."""

    l1: int
    l2: int
    llc: int
    dram: int

    @staticmethod
    def from_fills(core: int, fills: Sequence[float], line: int) -> "Traffic":
        """Build from the core's bytes and per-level line fills (L1 first, 1 to 3 levels)."""
        if not 1 <= len(fills) <= 3:
            raise ValueError(f"expected 1 to 3 cache levels, got {len(fills)}")
        padded = list(fills) + [fills[-1]] * (3 - len(fills))
        l2, llc, dram = (int(round(f * line)) for f in padded)
        return Traffic(l1=int(core), l2=l2, llc=llc, dram=dram)


Kernel = Loop | Access | tuple["Loop | Access", ...]


# ---------------------------------------------------------------------------------------------- tree walk
@dataclass(frozen=True)
class _Site:
    """An access with its chain of enclosing loops, a virtual extent-1 root first."""

    access: Access
    chain: tuple[tuple[int, ...], ...]  # loop paths, root = ()
    extents: tuple[int, ...]
    strides: tuple[int, ...]  # aligned with chain (root stride 0)
    order: int  # program order of the access in the tree
    index: int  # position of the access in its loop's body


def _root(tree: Kernel) -> Loop:
    if isinstance(tree, tuple):
        return Loop(1, tree)
    return Loop(1, (tree,))


def _sites(root: Loop) -> list[_Site]:
    out: list[_Site] = []

    def walk(loop: Loop, path: tuple[int, ...], chain, extents) -> None:
        chain = chain + (path,)
        extents = extents + (loop.extent,)
        for i, item in enumerate(loop.body):
            if isinstance(item, Loop):
                walk(item, path + (i,), chain, extents)
            elif isinstance(item, Access):
                depth = len(chain) - 1
                if len(item.strides) != depth:
                    raise ValueError(
                        f"access to {item.buffer!r} has {len(item.strides)} strides but {depth} enclosing loops"
                    )
                out.append(_Site(item, chain, extents, (0,) + tuple(item.strides), len(out), i))
            else:
                raise TypeError(f"loop body item must be Loop or Access, got {type(item).__name__}")

    walk(root, (), (), ())
    return out


def _loops(root: Loop) -> Iterator[tuple[tuple[int, ...], Loop]]:
    stack: list[tuple[tuple[int, ...], Loop]] = [((), root)]
    while stack:
        path, loop = stack.pop()
        yield path, loop
        for i, item in enumerate(loop.body):
            if isinstance(item, Loop):
                stack.append((path + (i,), item))


# ---------------------------------------------------------------------------------------- line counting
def _norm_dims(dims: Sequence[tuple[int, int]]) -> tuple[tuple[int, int], ...]:
    """Canonical (stride, extent) multiset; a zero extent empties the whole set."""
    if any(n == 0 for n, _ in dims):
        return ((0, 0),)
    return tuple(sorted((s, n) for n, s in dims if n != 1 and s != 0))


def _spread(hist: np.ndarray, n: int, stride: int, line: int) -> np.ndarray:
    """Offsets (mod line) of n copies of `hist` shifted by 0, stride, 2*stride ... -- O(line^2), not O(n)."""
    r = stride % line
    period = line // gcd(r, line) if r else 1
    out = np.zeros_like(hist)
    full, extra = divmod(n, period)
    for t in range(min(period, n)):
        out += (full + (t < extra)) * np.roll(hist, (t * r) % line)
    return out


def distinct_lines(base: int, width: int, dims: Sequence[tuple[int, int]], line: int) -> float:
    """Lines touched by `width`-byte accesses at base + sum(i_k * stride_k), 0 <= i_k < extent_k.

    `dims` holds (extent, stride) pairs in any order.  Exact when at most one dim is left after merging the
    line-dense ones and the run copies do not interleave; otherwise capped by the span's lines.
    """
    if any(n == 0 for n, _ in dims):
        return 0.0
    live = []
    for n, s in dims:
        if n == 1 or s == 0:
            continue
        if s < 0:  # walk a descending dim from its lowest address
            base += (n - 1) * s
            s = -s
        live.append((s, n))
    live.sort()
    run = width
    i = 0
    while i < len(live) and live[i][0] < run + line:  # gaps under a line: every line in the span is hit
        s, n = live[i]
        run += (n - 1) * s
        i += 1
    hist = np.zeros(line, dtype=np.float64)
    hist[base % line] = 1.0
    span = run
    for s, n in live[i:]:
        hist = _spread(hist, n, s, line)
        span += (n - 1) * s
    per_offset = (np.arange(line) + run - 1) // line + 1
    total = float(hist @ per_offset)
    span_lines = (base % line + span - 1) // line + 1
    return min(total, float(span_lines))


# ------------------------------------------------------------------------------------------------ model
class Analysis:
    """Per-tree quantities that do not depend on the cache: footprints and per-site distinct lines."""

    def __init__(self, tree: Kernel, line: int) -> None:
        self.line = line
        self.root = _root(tree)
        self.sites = _sites(self.root)
        self.extent = {path: loop.extent for path, loop in _loops(self.root)}
        self._dl: dict[tuple, float] = {}
        self.footprint = self._footprints()
        self.item_footprint = self._items()

    def lines(self, site: _Site, p: int) -> float:
        """Distinct lines of `site` over chain[p:] (p == len(chain): a single execution)."""
        a = site.access
        dims = tuple(zip(site.extents[p:], site.strides[p:]))
        key = (a.base, a.width, _norm_dims(dims))
        if key not in self._dl:
            self._dl[key] = distinct_lines(a.base, a.width, dims, self.line)
        return self._dl[key]

    def _items(self) -> dict[tuple[int, ...], list[float]]:
        """Lines of one full execution of each body item of each loop (outer loop variables at zero)."""
        loops = dict(_loops(self.root))
        groups: dict[tuple, dict[tuple, _Site]] = {}
        for site in self.sites:
            for q, path in enumerate(site.chain):
                child = site.chain[q + 1][-1] if q + 1 < len(site.chain) else site.index
                inner = tuple(zip(site.extents[q + 1 :], site.strides[q + 1 :]))
                key = (site.access.base, site.access.width, site.strides[: q + 1], _norm_dims(inner))
                groups.setdefault((path, child), {}).setdefault(key, site)
        item_fp = {path: [0.0] * len(loop.body) for path, loop in loops.items()}
        for (path, child), members in groups.items():
            item_fp[path][child] = sum(self.lines(s, len(path) + 1) for s in members.values())
        return item_fp

    def _footprints(self) -> dict[tuple[int, ...], float]:
        """Lines touched by ONE iteration of each loop (outer loop variables at zero)."""
        groups: dict[tuple[int, ...], dict[tuple, _Site]] = {path: {} for path in self.extent}
        for site in self.sites:
            for q, path in enumerate(site.chain):
                a = site.access
                inner = tuple(zip(site.extents[q + 1 :], site.strides[q + 1 :]))
                key = (a.base, a.width, site.strides[: q + 1], _norm_dims(inner))
                groups[path].setdefault(key, site)
        fp = {}
        for path, members in groups.items():
            total = 0.0
            for site in members.values():
                q = site.chain.index(path)
                total += self.lines(site, q + 1)
            fp[path] = total
        return fp

    def fills(self, capacity_lines: float, ramp: tuple[float, float]) -> float:
        """Expected line fills into a cache holding `capacity_lines` lines.

        `ramp` = (lo, hi): a loop whose iteration footprint is under lo x capacity keeps its reuse, over
        hi x capacity loses it, and keeps the linear share in between (set conflicts below capacity, sets
        that still hold their lines above it)."""
        seen: set[tuple] = set()
        providers: dict[tuple, int] = {}  # reuse key under a loop -> latest body index that touched it
        total = 0.0
        for site in self.sites:
            depth = len(site.chain) - 1
            a = site.access
            # keep[q]: share of runs where the reuse carried by chain[q] and every loop inside it is kept
            keep = [0.0] * (depth + 2)
            keep[depth + 1] = 1.0
            for q in range(depth, -1, -1):
                ratio = self.footprint[site.chain[q]] / capacity_lines
                keep[q] = min(keep[q + 1], _kept(ratio, ramp))
            for p in range(depth + 1, -1, -1):  # p: outermost loop whose reuse is kept
                w = keep[p] - (keep[p - 1] if p > 0 else 0.0)
                if w <= 0.0:
                    continue
                dims = tuple(zip(site.extents[p:], site.strides[p:]))
                key = (site.chain[min(p, depth)], p > depth, a.base, a.width, site.strides[:p], _norm_dims(dims))
                if key in seen:  # an identical access under the same loop already fetched these lines
                    continue
                seen.add(key)
                m = p  # loops walking this access row after row share only seam lines, reused at once
                while m > 0 and self._adjacent(site, m - 1):
                    m -= 1
                miss = self.lines(site, m) * prod(site.extents[:m])
                if 0 < p <= depth:
                    miss += self._far_seams(site, p) * prod(site.extents[:p])
                if p > 0:  # chain[p - 1] loses reuse: an earlier sibling in its body may have our lines
                    miss *= 1.0 - self._sibling_hits(site, p - 1, capacity_lines, ramp, providers)
                total += w * miss
            for q in range(depth + 1):
                providers[self._provider_key(site, q)] = self._child_index(site, q)
        return total

    def _far_seams(self, site: _Site, p: int) -> float:
        """Lines refetched once per execution of chain[p] because they straddle two rows of a column walk.

        When chain[p] walks along rows (stride under a line, covering the pitch) while an inner loop steps
        from row to row, a line holding the end of row r and the start of row r+1 is used at the first
        and again at the last iteration of chain[p]: a reuse distance of the whole execution, which does
        not fit since the reuse of chain[p - 1] is lost."""
        s_p, n_p = site.strides[p], site.extents[p]
        if not 0 < s_p < self.line:
            return 0.0
        extra = 0.0
        for n, pitch in zip(site.extents[p + 1 :], site.strides[p + 1 :]):
            if n > 1 and pitch > self.line and pitch % self.line and n_p * s_p == pitch:
                unaligned = 1.0 - gcd(pitch, self.line) / self.line
                extra += (n - 1) * unaligned
        return extra

    @staticmethod
    def _provider_key(site: _Site, q: int) -> tuple:
        inner = _norm_dims(tuple(zip(site.extents[q + 1 :], site.strides[q + 1 :])))
        return (site.chain[q], site.access.base, site.access.width, site.strides[: q + 1], inner)

    def _sibling_hits(self, site: _Site, q: int, capacity: float, ramp, providers: dict) -> float:
        """Share of `site`'s lines still cached from an earlier sibling in the same iteration of chain[q].

        Both siblings walk the same lines in the same order, so the LRU reuse distance of the line at
        relative position t is (1 - t) * F(earlier) + F(siblings between) + t * F(ours) -- linear in t."""
        b = self._child_index(site, q)
        prev = providers.get(self._provider_key(site, q))
        if prev is None or prev >= b:
            return 0.0
        body_fp = self.item_footprint[site.chain[q]]
        start = body_fp[prev] + sum(body_fp[prev + 1 : b])
        slope = body_fp[b] - body_fp[prev]
        ts = (np.arange(_T_SAMPLES) + 0.5) / _T_SAMPLES
        return float(np.mean([_kept((start + t * slope) / capacity, ramp) for t in ts]))

    @staticmethod
    def _adjacent(site: _Site, q: int) -> bool:
        """Iterations of chain[q] walk `site` over back-to-back byte ranges (rows of a row-major walk).

        Consecutive iterations then share at most the partial line at the seam, reused at once, so the
        seam lines are counted once whatever the capacity."""
        s = site.strides[q]
        inner = [(n, st) for n, st in zip(site.extents[q + 1 :], site.strides[q + 1 :]) if n > 1 and st != 0]
        if s <= 0 or any(st < 0 for _, st in inner):
            return False
        run = site.access.width
        for st, n in sorted((st, n) for n, st in inner):
            if st > run:  # holes inside one iteration: the seam is not the only shared region
                return False
            run += (n - 1) * st
        return run <= s < run + site.access.width

    @staticmethod
    def _child_index(site: _Site, q: int) -> int:
        return site.chain[q + 1][-1] if q + 1 < len(site.chain) else site.index

def _kept(fill_ratio: float, ramp: tuple[float, float]) -> float:
    lo, hi = ramp
    if fill_ratio <= lo:
        return 1.0
    if fill_ratio >= hi:
        return 0.0
    return (hi - fill_ratio) / (hi - lo)


def check_levels(levels: Sequence[CacheLevel]) -> int:
    if not 1 <= len(levels) <= 3:
        raise ValueError(f"expected 1 to 3 cache levels, got {len(levels)}")
    line = levels[0].line
    if any(lv.line != line for lv in levels):
        raise ValueError("all cache levels must share one line size")
    return line


def core_bytes(tree: Kernel) -> int:
    """Bytes the core loads and stores: sum over accesses of width x executions."""
    return sum(s.access.width * prod(s.extents) for s in _sites(_root(tree)))


def compulsory_lines(tree: Kernel, line: int) -> float:
    """Model estimate of the distinct lines the whole tree touches (cold misses of an infinite cache)."""
    return Analysis(tree, line).fills(float("inf"), DEFAULT_RAMP)


def loop_footprints(tree: Kernel, line: int) -> dict[tuple[int, ...], float]:
    """Lines one iteration of each loop touches, keyed by path (child indices from a virtual extent-1 root
    `()` whose single iteration is the whole tree)."""
    return dict(Analysis(tree, line).footprint)


def analytic_fills(
    tree: Kernel,
    levels: Sequence[CacheLevel],
    capacity_fraction: float = DEFAULT_CAPACITY_FRACTION,
    ramp: tuple[float, float] = DEFAULT_RAMP,
) -> tuple[float, ...]:
    """Estimated line fills per level, L1 first; non-increasing down the hierarchy."""
    line = check_levels(levels)
    analysis = Analysis(tree, line)
    out: list[float] = []
    for lv in levels:
        f = analysis.fills(capacity_fraction * lv.lines, ramp)
        out.append(min(f, out[-1]) if out else f)  # inclusive: a lower level sees only upper misses
    return tuple(out)


def analytic_traffic(
    tree: Kernel,
    levels: Sequence[CacheLevel],
    capacity_fraction: float = DEFAULT_CAPACITY_FRACTION,
    ramp: tuple[float, float] = DEFAULT_RAMP,
) -> Traffic:
    """Bytes moved into each level by `tree`, in O(depth x tree size)."""
    line = check_levels(levels)
    return Traffic.from_fills(core_bytes(tree), analytic_fills(tree, levels, capacity_fraction, ramp), line)
