"""The SIMT executor: every thread of the grid at once, one numpy slot per thread, warps in lockstep.

All threads run the same instruction stream and every loop has the same trip count in every thread, so one
pass over the program runs the whole grid: an instruction is one numpy operation over all threads. That is
exactly lockstep execution of every warp, with three refinements:
- a guarded instruction (`@p`) changes nothing in threads whose predicate is false, and touches no memory;
- EXIT_IF retires threads for good (a divergent branch to the kernel's end); a warp keeps issuing while any
  of its threads is alive;
- bar.sync needs no scheduling: all threads of a block reach it at the same instruction. Shared memory is one
  array per block; shfl.sync reads the partner lane's register within the warp.
It counts what the hardware would: warp instructions issued per mnemonic, thread instructions (the threads
that execute each: alive and, for a guarded one, enabled), global requests and 32-byte sectors, shared
requests and wavefronts (isa/simt_memory.py), from the addresses the instructions really form.

A large grid runs as consecutive slices of whole blocks (`run_simt`), each slice in one lockstep pass: blocks
share nothing but global memory, and a kernel whose blocks read what other blocks write races on a real GPU
too, so the order of blocks cannot change a result (the stepped interpreter, isa/simt_stepper.py, runs one
block after another and is held equal to this). Slicing keeps every register's array bounded: a warp per
output of attention's small matmuls is millions of threads.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

import numpy as np

from isasim.isa import mma, simt_memory
from isasim.isa.gpu import Gpu
from isasim.isa.machine_state import Events, Memory, run_instr
from isasim.isa.program import Addr, Instr, Item, Loop, Program
from isasim.isa.dtype import DType, F32_BYTES
from isasim.isa.semantics import Prim

def _footprints(prog: Program, gpu: Gpu) -> list[int]:
    """Bytes each shared array takes: rounded up to a full row of banks, where each array starts."""
    row = gpu.shared_banks * gpu.shared_bank_bytes
    return [-(-b.size * b.dtype.itemsize // row) * row for b in prog.launch.shared]


def place_shared(prog: Program, gpu: Gpu) -> dict[str, int]:
    base, addr = {}, 0
    for b, size in zip(prog.launch.shared, _footprints(prog, gpu)):
        base[b.name] = addr
        addr += size
    return base


def new_shared(prog: Program, gpu: Gpu) -> np.ndarray:
    """Every block's shared memory: one row of float32 words per block."""
    words = sum(_footprints(prog, gpu)) // F32_BYTES
    return np.zeros((prog.launch.grid, max(words, 1)), dtype=np.float32)


@dataclass
class SimtEvents(Events):
    """Warp-level counts: `instructions` are warp instructions issued (a warp issues an instruction when any
    of its threads is alive, predicated or not); bytes are what active threads load and store, global and
    shared."""

    global_requests: int = 0
    sectors: int = 0
    shared_requests: int = 0
    wavefronts: int = 0
    by_buffer: Counter = field(default_factory=Counter)  # sectors per global buffer
    thread_instructions: int = 0

    def add(self, other: "SimtEvents") -> None:
        """Count `other`'s work (another warp's or slice's) into these."""
        self.instructions.update(other.instructions)
        self.by_buffer.update(other.by_buffer)
        for name in ("bytes_loaded", "bytes_stored", "global_requests", "sectors", "shared_requests",
                     "wavefronts", "thread_instructions"):
            setattr(self, name, getattr(self, name) + getattr(other, name))


class SimtExecutor:
    def __init__(self, prog: Program, mem: Memory, gpu: Gpu, gid: np.ndarray | None = None,
                 shared: np.ndarray | None = None):
        """Runs the threads `gid` (default: the whole grid; the stepped interpreter passes one warp and the
        block's shared memory); sectors, banks and warps have the GPU's geometry."""
        self.prog, self.mem, self.gpu = prog, mem, gpu
        self.gid = np.arange(prog.launch.threads, dtype=np.int64) if gid is None else gid
        self.block_of = self.gid // prog.launch.block
        self.alive = np.ones(self.gid.shape, dtype=bool)
        self.all_alive = True  # (no thread has exited: memory instructions take the unmasked path)
        self.live_warps = simt_memory.requests(self.alive, gpu)  # warps that still issue
        self.live_threads = self.gid.size
        self.seen: dict = {}  # a shared access's last addresses and active threads, with their counts
        self.shared_base = place_shared(prog, gpu)
        self.shared = new_shared(prog, gpu) if shared is None else shared
        self.shared_word = self.block_of * self.shared.shape[1]  # each thread's block's first shared word
        self.events = SimtEvents()
        self.scratch = Events()
        # cp.async: copies not yet landed, in the group being formed and in committed groups (oldest first);
        # each copy is (the shared words it fills, their bits), read from global memory when issued
        self.forming: list[tuple[np.ndarray, np.ndarray]] = []
        self.in_flight: list[list[tuple[np.ndarray, np.ndarray]]] = []

    def run(self) -> SimtEvents:
        self.items(self.prog.body, {})
        return self.events

    def items(self, items: tuple[Item, ...], regs: dict) -> None:
        for it in items:
            if isinstance(it, Loop):
                for _ in range(it.trip):
                    self.items(it.body, regs)
                    self.items(it.latch, regs)
            else:
                self.instr(it, regs)

    def full(self, v) -> np.ndarray:
        return np.broadcast_to(np.asarray(v), self.gid.shape)

    def instr(self, ins: Instr, regs: dict) -> None:
        self.events.instructions[ins.mnemonic] += self.live_warps
        if ins.mask is None:
            active = None if self.all_alive else self.alive  # None: every thread
            self.events.thread_instructions += self.live_threads
        else:
            active = self.alive & self.full(regs[ins.mask])
            self.events.thread_instructions += int(np.count_nonzero(active))
        p = ins.prim
        if p is Prim.SREG:
            regs[ins.dst] = self.gid % self.prog.launch.block if ins.srcs[0].value == "tid" else self.block_of
        elif p is Prim.EXIT_IF:
            self.alive = self.alive & ~self.full(regs[ins.srcs[0]])
            self.live_threads = int(np.count_nonzero(self.alive))
            self.all_alive = self.live_threads == self.gid.size
            self.live_warps = simt_memory.requests(self.alive, self.gpu)
        elif p in (Prim.BARRIER, Prim.BRANCH_NZ):
            pass  # lockstep: every thread of a block is at this instruction together
        elif p is Prim.SHFL_XOR:
            v = self.full(regs[ins.srcs[0]])
            regs[ins.dst] = v[(self.gid ^ np.int64(ins.srcs[1].value)) - self.gid[0]]
        elif p in (Prim.LOAD, Prim.STORE, Prim.LOAD_SHARED, Prim.STORE_SHARED):
            self.memory(ins, regs, active)
        elif p is Prim.CP_ASYNC:
            self.copy_async(ins, regs, active)
        elif p is Prim.CP_COMMIT:
            self.in_flight.append(self.forming)
            self.forming = []
        elif p is Prim.CP_WAIT:
            while len(self.in_flight) > ins.srcs[0].value:  # the oldest groups land
                for where, bits in self.in_flight.pop(0):
                    self.shared.reshape(-1).view(np.uint32)[where] = bits
        elif p is Prim.LOAD_SHARED_V:
            self.load_vector(ins, regs, active)
        elif p in (Prim.LDMATRIX, Prim.LDMATRIX_T):
            self.load_matrices(ins, regs, p is Prim.LDMATRIX_T)
        elif p in (Prim.MMA_F16, Prim.MMA_BF16):  # warp-wide: each warp's lanes hold its fragments (isa/mma.py)
            v = [self.full(regs[r]) for r in ins.srcs]
            for r, d in zip(ins.dst, mma.mma_m16n8k16(v[:4], v[4:6], v[6:], p is Prim.MMA_BF16)):
                regs[r] = d
        elif p is Prim.MMA_S8:
            v = [self.full(regs[r]) for r in ins.srcs]
            for r, d in zip(ins.dst, mma.mma_m16n8k32_s8(v[:4], v[4:6], v[6:])):
                regs[r] = d
        elif p is Prim.IMOV and isinstance(ins.srcs[0], Addr) and ins.srcs[0].buf in self.shared_base:
            regs[ins.dst] = np.int64(self.shared_base[ins.srcs[0].buf] + ins.srcs[0].offset)
        else:
            with np.errstate(all="ignore"):  # exited threads compute on whatever they hold
                if ins.mask is not None:
                    regs[ins.dst] = self.full(regs[ins.dst])
                    regs[ins.mask] = self.full(regs[ins.mask]) & self.alive
                run_instr(ins, regs, self.mem, 1, self.scratch)

    def shared_access(self, ins: Instr, base: np.ndarray, disp: int, active: np.ndarray | None,
                      every: np.ndarray) -> np.ndarray:
        """Each thread's word of the blocks' shared memory that `ins` touches, its requests and wavefronts
        counted. A shared access's addresses repeat every trip of its loop (a GEMM's tile loads read the
        same words of each new tile), so each instruction remembers its last addresses: the same base
        register value (registers are never changed in place, so the same array is the same value) or equal
        addresses cost no recount."""
        seen = self.seen.get(id(ins))
        if seen is None or not (seen["base"] is base or np.array_equal(seen["base"], base)) \
                or not _same_threads(seen["active"], active):
            addr = self.full(base + np.int64(disp))
            seen = {"base": base, "active": active, "where": self.shared_word + addr // F32_BYTES,
                    "requests": simt_memory.requests(every, self.gpu),
                    "wavefronts": simt_memory.wavefronts(addr, every, self.gpu, ins.warp.width if ins.warp else 4,
                                                         ins.warp.regs if ins.warp else 0)}
            self.seen[id(ins)] = seen
        self.events.shared_requests += seen["requests"]
        self.events.wavefronts += seen["wavefronts"]
        return seen["where"]

    def memory(self, ins: Instr, regs: dict, active: np.ndarray | None) -> None:
        """A load or store by the `active` threads (None: all of them), counted as the hardware serves it."""
        m = ins.dst if ins.prim in (Prim.STORE, Prim.STORE_SHARED) else ins.srcs[0]
        load = ins.prim in (Prim.LOAD, Prim.LOAD_SHARED)
        every = self.alive if active is None else active
        threads = self.gid.size if active is None else int(np.count_nonzero(active))
        if load:
            self.events.bytes_loaded += threads * ins.dtype.itemsize
        else:
            self.events.bytes_stored += threads * ins.dtype.itemsize
        if ins.prim in (Prim.LOAD_SHARED, Prim.STORE_SHARED):
            where = self.shared_access(ins, regs[m.base], m.disp, active, every)
            words = self.shared.reshape(-1)
            bits = ins.dtype is DType.I32  # a word of two fp16 (a B32 register): its bits, not a float's value
            if active is None:
                if load:
                    regs[ins.dst] = _from_word(words[where], bits)
                else:
                    words[where] = _to_word(self.full(regs[ins.srcs[0]]), bits)
            elif load:
                out = np.array(self.full(regs.get(ins.dst, np.zeros((), np.int64 if bits else np.float32))))
                out[active] = _from_word(words[where[active]], bits)
                regs[ins.dst] = out
            else:
                words[where[active]] = _to_word(self.full(regs[ins.srcs[0]])[active], bits)
            return
        addr = self.full(regs[m.base] + np.int64(m.disp))
        n = simt_memory.sectors(addr, every, self.gpu, ins.dtype.itemsize)
        self.events.global_requests += self.live_warps if active is None else simt_memory.requests(active, self.gpu)
        self.events.sectors += n
        self.events.by_buffer[ins.warp.buf if ins.warp else "?"] += n
        if active is None:
            if load:
                regs[ins.dst] = self.mem.load(ins.dtype, addr)
            else:
                self.mem.store(ins.dtype, addr, self.full(regs[ins.srcs[0]]))
        elif load:
            fresh = self.mem.load(ins.dtype, addr[active])
            out = np.array(self.full(regs.get(ins.dst, np.zeros((), fresh.dtype))), dtype=fresh.dtype)
            out[active] = fresh
            regs[ins.dst] = out
        else:
            self.mem.store(ins.dtype, addr[active], self.full(regs[ins.srcs[0]])[active])


    def copy_async(self, ins: Instr, regs: dict, active: np.ndarray | None) -> None:
        """cp.async: each active thread's `width` bytes of global memory, read now, into its shared words when
        a cp.async.wait_group lets its group land (until then shared memory holds what it held: a kernel
        that reads too early reads stale words, as on the GPU). Counted as a global load (sectors) and a
        shared store (wavefronts)."""
        src, dst = ins.srcs[0], ins.dst
        every = self.alive if active is None else active
        width = ins.warp.width
        per = width // F32_BYTES
        addr = self.full(regs[src.base] + np.int64(src.disp))
        saddr = self.full(regs[dst.base] + np.int64(dst.disp))
        self.events.global_requests += simt_memory.requests(every, self.gpu)
        n = simt_memory.sectors(addr, every, self.gpu, width)
        self.events.sectors += n
        self.events.by_buffer[ins.warp.buf] += n
        self.events.shared_requests += simt_memory.requests(every, self.gpu)
        self.events.wavefronts += simt_memory.wavefronts(saddr, every, self.gpu, width)
        self.events.bytes_loaded += int(np.count_nonzero(every)) * width
        self.events.bytes_stored += int(np.count_nonzero(every)) * width
        words = (addr[every] // F32_BYTES)[:, None] + np.arange(per)
        bits = self.mem.load(DType.I32, words.reshape(-1) * F32_BYTES).astype(np.uint32)
        where = ((self.shared_word[every] + saddr[every] // F32_BYTES)[:, None] + np.arange(per)).reshape(-1)
        self.forming.append((where, bits))

    def load_vector(self, ins: Instr, regs: dict, active: np.ndarray | None) -> None:
        """ld.shared.v2/.v4.f32: each thread's consecutive words into its registers, in order."""
        m = ins.srcs[0]
        every = self.alive if active is None else active
        first = self.shared_access(ins, regs[m.base], m.disp, active, every)  # (counts requests, wavefronts)
        self.events.bytes_loaded += int(np.count_nonzero(every)) * ins.warp.width
        words = self.shared.reshape(-1)
        if active is not None:  # (an inactive thread's address may lie anywhere: read word 0 for it instead)
            first = np.where(active, first, 0)
        for i, r in enumerate(ins.dst):
            got = words[first + i]
            if active is not None:
                got = np.where(active, got, self.full(regs.get(r, np.float32(0))))
            regs[r] = got

    def load_matrices(self, ins: Instr, regs: dict, trans: bool = False) -> None:
        """ldmatrix .m8n8 .b16: lanes 8i .. 8i + 7 name the rows of matrix i; register i of lane l receives
        word l % 4 of matrix i's row l / 4 (PTX ISA, "Warp-level matrix load instruction: ldmatrix"); with
        .trans, the transpose's: elements (2 (l % 4), l / 4) and (2 (l % 4) + 1, l / 4), low half first.
        Every thread of a live warp takes part (an .aligned, .sync instruction)."""
        m = ins.srcs[0]
        count = len(ins.dst)
        addr = self.full(regs[m.base] + np.int64(m.disp))
        lane = (self.gid % self.gpu.warp_size)
        naming = self.alive & (lane < 8 * count)  # the threads whose addresses are read
        self.events.shared_requests += simt_memory.requests(self.alive, self.gpu)
        self.events.wavefronts += simt_memory.wavefronts(addr, naming, self.gpu, 16)
        self.events.bytes_loaded += int(np.count_nonzero(self.alive)) * F32_BYTES * count
        first = self.gid - lane  # each thread's warp's lane 0, as an index into this executor's threads
        words = self.shared.reshape(-1).view(np.uint32)
        for i, r in enumerate(ins.dst):
            if trans:  # 16-bit element (row 2 (l % 4) + h, column l / 4), h = 0 into the low half
                halves = words.view(np.uint16)  # (little-endian: a word's low half first)
                parts = []
                for h in range(2):
                    row = first - self.gid[0] + 8 * i + 2 * (lane % 4) + h
                    parts.append(halves[2 * self.shared_word + addr[row] // 2 + lane // 4].astype(np.int64))
                regs[r] = parts[0] | parts[1] << 16
                continue
            row = first - self.gid[0] + 8 * i + lane // 4  # the thread naming the row this lane receives
            at = self.shared_word + addr[row] // F32_BYTES + lane % 4
            regs[r] = words[at].astype(np.int64)


def _to_word(v: np.ndarray, bits: bool) -> np.ndarray:
    """A register's value as the float32 word shared memory holds (a B32 register's 32 bits, unchanged)."""
    return np.asarray(v, np.int64).astype(np.uint32).view(np.float32) if bits else v


def _from_word(w: np.ndarray, bits: bool) -> np.ndarray:
    return np.asarray(w, np.float32).view(np.uint32).astype(np.int64) if bits else w


def _same_threads(a: np.ndarray | None, b: np.ndarray | None) -> bool:
    """Whether two sets of active threads (None: all) are the same."""
    return a is None and b is None or a is not None and b is not None and np.array_equal(a, b)


SLICE_THREADS = 1 << 18  # threads run in one pass: 2 MiB per 64-bit register


def run_simt(prog: Program, mem: Memory, gpu: Gpu) -> SimtEvents:
    """Run the whole grid, in slices of whole blocks of at most SLICE_THREADS threads (one block at least);
    sectors and banks are counted with the GPU's geometry (isa/gpu/*.toml)."""
    block, grid = prog.launch.block, prog.launch.grid
    per = max(1, SLICE_THREADS // block)
    shared = new_shared(prog, gpu)
    events = SimtEvents()
    for first in range(0, grid, per):
        gid = np.arange(first * block, min(first + per, grid) * block, dtype=np.int64)
        events.add(SimtExecutor(prog, mem, gpu, gid=gid, shared=shared).run())
    return events
