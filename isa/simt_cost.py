"""The SIMT cost model: exact warp-level counts, occupancy, and cycles as the max of named bounds.

Counts, by structure (no execution): a warp issues every instruction of the stream once per trip, predicated
or not, while any of its threads is alive. Memory costs come from the addresses each warp touches: every
memory instruction's `WarpAccess` gives each thread's address in closed form, so sectors and bank conflicts are
counted warp by warp (isa/simt_memory.py). Trips whose offsets agree modulo the period of both (a 128-byte
row of banks, a multiple of the sector) cost the same, so each residue is evaluated once and weighted by how
many trips land on it - exact, not sampled. Likewise across the grid: where every thread's address repeats,
or moves by a multiple of that period, after some number of warps (a batch or head index only adds a matrix's
bytes), one such period of warps is evaluated for all; and a grid-stride loop's full trips, which move every
address by one amount, are grouped by that amount's residue. The executor counts the same figures from the addresses it forms.
One exception: a gather or scatter (an embedding's row lookup, its gradient's row update) touches rows named
by data, which no closed form knows; it is costed as if every row were distinct (an upper bound when tokens
repeat), while the executor counts the rows really touched.

Occupancy (CUDA C++ Programming Guide, "Occupancy Calculator" rules): resident blocks per SM are limited by
warps, threads, blocks, registers (allocated per warp in units) and shared memory (plus a per-block
reservation); the smallest limit names the limiter.

Cycles, per kernel, the largest of:
- issue: warp instructions on the busiest SM (it runs ceil(grid / SMs) blocks) over its schedulers;
- pipe P: that SM's warp instructions on pipe P times 32 / (results per clock per SM);
- shared: shared-memory wavefronts (one per cycle per 128 bytes of bandwidth);
- l2, dram: bytes over the chip's bandwidth (DRAM: each buffer once, `unique_bytes`);
- latency: one warp's own in-order chain (dependent instructions wait their producers' latency) times the
  rounds of resident blocks the busiest SM runs - latency that occupancy cannot hide.
Then the launch overhead is added (a documented per-part parameter): back-to-back kernels pay it in series.

Bytes, under the CPU reports' level names: l1 = what the threads ask for (active threads x access width, global
and shared), l2 = global sectors x 32 (what the SMs fetch from L2: L1 hits are not credited), llc = the same
(the L2 is a GPU's last-level cache), dram = each buffer once (the sectors touched in it, where fewer).
"""

from __future__ import annotations

import itertools
import math
from collections import Counter
from dataclasses import dataclass, field

import numpy as np

from isasim.isa import simt_memory
from isasim.isa.cost import KernelCost, fp_ops
from isasim.isa.hardware import Bound, decider
from isasim.isa.gpu import Gpu
from isasim.isa.machine_state import place
from isasim.isa.program import (Imm, Instr, Item, Lin, Loop, Program, Reg, RegFile, WarpAccess, guard_mask,
                                walk, written)
from isasim.isa.semantics import Prim
from isasim.isa.simt_exec import place_shared
from isasim.isa.timeline import reads

_MEMORY = (Prim.LOAD, Prim.STORE, Prim.LOAD_SHARED, Prim.STORE_SHARED, Prim.CP_ASYNC, Prim.LDMATRIX,
           Prim.LDMATRIX_T, Prim.LOAD_SHARED_V)
_REG_WORDS = {RegFile.FP: 1, RegFile.GP: 2, RegFile.PRED: 0, RegFile.MASK: 0,
              RegFile.B32: 1}  # 32-bit registers per value


@dataclass
class _Memory:
    global_requests: int = 0
    sectors: int = 0
    shared_requests: int = 0
    wavefronts: int = 0
    thread_bytes: int = 0  # what the threads asked for: active threads x access width, global and shared
    shared_bytes: int = 0  # the shared part of it
    by_buffer: Counter = field(default_factory=Counter)
    by_instruction: dict = field(default_factory=dict)  # position in walk order -> [requests, sectors or wavefronts]


def _trip_weights(loops: tuple[Loop, ...], strides: tuple[int, ...], period: int) -> dict[int, int]:
    """How many trip combinations put the access at each byte offset modulo `period`."""
    hist = {0: 1}
    for loop, stride in zip(loops, strides):
        step = Counter((t * stride) % period for t in range(loop.trip))
        nxt: Counter = Counter()
        for r, n in hist.items():
            for s, m in step.items():
                nxt[(r + s) % period] += n * m
        hist = nxt
    return hist


CHUNK = 1 << 20  # threads evaluated at once, which bounds memory on big grids (batch 128: 50M threads)


def _chunks(prog: Program):
    """The grid's global thread ids, a slice of whole warps at a time, with which of them stay live."""
    for start in range(0, prog.launch.threads, CHUNK):
        gid = np.arange(start, min(start + CHUNK, prog.launch.threads), dtype=np.int64)
        yield gid, guard_mask(prog.launch.live, gid)


def live_counts(prog: Program, gpu: Gpu) -> tuple[int, int]:
    """(threads, warps) that stay past the kernel's EXIT_IF."""
    threads = warps = 0
    for _, live in _chunks(prog):
        threads += int(live.sum())
        warps += simt_memory.requests(live, gpu)
    return threads, warps


def _strides_grid(wa: WarpAccess) -> bool:
    """Whether the access sits in a grid-stride loop (its threads move to other elements trip by trip)."""
    return any(lin.gid_steps for lin in [wa.byte] + [g for g, _ in wa.guards])


def repeat_period(prog: Program, wa: WarpAccess, warp: int, align: int = 1) -> int | None:
    """A number of whole warps after which the access's costs repeat exactly, or None. Each term
    (gid // div) % mod repeats every div * mod threads. A term of the address without a modulo (a batch or
    head index that only grows) rises by the same amount for every thread after any multiple of div threads:
    the addresses then move together, and a move by a multiple of `align` (the sector, and the row of banks)
    keeps every warp's count of sectors or wavefronts. Guards and the kernel's live condition must repeat
    exactly (a term without a modulo there changes who takes part: None)."""
    if _strides_grid(wa):
        return None
    period = warp
    for lin in [wa.byte] + [g for g, _ in wa.guards] + [g for g, _ in prog.launch.live]:
        for div, mod, _ in lin.terms:
            if not mod and lin is not wa.byte:
                return None
            period = math.lcm(period, div * mod if mod else div)
    rise = shift(wa.byte, period)
    return period * (align // math.gcd(rise, align)) if rise else period


def _domains(prog: Program, wa: WarpAccess, warp: int, align: int):
    """(thread ids, which are live, how many times they stand for the grid): one period of the access's
    pattern when the grid holds whole periods (each period's warps touch the same sectors and banks as the
    first's, or ones moved by a multiple of `align`), else the whole grid a chunk at a time."""
    period = repeat_period(prog, wa, warp, align)
    if period is not None and period < prog.launch.threads and prog.launch.threads % period == 0:
        gid = np.arange(period, dtype=np.int64)
        yield gid, guard_mask(prog.launch.live, gid), prog.launch.threads // period
        return
    for gid, live in _chunks(prog):
        yield gid, live, 1


def _access_cost(wa: WarpAccess, gid: np.ndarray, live: np.ndarray, trips, weights, base: int, gpu: Gpu,
                 period: int) -> np.ndarray:
    """(requests, sectors or wavefronts, bytes) of one memory instruction over the threads `gid`, all trips."""
    addr0 = base + wa.byte.at(gid)

    def cost(offset: int, active: np.ndarray) -> np.ndarray:
        if wa.shared:
            units = simt_memory.wavefronts(addr0 + offset, active, gpu, wa.width, wa.regs)
        else:
            units = simt_memory.sectors(addr0 + offset, active, gpu, wa.width)
        return np.array([simt_memory.requests(active, gpu), units, int(active.sum()) * wa.width], dtype=np.int64)

    total = np.zeros(3, dtype=np.int64)
    if _strides_grid(wa):
        return _grid_stride_cost(wa, gid, live, trips, base, gpu, period, cost)
    steady = tuple((lin, limit) for lin, limit in wa.guards if not lin.strides)
    active = live & guard_mask(steady, gid)
    if trips is None:
        for offset, n in weights.items():
            total += n * cost(offset, active)
        return total
    # guards that move with the trips: group the trips where they pass for every thread; each moving guard's
    # lowest and highest value over the threads the others let through tells
    reach = [(int(v.min()), int(v.max()), lin, limit) for lin, limit in wa.guards if lin.strides
             for v in (lin.at(gid[active]),)] if active.any() else []
    full: Counter = Counter()
    for t in trips:
        offset = int(np.dot(wa.byte.strides, t)) if t.size else 0
        shift = [int(np.dot(lin.strides, t)) for _, _, lin, _ in reach]
        if all(hi + sh < limit for (_, hi, _, limit), sh in zip(reach, shift)):
            full[offset % period] += 1  # every thread passes: as without the guard
        elif not any(lo + sh >= limit for (lo, _, _, limit), sh in zip(reach, shift)):
            total += cost(offset, live & guard_mask(wa.guards, gid, t))  # some pass: exactly
    for offset, n in full.items():
        total += n * cost(offset, active)
    return total


def shift(lin: Lin, moved: int) -> int | None:
    """How much `lin` rises when every thread id moves up by `moved`, where that is the same for every thread: each
    term (gid // div) % mod is unchanged when `moved` is a multiple of div * mod, and a term without a modulo
    rises by coef * moved / div when `moved` is a multiple of div. None where some term changes otherwise."""
    rise = 0
    for div, mod, coef in lin.terms:
        if moved % (div * mod if mod else div):
            return None
        if not mod:
            rise += coef * (moved // div)
    return rise


def _grid_stride_cost(wa: WarpAccess, gid: np.ndarray, live: np.ndarray, trips, base: int, gpu: Gpu, period: int,
                      cost) -> np.ndarray:
    """A grid-stride loop's access over all its trips. Each trip moves the threads to other elements. Where that
    shifts every thread's address by one amount (`shift`) and every guard passes for every live thread, the trip
    costs what trip 0 costs at that amount modulo `period`: trips are grouped by residue and each residue is
    evaluated once, as for other loops. A trip where some guard fails for some threads (the tail) is evaluated
    thread by thread, and one where it fails for all costs nothing."""
    total = np.zeros(3, dtype=np.int64)
    if not live.any():
        return total
    guards = [(lin, limit, lin.at(gid[live])) for lin, limit in wa.guards]
    reach = [(int(v.min()), int(v.max()), lin, limit) for lin, limit, v in guards]
    full: Counter = Counter()
    for t in trips:
        rise = shift(wa.byte, int(np.dot(wa.byte.gid_steps, t))) if wa.byte.gid_steps else 0
        moves = [shift(lin, int(np.dot(lin.gid_steps, t))) if lin.gid_steps else 0 for _, _, lin, _ in reach]
        if rise is not None and None not in moves:
            moves = [m + (int(np.dot(lin.strides, t)) if lin.strides else 0) for m, (_, _, lin, _) in zip(moves, reach)]
            if any(lo + m >= limit for (lo, _, _, limit), m in zip(reach, moves)):
                continue  # no thread passes: the trip touches nothing
            if all(hi + m < limit for (_, hi, _, limit), m in zip(reach, moves)):
                offset = rise + (int(np.dot(wa.byte.strides, t)) if wa.byte.strides else 0)
                full[offset % period] += 1
                continue
        addr = base + wa.byte.value(gid, t)
        active = live & guard_mask(wa.guards, gid, t)
        units = simt_memory.wavefronts(addr, active, gpu, wa.width, wa.regs) if wa.shared \
            else simt_memory.sectors(addr, active, gpu, wa.width)
        total += np.array([simt_memory.requests(active, gpu), units, int(active.sum()) * wa.width], dtype=np.int64)
    for offset, n in full.items():
        total += n * cost(offset, live)
    return total


def memory_costs(prog: Program, gpu: Gpu) -> _Memory:
    bases = {**place(prog.buffers), **place_shared(prog, gpu)}
    period = math.lcm(gpu.sector_bytes, gpu.shared_banks * gpu.shared_bank_bytes)
    accesses = []
    for pos, (ins, _, depth) in enumerate(walk(prog.body)):
        if ins.prim not in _MEMORY:
            continue
        for wa in (ins.warp, ins.copy_to):  # (a cp.async reads global memory and writes shared memory)
            if wa is None:
                continue
            if len(wa.byte.strides) != len(depth):
                raise AssertionError(f"{prog.name}: {ins} has strides for {len(wa.byte.strides)} loops, "
                                     f"but {len(depth)} enclose it")
            trips = [np.array(t, dtype=np.int64) for t in itertools.product(*(range(lp.trip) for lp in depth))] \
                if any(lin.strides for lin, _ in wa.guards) or _strides_grid(wa) else None
            accesses.append((pos, wa, trips, _trip_weights(depth, wa.byte.strides, period)))
    out = _Memory()
    for pos, wa, trips, weights in accesses:
        total = np.zeros(3, dtype=np.int64)  # requests, sectors or wavefronts, bytes
        for gid, live, repeats in _domains(prog, wa, gpu.warp_size, period):
            total += repeats * _access_cost(wa, gid, live, trips, weights, bases[wa.buf], gpu, period)
        requests, units, nbytes = (int(x) for x in total)
        out.by_instruction.setdefault(pos, [requests, units])  # (a cp.async's: its global side)
        out.thread_bytes += nbytes
        if wa.shared:
            out.shared_requests += requests
            out.wavefronts += units
            out.shared_bytes += nbytes
        else:
            out.global_requests += requests
            out.sectors += units
            out.by_buffer[wa.buf] += units
    return out


def warp_counts(prog: Program, gpu: Gpu) -> Counter:
    """Warp instructions issued per mnemonic: all warps until EXIT_IF, then the warps with a live thread."""
    all_warps = prog.launch.threads // gpu.warp_size
    live_warps = live_counts(prog, gpu)[1]
    counts: Counter = Counter()
    warps = all_warps
    for ins, n, _ in walk(prog.body):
        counts[ins.mnemonic] += n * warps
        if ins.prim is Prim.EXIT_IF:
            warps = live_warps
    return counts


def registers(prog: Program) -> int:
    """An estimate of the 32-bit registers a thread needs: the most values live at once in the stream (a value
    read inside a loop lives through the whole loop), 64-bit values counting two. ptxas's own count, from
    `isasim emit`, may differ: it rematerialises constants and schedules differently."""
    order: list[Instr] = []
    spans: list[tuple[int, int]] = []

    def flat(items: tuple[Item, ...]) -> None:
        for it in items:
            if isinstance(it, Loop):
                start = len(order)
                flat(it.body + it.latch)
                spans.append((start, len(order) - 1))
            else:
                order.append(it)

    flat(prog.body)
    # A register written once, by a move of an immediate, is a constant that ptxas folds into the
    # instructions that read it (PTX arithmetic takes immediate operands): it occupies no register.
    writes = Counter(r for ins in order for r in written(ins))
    folded = {ins.dst for ins in order if ins.prim in (Prim.FMOV, Prim.IMOV) and isinstance(ins.srcs[0], Imm)
              and writes[ins.dst] == 1}
    first: dict[Reg, int] = {}  # first write (or read, for a value that arrives in a register)
    last: dict[Reg, int] = {}
    first_read: dict[Reg, int] = {}
    for i, ins in enumerate(order):
        for r in reads(ins) + ([ins.mask] if ins.mask is not None else []):
            last[r] = i
            first.setdefault(r, i)
            first_read.setdefault(r, i)
        for r in written(ins):
            first.setdefault(r, i)
            last[r] = max(last.get(r, i), i)
    for s, e in sorted(spans, key=lambda se: se[1] - se[0]):  # inner loops first
        carried = _carried(order[s:e + 1])
        for r in first:
            if not (s <= last[r] <= e or s <= first_read.get(r, -1) <= e):
                continue  # not used in this loop
            if first[r] < s:  # defined before the loop, read in it: live through every trip
                last[r] = max(last[r], e)
            elif r in carried:  # a trip reads what the previous trip wrote
                first[r], last[r] = s, max(last[r], e)
    live = np.zeros(len(order) + 1, dtype=np.int64)
    for r in first.keys() - folded:
        live[first[r]] += _REG_WORDS[r.file] * r.lanes
        live[last[r] + 1] -= _REG_WORDS[r.file] * r.lanes
    return int(np.cumsum(live).max()) if len(order) else 0


def _carried(body: list[Instr]) -> set[Reg]:
    """The registers a trip reads before writing them (their values come from the previous trip)."""
    done: set[Reg] = set()
    carried: set[Reg] = set()
    for ins in body:
        for r in reads(ins) + ([ins.mask] if ins.mask is not None else []):
            if r not in done:
                carried.add(r)
        done.update(written(ins))
    return carried


def occupancy(prog: Program, regs: int, gpu: Gpu) -> tuple[int, str]:
    """Resident blocks per SM and the resource that limits them."""
    limits = occupancy_limits(prog, regs, gpu)
    limiter = min(limits, key=lambda k: (limits[k], k != "warps"))
    return limits[limiter], limiter


def occupancy_limits(prog: Program, regs: int, gpu: Gpu) -> dict[str, int]:
    """How many blocks of this kernel each SM resource alone would let reside on one SM."""
    warps = prog.launch.block // gpu.warp_size
    per_warp = -(-max(regs, 1) * gpu.warp_size // gpu.register_alloc_unit) * gpu.register_alloc_unit
    limits = {
        "warps": gpu.max_warps_per_sm // warps,
        "threads": gpu.max_threads_per_sm // prog.launch.block,
        "blocks": gpu.max_blocks_per_sm,
        "registers": gpu.registers_per_sm // (per_warp * warps),
    }
    if prog.launch.shared_bytes:
        limits["shared memory"] = gpu.shared_per_sm // (prog.launch.shared_bytes + gpu.shared_reserved_per_block)
    return limits


def warp_path(prog: Program, gpu: Gpu, global_latency: float) -> float:
    """Cycles one warp alone needs: in-order issue, each instruction waiting for its sources' producers."""

    def latency(ins: Instr) -> float:
        if ins.prim in (Prim.LOAD, Prim.STORE):
            return global_latency
        if ins.prim in (Prim.LOAD_SHARED, Prim.STORE_SHARED, Prim.LDMATRIX, Prim.LDMATRIX_T, Prim.LOAD_SHARED_V):
            return gpu.shared_latency
        if ins.prim is Prim.CP_WAIT:
            return 0.0  # (it waits for the group it names to land: see `block`)
        return gpu.timing(ins.mnemonic).latency

    def block(items: tuple[Item, ...], track: bool = True) -> float:
        """`track`: follow cp.async groups to their landing (a loop's own trips are charged by `loop_trip`)."""
        ready: dict[Reg, float] = {}
        t = 0.0
        end = 0.0
        groups: list[float] = []  # when each committed group of cp.async copies has landed
        landing: float | None = None  # the group being formed: when its latest copy lands
        for it in items:
            if isinstance(it, Loop):
                trip, waits, per_wait = loop_trip(it)
                start = max(t, end)
                fill = 0.0
                if track and waits and len(groups) > waits[0]:  # the first trip waits for a copy issued before
                    n = waits[0]
                    steady = max(per_wait, (per_wait + global_latency) / (n + 2)) - per_wait  # (already in `trip`)
                    fill = max(0.0, groups[-(n + 1)] - start - steady)
                t = start + it.trip * trip + fill
                end = t
                ready = {r: min(v, t) for r, v in ready.items()}
                if waits:  # the last trips' groups: one per wait, a wait's share of the trip apart
                    per = trip / len(waits)
                    groups = [t - k * per + global_latency for k in range(len(waits), 0, -1)]
                continue
            srcs = reads(it) + ([it.mask] if it.mask is not None else [])
            start = max([t] + [ready.get(r, 0.0) for r in srcs])
            if track and it.prim is Prim.CP_WAIT and len(groups) > it.srcs[0].value:
                start = max(start, groups[-(it.srcs[0].value + 1)])  # until the group N + 1 back has landed
            t = start + 1
            done = start + latency(it)
            for r in written(it):
                ready[r] = done
            if it.prim is Prim.CP_ASYNC:
                landing = max(landing or 0.0, start + global_latency)
            elif it.prim is Prim.CP_COMMIT:
                groups.append(start if landing is None else landing)  # (an empty group has landed)
                landing = None
            if it.prim not in (Prim.STORE, Prim.CP_ASYNC):  # a global store (or an asynchronous copy) is
                end = max(end, done)  # fire-and-forget: the warp issues on while the memory system completes it
        return max(t, end)

    def loop_trip(loop: Loop) -> tuple[float, list[int], float]:
        """One trip of a loop, the N of each cp.async.wait_group in it, and the work between two waits. A
        pipeline's trip waits for the copies issued N + 1 groups (so N + 1 of its unrolled trips) earlier, and
        in the steady state each of those took as long as this one, stalls included: T = w + max(0, L -
        (N + 1) T), so T = max(w, (w + L) / (N + 2)) for work w between waits and global latency L. The loop's
        trips are taken to be alike."""
        work = block(loop.body + loop.latch, track=False)
        waits = [ins.srcs[0].value for ins in loop.body if isinstance(ins, Instr) and ins.prim is Prim.CP_WAIT]
        if not waits:
            return work, [], 0.0
        per_wait = work / len(waits)  # the work between one wait and the next
        return sum(max(per_wait, (per_wait + global_latency) / (n + 2)) for n in waits), waits, per_wait

    return block(prog.body)


def unique_bytes(prog: Program, mem: _Memory, gpu: Gpu) -> int:
    """What a kernel moves to and from DRAM: each global buffer once, or the sectors it touches in it where
    those are fewer (a gather's rows). A kernel touches its data again soon after the first time: a warp's
    passes over its row (layer norm, softmax), a vector every row reads (a bias), a GEMM's operand panels read
    by consecutive blocks of one wave. Those touches hit in L2, even where the whole footprint is larger than
    L2. Measured on an H200 (benchmarks/cuda_run.py, bert-base at batch 128, footprints of 100-200 MB): layer
    norm ran in 0.49x and softmax in 0.61x the time that charging every touch to DRAM predicts."""
    sizes = {b.name: -(-b.size * b.dtype.itemsize // gpu.sector_bytes) * gpu.sector_bytes for b in prog.buffers}
    return sum(min(n * gpu.sector_bytes, sizes[buf]) for buf, n in mem.by_buffer.items())


# The last few programs costed, by identity: a tuner that picks one of the programs it costed (a GEMM's register
# tile, lowering/isel_simt_gemm.py) hands that program on, and it is costed again for the report. Each entry
# holds its program, so no other program can take its id while it is here.
_RECENT: dict = {}
KEEP_RECENT = 8


def cost_simt(prog: Program, gpu: Gpu) -> KernelCost:
    """Its `instructions` are warp instructions; `simt` holds the launch, occupancy and memory details."""
    memo = (id(prog), gpu.key())
    if memo in _RECENT and _RECENT[memo][0] is prog:
        return _RECENT[memo][1]
    cost = cost_simt_afresh(prog, gpu)
    while len(_RECENT) >= KEEP_RECENT:
        del _RECENT[next(iter(_RECENT))]
    _RECENT[memo] = prog, cost
    return cost


def cost_simt_afresh(prog: Program, gpu: Gpu) -> KernelCost:
    """What `cost_simt` returns, worked out every time (not looked up among the programs costed last)."""
    counts = warp_counts(prog, gpu)
    mem = memory_costs(prog, gpu)
    regs = registers(prog)
    resident, limiter = occupancy(prog, regs, gpu)
    on_busiest = -(-prog.launch.grid // gpu.sms)  # blocks on the busiest SM
    share = on_busiest / prog.launch.grid
    rounds = -(-on_busiest // resident)
    warps_resident = min(on_busiest, resident) * prog.launch.block // gpu.warp_size
    resource = limiter
    if on_busiest < resident:  # too few blocks to fill even one SM's capacity: the grid limits occupancy
        limiter = "grid"
    pipes: Counter = Counter()
    for mn, n in counts.items():
        t = gpu.timing(mn)
        pipes[t.pipe] += n * share * gpu.warp_size / t.per_clock_per_sm
    footprint = sum(b.size * b.dtype.itemsize for b in prog.buffers)
    l2_bytes = mem.sectors * gpu.sector_bytes
    dram_bytes = unique_bytes(prog, mem, gpu)
    global_latency = gpu.l2_latency if footprint <= gpu.l2_bytes else gpu.dram_latency
    bounds = (
        Bound("issue", sum(counts.values()) * share / gpu.schedulers_per_sm),
        *(Bound("pipe", c, p) for p, c in pipes.items()),
        Bound("shared", mem.wavefronts * share * gpu.shared_banks * gpu.shared_bank_bytes / gpu.shared_bytes_per_cycle),
        Bound("l2", l2_bytes / gpu.l2_bytes_per_cycle),
        Bound("dram", dram_bytes / gpu.dram_bytes_per_cycle),
        Bound("latency", rounds * warp_path(prog, gpu, global_latency)),
    )
    top = decider(bounds)
    launch = Bound("launch", gpu.launch_overhead_us * 1e3 * gpu.clock_ghz)
    cycles = top.cycles + launch.cycles
    simt = {
        "strategy": prog.launch.strategy, "grid": prog.launch.grid, "block": prog.launch.block, "registers": regs,
        "shared_bytes": prog.launch.shared_bytes, "blocks_per_sm": resident, "limiter": limiter,
        "resource_limiter": resource, "blocks_on_busiest_sm": on_busiest,
        "occupancy": warps_resident / gpu.max_warps_per_sm if on_busiest else 0.0,
        "waves": -(-prog.launch.grid // (resident * gpu.sms)), "global_requests": mem.global_requests,
        "sectors": mem.sectors, "sectors_per_request": mem.sectors / max(mem.global_requests, 1),
        "shared_requests": mem.shared_requests, "wavefronts": mem.wavefronts,
        # wavefronts over the fewest the requests could take without conflicts: one each, or one per 128 bytes
        # for wider ones (an ldmatrix .x4 moves 512 bytes: 4 wavefronts, and no conflict)
        "bank_conflict_factor": mem.wavefronts / max(mem.shared_requests, 1,
                                                     mem.shared_bytes / (gpu.shared_banks * gpu.shared_bank_bytes)),
        "sectors_by_buffer": dict(mem.by_buffer),
        "global_level": "L2" if footprint <= gpu.l2_bytes else "DRAM", "global_latency": global_latency,
    }
    return KernelCost(prog.name, sum(counts.values()), dict(counts), cycles,
                      launch if launch.cycles > top.cycles else top, bounds + (launch,),
                      {"l1": mem.thread_bytes, "l2": l2_bytes, "llc": l2_bytes, "dram": dram_bytes},
                      prog.flops, fp_ops(prog.body, prog.launch.threads, live_counts(prog, gpu)[0]), simt=simt)
