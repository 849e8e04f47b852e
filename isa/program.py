"""The Program: target instructions inside loops with trip counts.

One representation feeds the cost model (isa/cost.py), the batched executor (isa/execute.py) and the stepped
interpreter (isa/stepper.py), so counts and numerics cannot drift apart.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum
from typing import Union

import numpy as np

from isasim.isa.semantics import Prim
from isasim.isa.dtype import DType


class RegFile(Enum):
    FP = "fp"  # xmm / s registers
    GP = "gp"  # general-purpose 64-bit registers
    PRED = "pred"  # a compare result: an xmm mask on x86, the NZCV flags on AArch64
    MASK = "mask"  # an AVX-512 opmask register (k1-k7): one bit per vector lane
    TILE = "tile"  # an AMX tile register (tmm0-7): rows of up to 16 dwords; the selector names them itself
    B32 = "b32"  # SIMT: a 32-bit register of two fp16 (.f16x2), a tensor-core operand's fragment


@dataclass(frozen=True)
class Reg:
    """A register; `lanes` > 1 is a vector (ymm, zmm, v.4s) whose value holds that many float32 lanes."""

    file: RegFile
    n: int
    lanes: int = 1

    def __str__(self) -> str:
        name = {RegFile.FP: "f", RegFile.GP: "r", RegFile.PRED: "p", RegFile.MASK: "k",
                RegFile.TILE: "tmm", RegFile.B32: "h"}[self.file] + str(self.n)
        return name + (f"x{self.lanes}" if self.lanes > 1 else "")


@dataclass(frozen=True)
class Imm:
    value: float | int


@dataclass(frozen=True)
class Addr:
    """The address of element `offset` of a buffer, known once buffers are placed in memory."""

    buf: str
    offset: int  # bytes


@dataclass(frozen=True)
class Mem:
    base: Reg
    disp: int = 0


Operand = Union[Reg, Imm, Addr, Mem]


@dataclass(frozen=True)
class Access:
    """Where a load or store walks: its buffer, first byte and byte stride per enclosing loop (outer first).

    Gathers record the stride of their row walk as if rows were distinct and consecutive; the cache model
    uses this, the executors use the real addresses. A tile load or store (AMX) moves `rows` = (count, byte
    stride) rows of `width` bytes each.
    """

    buf: str
    base: int
    strides: tuple[int, ...]
    width: int
    rows: tuple[int, int] = (1, 0)


@dataclass(frozen=True)
class Instr:
    mnemonic: str  # the key of the instruction's timing in the microarchitecture description
    prim: Prim
    dst: Reg | Mem | tuple[Reg, ...] | None  # a tuple: a warp's matrix instruction writes several (mma)
    srcs: tuple[Operand, ...]
    dtype: DType | None = None  # memory element type for loads and stores
    access: Access | None = None
    lanes: int = 1  # the operation's width: a source register with more lanes is read through its low ones
    mask: Reg | None = None  # AVX-512 predication: inactive lanes keep the destination (loads: become 0;
    #                          stores: are not written); SIMT: a guard predicate (PTX `@p`): threads where
    #                          it is false keep the destination and touch no memory
    warp: WarpAccess | None = None  # SIMT memory instructions: the address each thread forms
    copy_to: WarpAccess | None = None  # cp.async: the shared side of the copy (`warp` is the global side)

    def __str__(self) -> str:
        dst = "{" + ", ".join(map(str, self.dst)) + "}" if isinstance(self.dst, tuple) else \
            str_operand(self.dst) if self.dst is not None else None
        ops = ([dst] if dst is not None else []) + [str_operand(s) for s in self.srcs]
        return f"{self.mnemonic} " + ", ".join(ops) + (f" {{{self.mask}}}" if self.mask else "")


def written(ins: Instr) -> tuple[Reg, ...]:
    """The registers an instruction writes: its destination register, or each of a matrix instruction's."""
    if isinstance(ins.dst, tuple):
        return ins.dst
    return (ins.dst,) if isinstance(ins.dst, Reg) else ()


def str_operand(o: Operand) -> str:
    if isinstance(o, Reg):
        return str(o)
    if isinstance(o, Imm):
        return f"#{o.value}"
    if isinstance(o, Addr):
        return f"&{o.buf}+{o.offset}"
    return f"[{o.base}{'+' + str(o.disp) if o.disp else ''}]"


@dataclass(frozen=True)
class Loop:
    """`counter` (set to `trip` by an instruction before the loop) counts down to zero in the latch.

    parallel: iterations are independent (no value flows from one to the next except through the latch's
    pointer and counter updates), so an executor may run them side by side.
    """

    counter: Reg
    trip: int
    body: tuple[Union[Instr, "Loop"], ...]
    latch: tuple[Instr, ...]
    parallel: bool
    var: str = ""


Item = Union[Instr, Loop]


@dataclass(frozen=True)
class BufferSpec:
    name: str
    size: int  # elements
    dtype: DType
    is_output: bool


@dataclass(frozen=True)
class Program:
    name: str
    target: str
    buffers: tuple[BufferSpec, ...]
    body: tuple[Item, ...]
    flops: int = 0  # matrix-multiply FLOPs of the op it computes (FlopCounterMode's convention)
    launch: Launch | None = None  # SIMT: one thread's stream, run by a grid of blocks


# ---- SIMT: a Program whose `launch` is set is one thread's instruction stream, run by a grid ----------------
# The instructions are the same `Instr`/`Loop` items the CPU targets use (mnemonics are PTX's), run by every
# thread; loops inside a thread are sequential and have the same trip count in every thread, so a warp's threads
# stay in lockstep except where a predicate guards an instruction (`Instr.mask`: PTX's `@p`) or where threads
# leave early (`Prim.EXIT_IF`, a divergent branch to the kernel's end). Memory instructions also carry a
# `WarpAccess`: the address each thread touches, as a closed form of its global thread id and the trip of every
# enclosing loop. The cost model reads sectors and bank conflicts from it without running the kernel; the
# executor computes the same figures from the addresses the instructions really form, and the tests hold the
# two equal.

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
        # One scratch array, worked in place: a grid has millions of threads, and fresh temporaries for each
        # term cost more in page faults than the arithmetic. Powers of two (most divisors and moduli: warps,
        # tiles) shift and mask, which equal floor division and floor modulo on two's complement integers,
        # negative ones included, and run several times faster than numpy's integer division.
        f = np.empty_like(v) if self.terms else None
        for div, mod, coef in self.terms:
            if div & (div - 1) == 0:
                np.right_shift(gid, div.bit_length() - 1, out=f)
            else:
                np.floor_divide(gid, div, out=f)
            if mod and mod & (mod - 1) == 0:
                np.bitwise_and(f, mod - 1, out=f)
            elif mod:
                np.remainder(f, mod, out=f)
            if coef != 1:
                np.multiply(f, coef, out=f)
            v += f
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
    regs: int = 0  # a vector shared load's registers per thread (isa/simt_memory.py: the data's return path)


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


def layout(items: tuple[Item, ...]) -> list[tuple[Instr, int | None]]:
    """The items as straight-line code for a stepping interpreter: (instruction, where a taken branch goes). A
    loop's latch ends in its back-edge branch, which jumps to the loop's first instruction, as on the machine."""
    code: list[tuple[Instr, int | None]] = []

    def put(items: tuple[Item, ...]) -> None:
        for it in items:
            if isinstance(it, Instr):
                code.append((it, None))
                continue
            head = len(code)
            put(it.body)
            code.extend((ins, head if ins.prim is Prim.BRANCH_NZ else None) for ins in it.latch)

    put(items)
    return code


def walk(items: tuple[Item, ...], trips: int = 1, depth: tuple[Loop, ...] = ()):
    """Yield (instruction, dynamic executions, enclosing loops) for every instruction, latch included."""
    for it in items:
        if isinstance(it, Instr):
            yield it, trips, depth
        else:
            inner = trips * it.trip
            yield from walk(it.body, inner, depth + (it,))
            for ins in it.latch:
                yield ins, inner, depth + (it,)
