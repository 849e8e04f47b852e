"""How a SIMT kernel runs: its launch geometry, and each memory instruction's per-thread addresses.

A SIMT kernel is an ordinary `Program` (isa/program.py) with a `Launch`: one per-thread instruction stream,
launched as a grid of blocks of threads. The instructions are the same `Instr`/`Loop` items the CPU targets
use (mnemonics are PTX's), run by every thread; loops inside a thread are sequential and have the same trip count in every thread, so a warp's 32
threads stay in lockstep except where a predicate guards an instruction (`Instr.mask`: PTX's `@p`) or where
threads leave early (`Prim.EXIT_IF`, a divergent branch to the kernel's end).

Memory instructions also carry a `WarpAccess`: the address each thread touches, as a closed form of its global
thread id and the trip of every enclosing loop. The cost model reads sectors and bank conflicts from it
without running the kernel; the executor computes the same figures from the addresses the instructions really
form, and the tests hold the two equal.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from isasim.isa.program import BufferSpec


@dataclass(frozen=True)
class Lin:
    """An integer per thread and loop trip: offset + sum(coef * ((g // div) % mod)) + sum(stride * trip), where
    g = gid + sum(gid_step * trip) is the element a grid-stride loop's trip gives the thread (g = gid without
    one).

    mod 0 means no modulo; `strides` and `gid_steps` have one entry per enclosing loop, outermost first."""

    offset: int
    terms: tuple[tuple[int, int, int], ...] = ()  # (div, mod, coef)
    strides: tuple[int, ...] = ()
    gid_steps: tuple[int, ...] = ()

    def at(self, gid: np.ndarray) -> np.ndarray:
        """The value at trip 0 of every loop (or of `gid` already moved to another trip's element)."""
        v = np.full(gid.shape, self.offset, dtype=np.int64)
        for div, mod, coef in self.terms:
            f = gid // div
            v += coef * (f % mod if mod else f)
        return v

    def value(self, gid: np.ndarray, trips: np.ndarray) -> np.ndarray:
        """The value at the given trip of each enclosing loop."""
        if self.gid_steps:
            gid = gid + int(np.dot(self.gid_steps, trips))
        return self.at(gid) + (int(np.dot(self.strides, trips)) if self.strides else 0)


@dataclass(frozen=True)
class WarpAccess:
    """Where a load or store goes, per thread: `byte` within buffer `buf` of the global or shared space; the
    thread takes part only where every guard `lin < limit` holds (and it has not exited)."""

    shared: bool
    buf: str
    byte: Lin
    width: int
    guards: tuple[tuple[Lin, int], ...] = ()


@dataclass(frozen=True)
class Launch:
    """A kernel launch: `grid` blocks of `block` threads; `live` says which threads stay past the
    EXIT_IF (all, when empty); `shared` are the block's shared-memory arrays (float32)."""

    grid: int
    block: int
    shared: tuple[BufferSpec, ...] = ()
    live: tuple[tuple[Lin, int], ...] = ()
    strategy: str = ""  # how the op was mapped onto threads, for reports

    @property
    def threads(self) -> int:
        return self.grid * self.block

    @property
    def shared_bytes(self) -> int:
        return sum(b.size * b.dtype.itemsize for b in self.shared)


def guard_mask(guards: tuple[tuple[Lin, int], ...], gid: np.ndarray, trips: np.ndarray | None = None
               ) -> np.ndarray:
    """Which threads pass every guard, at loop trips `trips` (one row per enclosing loop), or at trip 0."""
    ok = np.ones(gid.shape, dtype=bool)
    for lin, limit in guards:
        ok &= (lin.value(gid, trips) if trips is not None else lin.at(gid)) < limit
    return ok
