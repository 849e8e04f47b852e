"""A SIMT kernel: one per-thread instruction stream, launched as a grid of blocks of threads.

The instructions are the same `Instr`/`Loop` items the CPU targets use (mnemonics are PTX's), run by every
thread; loops inside a thread are sequential and have the same trip count in every thread, so a warp's 32
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

from isasim.isa.program import BufferSpec, Program


@dataclass(frozen=True)
class Lin:
    """An integer per thread and loop trip: offset + sum(coef * ((gid // div) % mod)) + sum(stride * trip).

    mod 0 means no modulo; `strides` has one entry per enclosing loop, outermost first."""

    offset: int
    terms: tuple[tuple[int, int, int], ...] = ()  # (div, mod, coef)
    strides: tuple[int, ...] = ()

    def at(self, gid: np.ndarray) -> np.ndarray:
        v = np.full(gid.shape, self.offset, dtype=np.int64)
        for div, mod, coef in self.terms:
            f = gid // div
            v += coef * (f % mod if mod else f)
        return v


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
class SimtProgram:
    """A kernel launch: `grid` blocks of `block` threads; `live` says which threads stay past the
    EXIT_IF (all, when None); `shared` are the block's shared-memory arrays (float32)."""

    program: Program
    grid: int
    block: int
    shared: tuple[BufferSpec, ...] = ()
    live: tuple[tuple[Lin, int], ...] = ()
    strategy: str = ""  # how the op was mapped onto threads, for reports

    @property
    def name(self) -> str:
        return self.program.name

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
        v = lin.at(gid)
        if trips is not None and lin.strides:
            v = v + int(np.dot(lin.strides, trips))
        ok &= v < limit
    return ok
