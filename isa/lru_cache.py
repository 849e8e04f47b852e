"""Exact reference for the cache model: replay a loop tree's address trace through set-associative LRU caches.

The trace is generated with numpy (one vectorised tile-and-offset step per loop), every access expands to
the lines covering [addr, addr + width), and each level is simulated set by set: LRU sets are independent,
so the trace is stably sorted by set index, consecutive repeats of one line inside a set (always MRU hits)
are dropped, and a tight Python loop runs the rest.  Level i+1 sees level i's misses in program order.

Semantics (see isasim.isa.cache_model for the shared assumptions): cold start, write-allocate (stores
fill like loads), fills counted and write-backs not, set = (addr // line) % (size // line // assoc).
Lower levels are filtered by upper-level misses but do not back-invalidate upper levels, so inclusion is
not enforced on evictions; for the sizes used (each level >= 8x the one above) this changes little.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from isasim.isa.cache_model import Access, CacheLevel, Kernel, Loop, Traffic, check_levels

__all__ = ["SimResult", "address_trace", "line_trace", "lru_misses", "simulate_lru"]


@dataclass(frozen=True)
class SimResult:
    core_bytes: int  # sum of width over every executed access
    accesses: int  # executed access instructions
    distinct_lines: int  # compulsory misses: distinct lines the whole trace touches
    fills: tuple[int, ...]  # line fills per level, L1 first
    line: int

    def traffic(self) -> Traffic:
        return Traffic.from_fills(self.core_bytes, self.fills, self.line)


def _collect(tree: Kernel) -> tuple[list[Access], Loop]:
    items = tree if isinstance(tree, tuple) else (tree,)
    root = Loop(1, items)
    accesses: list[Access] = []

    def walk(loop: Loop, depth: int) -> None:
        for item in loop.body:
            if isinstance(item, Loop):
                walk(item, depth + 1)
            else:
                if len(item.strides) != depth:
                    raise ValueError(f"access to {item.buffer!r} has {len(item.strides)} strides, depth {depth}")
                accesses.append(item)

    walk(root, 0)
    return accesses, root


def address_trace(tree: Kernel) -> tuple[np.ndarray, np.ndarray]:
    """(access index, byte address) of every executed access, in program order."""
    accesses, root = _collect(tree)
    depth_max = max((len(a.strides) for a in accesses), default=0)
    table = np.zeros((max(len(accesses), 1), depth_max + 1), dtype=np.int64)
    for i, a in enumerate(accesses):
        table[i, 1 : len(a.strides) + 1] = a.strides
    counter = iter(range(len(accesses)))

    def gen(loop: Loop, depth: int) -> tuple[np.ndarray, np.ndarray]:
        ids, addrs = [], []
        for item in loop.body:
            if isinstance(item, Loop):
                i_, a_ = gen(item, depth + 1)
            else:
                k = next(counter)
                i_ = np.array([k], dtype=np.int64)
                a_ = np.array([accesses[k].base], dtype=np.int64)
            ids.append(i_)
            addrs.append(a_)
        body_ids = np.concatenate(ids) if ids else np.zeros(0, np.int64)
        body_addrs = np.concatenate(addrs) if addrs else np.zeros(0, np.int64)
        n, m = loop.extent, body_ids.size
        if n == 1:
            return body_ids, body_addrs
        out_ids = np.tile(body_ids, n)
        step = np.repeat(np.arange(n, dtype=np.int64), m)
        return out_ids, np.tile(body_addrs, n) + step * table[out_ids, depth]

    return gen(root, 0)


def line_trace(tree: Kernel, line: int) -> tuple[np.ndarray, int, int]:
    """Line addresses touched in program order, plus (core bytes, executed accesses)."""
    accesses, _ = _collect(tree)
    ids, addrs = address_trace(tree)
    widths = np.array([a.width for a in accesses] or [0], dtype=np.int64)[ids]
    first = addrs // line
    count = (addrs + widths - 1) // line - first + 1
    if ids.size and count.max() > 1:
        starts = np.repeat(first, count)
        offsets = np.arange(count.sum()) - np.repeat(np.cumsum(count) - count, count)
        lines = starts + offsets
    else:
        lines = first
    return lines, int(widths.sum()) if ids.size else 0, int(ids.size)


def _dedupe(lines: np.ndarray) -> np.ndarray:
    """Drop immediate repeats of a line (MRU hits that change no LRU state)."""
    if lines.size == 0:
        return lines
    keep = np.empty(lines.size, dtype=bool)
    keep[0] = True
    np.not_equal(lines[1:], lines[:-1], out=keep[1:])
    return lines[keep]


def lru_misses(lines: np.ndarray, level: CacheLevel) -> np.ndarray:
    """The missing lines of `lines` (program order) in one set-associative LRU cache, in program order."""
    lines = _dedupe(lines)
    if lines.size == 0:
        return lines
    sets = lines % level.sets
    order = np.argsort(sets, kind="stable")
    by_set = lines[order]
    bounds = np.flatnonzero(np.diff(sets[order])) + 1
    starts = np.concatenate(([0], bounds))
    ends = np.concatenate((bounds, [by_set.size]))
    # within a set, consecutive repeats are hits too
    keep = np.ones(by_set.size, dtype=bool)
    keep[1:] = by_set[1:] != by_set[:-1]
    keep[starts] = True
    assoc = level.assoc
    miss_pos: list[int] = []
    append = miss_pos.append
    seq = by_set.tolist()
    keep_l = keep.tolist()
    for lo, hi in zip(starts.tolist(), ends.tolist()):
        ways: dict[int, None] = {}
        for k in range(lo, hi):
            if not keep_l[k]:
                continue
            x = seq[k]
            if x in ways:
                del ways[x]
                ways[x] = None
            else:
                append(k)
                ways[x] = None
                if len(ways) > assoc:
                    del ways[next(iter(ways))]
    miss_orig = np.sort(order[np.array(miss_pos, dtype=np.int64)])
    return lines[miss_orig]


def simulate_lru(tree: Kernel, levels: Sequence[CacheLevel]) -> SimResult:
    """Exact line fills of `tree` through the hierarchy `levels` (L1 first), from cold caches."""
    line = check_levels(levels)
    lines, core, n = line_trace(tree, line)
    distinct = int(np.unique(lines).size)
    fills = []
    stream = lines
    for lv in levels:
        stream = lru_misses(stream, lv)
        fills.append(int(stream.size))
    return SimResult(core_bytes=core, accesses=n, distinct_lines=distinct, fills=tuple(fills), line=line)
