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
from isasim.isa.dtype import DType

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
        self.tile_config: dict[int, tuple[int, int]] | None = None  # AMX: (rows, bytes per row) by tile, as set
        self._views = {DType.F32: self.data.view(np.float32), DType.I64: self.data.view(np.int64),
                       DType.BOOL: self.data, DType.U8: self.data, DType.I8: self.data.view(np.int8),
                       DType.I32: self.data.view(np.int32), DType.BF16: self.data.view(np.uint16),
                       DType.F16: self.data.view(np.uint16)}  # fp16 loads and stores move bits (Prim.CVT_H2F)

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
        if spec.dtype is DType.F16:
            return raw.view(np.float16)
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


def operand(o, regs: dict, mem: Memory, lanes: int = 1):
    """An operand's value as an instruction of width `lanes` reads it: a wider vector register through its
    low lanes (xmm0 is the low quarter of zmm0), lane 0 for a scalar instruction."""
    if isinstance(o, Reg):
        v = regs[o]
        if o.lanes > lanes:
            v = np.asarray(v)[..., :lanes] if lanes > 1 else np.asarray(v)[..., 0]
        return v
    if isinstance(o, Imm):
        return o.value
    if isinstance(o, Addr):
        return np.int64(mem.base[o.buf] + o.offset)
    raise TypeError(o)


def _lane_addresses(ins: Instr, base) -> np.ndarray:
    return np.asarray(base)[..., None] + np.arange(ins.lanes, dtype=np.int64) * ins.dtype.itemsize


def _spread(v, lanes: int) -> np.ndarray:
    """A per-iteration scalar copied into every lane."""
    v = np.asarray(v)
    return np.broadcast_to(v[..., None], v.shape + (lanes,)).copy()


def _load(ins: Instr, regs: dict, mem: Memory):
    m: Mem = ins.srcs[0]
    addr = regs[m.base] + m.disp
    if ins.prim is Prim.LOAD_BCAST:
        return _spread(mem.load(ins.dtype, addr), ins.lanes)
    if ins.lanes == 1:
        return mem.load(ins.dtype, addr)
    addr = _lane_addresses(ins, addr)
    if ins.mask is None:
        return mem.load(ins.dtype, addr)
    # a masked lane is never read (no fault past the buffer's end) and comes back as zero
    active = regs[ins.mask]
    safe = np.where(active, addr, np.asarray(addr)[..., :1])
    return np.where(active, mem.load(ins.dtype, safe), np.zeros((), mem.load(ins.dtype, safe).dtype))


def _store(ins: Instr, regs: dict, mem: Memory) -> None:
    m = ins.dst
    addr = regs[m.base] + m.disp
    value = operand(ins.srcs[0], regs, mem, ins.lanes)
    if ins.dtype in (DType.U8, DType.I8) and np.asarray(value).dtype == np.float32:
        value = np.asarray(value).view(np.int32)  # a vector register's lanes narrowed as stored (vpmovdb)
    elif ins.dtype is DType.BF16:  # lanes that hold bf16 as float32 (Prim.CVT_BF16): their upper halves
        value = np.asarray(value, dtype=np.float32).view(np.uint32) >> 16
    if ins.lanes > 1:
        addr = _lane_addresses(ins, addr)
    if ins.mask is not None:
        addr, value, active = np.broadcast_arrays(addr, value, regs[ins.mask])
        addr, value = addr[active], value[active]
    mem.store(ins.dtype, addr, value)


def _tile_addresses(ins: Instr, mem_operand: Mem, stride: Reg, rows: int, dwords: int, regs: dict) -> np.ndarray:
    """The byte address of each dword of a tile's rows: row r at base + r x stride (a tileloadd/tilestored)."""
    base = np.asarray(regs[mem_operand.base] + mem_operand.disp)[..., None]
    offsets = (np.arange(rows, dtype=np.int64)[:, None] * np.asarray(regs[stride])[..., None, None]
               + np.arange(dwords, dtype=np.int64) * 4)
    return base + offsets.reshape(offsets.shape[:-2] + (rows * dwords,))


def _check_tile_shape(ins: Instr, mem: "Memory") -> None:
    """Each tile an instruction names must have the shape its immediates assume, as the configuration set it:
    on hardware a mismatch computes on other shapes, or faults."""
    cfg = mem.tile_config
    if cfg is None:
        raise ValueError(f"{ins}: a tile instruction before any ldtilecfg")
    p, s = ins.prim, ins.srcs
    if p in (Prim.TILE_LOAD, Prim.TILE_ZERO):
        rows, dwords = (s[2], s[3]) if p is Prim.TILE_LOAD else (s[0], s[1])
        want = {ins.dst.n: (int(rows.value), 4 * int(dwords.value))}
    elif p is Prim.TILE_STORE:
        want = {s[0].n: (int(s[2].value), cfg[s[0].n][1])}
    else:  # a multiply: C rows x 16 dwords, A rows x kd dwords, B kd x 16
        rows, kd = int(s[3].value), int(s[4].value)
        want = {ins.dst.n: (rows, 64), s[0].n: (rows, 4 * kd), s[1].n: (kd, 64)}
    for tile, shape in want.items():
        if cfg[tile] != shape:
            raise ValueError(f"{ins}: tmm{tile} is configured {cfg[tile][0]} rows x {cfg[tile][1]} bytes, "
                             f"but used as {shape[0]} x {shape[1]}")


def _tiles(ins: Instr, regs: dict, mem: Memory, lanes: int, events: Events) -> None:
    """The AMX instructions that touch memory or the tile state (their arithmetic is in isa/amx.py)."""
    p = ins.prim
    if p is Prim.TILE_CONFIG:  # the 64-byte block: bytes per row of tile t at 16 + 2t, its rows at 48 + t
        b = ins.srcs[0].value
        mem.tile_config = {t: (b[48 + t], b[16 + 2 * t] | b[17 + 2 * t] << 8) for t in range(8)}
        return
    if p is Prim.TILE_RELEASE:
        mem.tile_config = None
        return
    _check_tile_shape(ins, mem)
    if p is Prim.TILE_LOAD:
        m, stride, rows, dwords = ins.srcs
        addr = _tile_addresses(ins, m, stride, int(rows.value), int(dwords.value), regs)
        regs[ins.dst] = mem.load(DType.F32, addr)
        events.bytes_loaded += lanes * 4 * int(rows.value) * int(dwords.value)
    elif p is Prim.TILE_STORE:
        tile, stride, rows = ins.srcs
        value = np.asarray(regs[tile])
        addr = _tile_addresses(ins, ins.dst, stride, int(rows.value), value.shape[-1] // int(rows.value), regs)
        mem.store(DType.F32, addr, value)
        events.bytes_stored += lanes * 4 * value.shape[-1]


_TILE_MEMORY = (Prim.TILE_LOAD, Prim.TILE_STORE, Prim.TILE_CONFIG, Prim.TILE_RELEASE)
_TILE_MATH = (Prim.TILE_ZERO, Prim.TDPBUSD, Prim.TDPBF16PS)


def _lanewise(ins: Instr, regs: dict):
    """Primitives that move lanes around, whose meaning depends on the instruction's width."""
    p, h = ins.prim, ins.lanes
    src = ins.srcs[0]
    v = np.asarray(regs[src]) if isinstance(src, Reg) else src.value
    if p is Prim.BCAST:
        return _spread(v[..., 0] if src.lanes > 1 else v, h)
    if p is Prim.MASK_BITS:
        bits = np.asarray(v, dtype=np.int64)[..., None] >> np.arange(h, dtype=np.int64)
        return (bits & 1).astype(bool)
    if p is Prim.EXTRACT_HI:
        return v[..., h:2 * h] if h > 1 else v[..., 1]
    pair = np.add if p is Prim.FADDP else np.maximum
    return pair(v[..., 0:2 * h:2], v[..., 1:2 * h:2]) if h > 1 else pair(v[..., 0], v[..., 1])


def _live(ins: Instr, regs: dict) -> int:
    """Lanes a vector access touches memory for: all, or the ones its (tail) mask enables."""
    if ins.mask is None:
        return ins.lanes
    m = np.asarray(regs[ins.mask])
    return int(np.count_nonzero(m)) * ins.lanes // m.size


_LANEWISE = (Prim.BCAST, Prim.MASK_BITS, Prim.EXTRACT_HI, Prim.FADDP, Prim.FMAXP)


def run_instr(ins: Instr, regs: dict, mem: Memory, lanes: int, events: Events) -> None:
    """Execute one instruction on `lanes` lanes at once (lanes=1: one scalar machine).

    `lanes` counts independent loop iterations run side by side; an instruction's own vector width is
    `ins.lanes`, kept in a trailing array axis of its registers' values.
    """
    events.instructions[ins.mnemonic] += lanes
    p = ins.prim
    if p in (Prim.LOAD, Prim.LOAD_BCAST):
        regs[ins.dst] = _load(ins, regs, mem)
        events.bytes_loaded += lanes * ins.dtype.itemsize * (_live(ins, regs) if p is Prim.LOAD else 1)
        return
    if p is Prim.STORE:
        _store(ins, regs, mem)
        events.bytes_stored += lanes * ins.dtype.itemsize * _live(ins, regs)
        return
    if p is Prim.BRANCH_NZ:
        return  # control flow belongs to the executor
    if p in _TILE_MEMORY:
        return _tiles(ins, regs, mem, lanes, events)
    if p in _TILE_MATH:
        _check_tile_shape(ins, mem)
    if p is Prim.DEC_FLAGS:
        value = regs[ins.srcs[0]] - np.int64(ins.srcs[1].value)
    elif p is Prim.FMOV and isinstance(ins.srcs[0], Imm):
        v = ins.srcs[0].value  # an int is a bit pattern (a sign mask), a float a value
        value = np.uint32(v).view(np.float32) if isinstance(v, int) else np.float32(v)
        if ins.lanes > 1:
            value = np.full(ins.lanes, value, dtype=np.float32)
    elif p is Prim.IMOV:
        value = np.int64(operand(ins.srcs[0], regs, mem))
    elif p in _LANEWISE:
        value = _lanewise(ins, regs)
    else:
        value = SEMANTICS[p](*(operand(s, regs, mem, ins.lanes) for s in ins.srcs))
    if ins.mask is not None:  # merge masking: inactive lanes keep what the destination held
        value = np.where(regs[ins.mask], value, regs[ins.dst])
    regs[ins.dst] = value
