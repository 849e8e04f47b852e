"""Machine state shared by both executors: a flat byte-addressed memory and one instruction's semantics.

`run_instr` is the single definition of what an instruction does to registers and memory. The stepped
interpreter calls it with 0-d register values, one instruction at a time; the batched executor calls it with
arrays that hold one lane per independent loop iteration. Same function, same bits.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

import numpy as np

from isasim.isa.program import Addr, BufferSpec, Imm, Instr, Mem, Reg
from isasim.isa.semantics import SEMANTICS, Prim
from isasim.models.graph import DType

ALIGN = 64  # buffers start on cache-line boundaries
FIRST_ADDRESS = 4096  # address 0 stays unmapped, as on a real machine


def _padded(b: BufferSpec) -> int:
    return -(-max(b.size * b.dtype.itemsize, 1) // ALIGN) * ALIGN


def place(buffers: tuple[BufferSpec, ...]) -> dict[str, int]:
    """Each buffer's base address: one after another, cache-line aligned (the cost model uses the same)."""
    base, addr = {}, FIRST_ADDRESS
    for b in buffers:
        base[b.name] = addr
        addr += _padded(b)
    return base


class Memory:
    """All buffers of one program, placed one after another in a flat byte array."""

    def __init__(self, buffers: tuple[BufferSpec, ...]):
        self.specs = {b.name: b for b in buffers}
        self.base = place(buffers)
        end = max((self.base[b.name] + _padded(b) for b in buffers), default=FIRST_ADDRESS)
        self.data = np.zeros(end, dtype=np.uint8)
        self._views = {DType.F32: self.data.view(np.float32), DType.I64: self.data.view(np.int64),
                       DType.BOOL: self.data}

    def write(self, name: str, values: np.ndarray) -> None:
        spec = self.specs[name]
        flat = np.ascontiguousarray(values).reshape(-1)
        if flat.size != spec.size:
            raise ValueError(f"buffer {name} holds {spec.size} elements, got {flat.size}")
        start = self.base[name] // spec.dtype.itemsize
        self._views[spec.dtype][start:start + spec.size] = flat.astype(spec.dtype.numpy).view(
            self._views[spec.dtype].dtype)

    def read(self, name: str) -> np.ndarray:
        spec = self.specs[name]
        start = self.base[name] // spec.dtype.itemsize
        raw = self._views[spec.dtype][start:start + spec.size].copy()
        return raw.astype(bool) if spec.dtype is DType.BOOL else raw

    def load(self, dtype: DType, addr):
        v = self._views[dtype][np.asarray(addr) // dtype.itemsize]
        return v.astype(np.int64) if dtype is not DType.F32 else v

    def store(self, dtype: DType, addr, value) -> None:
        addr = np.asarray(addr)
        value = np.asarray(value)
        shape = np.broadcast_shapes(addr.shape, value.shape)
        view = self._views[dtype]
        view[np.broadcast_to(addr, shape) // dtype.itemsize] = np.broadcast_to(value, shape).astype(view.dtype)


@dataclass
class Events:
    """What an executor did: instructions retired per mnemonic, bytes moved between core and memory."""

    instructions: Counter = field(default_factory=Counter)
    bytes_loaded: int = 0
    bytes_stored: int = 0

    @property
    def total(self) -> int:
        return sum(self.instructions.values())


def operand(o, regs: dict, mem: Memory):
    if isinstance(o, Reg):
        return regs[o]
    if isinstance(o, Imm):
        return o.value
    if isinstance(o, Addr):
        return np.int64(mem.base[o.buf] + o.offset)
    raise TypeError(o)


def run_instr(ins: Instr, regs: dict, mem: Memory, lanes: int, events: Events) -> None:
    """Execute one instruction on `lanes` lanes at once (lanes=1: one scalar machine)."""
    events.instructions[ins.mnemonic] += lanes
    p = ins.prim
    if p is Prim.LOAD:
        m: Mem = ins.srcs[0]
        regs[ins.dst] = mem.load(ins.dtype, regs[m.base] + m.disp)
        events.bytes_loaded += lanes * ins.dtype.itemsize
    elif p is Prim.STORE:
        m = ins.dst
        mem.store(ins.dtype, regs[m.base] + m.disp, regs[ins.srcs[0]])
        events.bytes_stored += lanes * ins.dtype.itemsize
    elif p is Prim.BRANCH_NZ:
        pass  # control flow belongs to the executor
    elif p is Prim.DEC_FLAGS:
        regs[ins.dst] = regs[ins.srcs[0]] - np.int64(ins.srcs[1].value)
    elif p is Prim.FMOV and isinstance(ins.srcs[0], Imm):
        v = ins.srcs[0].value  # an int is a bit pattern (a sign mask), a float a value
        regs[ins.dst] = np.uint32(v).view(np.float32) if isinstance(v, int) else np.float32(v)
    elif p is Prim.IMOV:
        regs[ins.dst] = np.int64(operand(ins.srcs[0], regs, mem))
    else:
        regs[ins.dst] = SEMANTICS[p](*(operand(s, regs, mem) for s in ins.srcs))
