"""The cost model: exact dynamic counts, cycles as the max of named bounds, and bytes per memory level.

Counting is by structure, not by stepping: an instruction runs (product of its enclosing trip counts) times.
Cycles: each straight-line block (a loop's body and latch) costs, per trip, the largest of
  - ports:   the execution ports, with each instruction placed on the ports it may use as well as a
             scheduler could (the min-cut bound over unions of port groups);
  - issue:   micro-ops over the core's issue width;
  - latency: the loop-carried dependency chain through one trip (a sequential loop's accumulator), found by
             following each register that a trip reads before it writes it;
  - window:  the out-of-order window. Trips overlap only as far as the reorder buffer and the scheduler hold
             their micro-ops: by Little's law a trip whose micro-ops stay in the reorder buffer for R
             micro-op-cycles in all (dispatch to in-order retirement) and wait in the scheduler for S (dispatch
             to start) needs at least R / ROB and S / scheduler cycles per trip. A long chain inside each trip
             (GELU's erf, softmax's exp) decides here although every trip is independent. Where the ports are
             nearly as busy, the trips run on isa/timeline.py's cycle-by-cycle core instead.
A kernel's compute cycles add its blocks' cycles; memory sets a floor of bytes / bandwidth for every level.
The kernel's cycles are the largest of these, and the report names the bound that decided (uiCA's
"facile" bounds; the roofline).
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

from isasim.isa import cache_model
from isasim.isa.hardware import Bound, decider
from isasim.isa.machine import Uarch
from isasim.isa.machine_state import place
from isasim.isa.program import Instr, Item, Loop, Program, Reg, walk
from isasim.isa.semantics import RESULT_IS_FP, Prim
from isasim.isa.timeline import fused_latch, reads, simulate

@dataclass(frozen=True)
class BlockCost:
    ports: float
    issue: float
    latency: float  # the loop-carried chain's cycles per trip, shared by the `chains` in flight
    busiest_port: str
    window: float = 0.0
    chains: float = 1.0  # runs of this loop in flight at once: the enclosing loop's iterations (`_overlap`)

    @property
    def cycles(self) -> float:
        return max(self.ports, self.issue, self.latency, self.window)

    @property
    def alone(self) -> float:
        """Cycles per trip of one run of the loop with nothing beside it, as llvm-mca simulates a loop."""
        return max(self.ports, self.issue, self.latency * self.chains, self.window)

    @property
    def bound(self) -> Bound:
        best = self.cycles
        if self.latency == best and self.latency > 0:
            return Bound("latency", best)
        if self.window == best and self.window > 0:
            return Bound("window", best)
        if self.ports == best:
            return Bound("port", best, self.busiest_port)
        return Bound("issue", best)


@dataclass(frozen=True)
class KernelCost:
    """What one kernel costs on one machine, CPU core or GPU (isa/simt_cost.py fills `simt`)."""

    name: str
    instructions: int  # dynamic instructions; warp instructions on SIMT
    by_mnemonic: dict[str, int]
    cycles: float  # CPU: the deciding bound's cycles; GPU: the deciding bound's plus the launch overhead
    bound: Bound  # the one that decided (on a GPU, "launch" when the overhead exceeds every other bound)
    bounds: tuple[Bound, ...]  # the cycles each alone would take (CPU: compute and one per memory level)
    bytes: dict[str, int]
    flops: int
    fp_ops: int  # dynamic floating-point operations (isa/cost.py `fp_ops`)
    inner_loop: BlockCost | None = None  # CPU: per trip of the innermost loop that runs most often
    simt: dict | None = None  # SIMT: launch geometry, registers, occupancy and its limiter, sectors


@dataclass
class _Acc:
    compute: Counter = field(default_factory=Counter)  # (kind, where) of a block's bound -> cycles it decided
    total: float = 0.0
    hottest: tuple[int, BlockCost] | None = None


# floating-point operations per lane (per thread on SIMT): a multiply-add counts two; a warp's 16x8x16 mma
# is 2048 of them over its 32 threads
# a warp's mma per thread: 2 x 16 x 8 x 16 multiply-adds over 32 threads (int8's mma is not floating point)
_FLOPS = {Prim.FMA: 2, Prim.FNMA: 2, Prim.MMA_F16: 2 * 16 * 8 * 16 // 32, Prim.MMA_BF16: 2 * 16 * 8 * 16 // 32,
          Prim.HADD2: 2, Prim.HSUB2: 2, Prim.HMUL2: 2}  # (an .f16x2 instruction computes two halves)
_PAIRED = (Prim.HADD2, Prim.HSUB2, Prim.HMUL2)  # floating point, though their registers hold bits
# they move or convert values
_NOT_ARITHMETIC = (Prim.FMOV, Prim.BITS_I2F, Prim.CVT_I2F, Prim.SHFL_XOR, Prim.ROUND_F16, Prim.CVT_H2F)


def fp_ops(body: tuple[Item, ...], threads: int = 1, live_threads: int = 1) -> int:
    """Dynamic floating-point operations: every lane of every floating-point arithmetic instruction, an FMA
    counting two. On SIMT every thread that issues one counts, predicated or not: all `threads` of the grid
    until its EXIT_IF, then the `live_threads` (a guarded tail's idle threads included)."""
    total = 0
    after_exit = False
    for ins, n, _ in walk(body):
        if (RESULT_IS_FP.get(ins.prim) and ins.prim not in _NOT_ARITHMETIC) or ins.prim in _PAIRED:
            total += n * ins.lanes * (live_threads if after_exit else threads) * _FLOPS.get(ins.prim, 1)
        after_exit = after_exit or ins.prim is Prim.EXIT_IF
    return total


def carried_latency(block: list[Instr], uarch: Uarch) -> float:
    """The longest dependency chain from a loop-carried register's value at the top of a trip to its next."""
    written: set[Reg] = set()
    carried: set[Reg] = set()
    for ins in block:
        for r in reads(ins):
            if r not in written:
                carried.add(r)
        if isinstance(ins.dst, Reg):
            written.add(ins.dst)
    longest = 0.0
    for r in carried & written:
        dist = {r: 0.0}
        for ins in block:
            on_chain = [dist[s] for s in reads(ins) if s in dist]
            if isinstance(ins.dst, Reg):
                if on_chain:
                    dist[ins.dst] = max(on_chain) + uarch.timing(ins.mnemonic).latency
                else:
                    dist.pop(ins.dst, None)
        longest = max(longest, dist.get(r, 0.0))
    return longest


def port_bound(work: dict[frozenset, float]) -> tuple[float, str]:
    """Cycles per trip when every instruction may run on any port of its group and the scheduler spreads
    them as well as possible: the largest, over unions U of port groups, of (work that must run within U)
    / |U| (the max-flow min-cut bound of the assignment). An instruction's work is its reciprocal
    throughput times the number of ports it may use: vaddss at 0.5 on {p0, p1} is one port-cycle."""
    groups = list(work)
    best, where = 0.0, "-"
    for mask in range(1, 2 ** len(groups)):
        union = frozenset().union(*(g for i, g in enumerate(groups) if mask >> i & 1))
        load = sum(w for g, w in work.items() if g <= union)
        if load / len(union) > best + 1e-12:
            best, where = load / len(union), "".join(sorted(union)) if len(union) < 4 else f"{len(union)} ports"
    return best, where


def _occupancy(block: list[Instr], uarch: Uarch) -> tuple[float, float]:
    """(reorder-buffer, scheduler) micro-op-cycles of one trip laid out as the core would run it alone:
    micro-ops dispatch `issue_width` per cycle, each starts once its sources are ready (values from earlier
    trips: at once), finishes `latency` later and retires in order."""
    ready: dict[Reg, float] = {}
    dispatched = retired = rob = waiting = 0.0
    for i, ins in enumerate(block):
        if fused_latch(block, i, uarch):
            continue
        t = uarch.timing(ins.mnemonic)
        when = dispatched / uarch.issue_width
        start = max([when] + [ready.get(r, 0.0) for r in reads(ins)])
        done = start + t.latency
        if isinstance(ins.dst, Reg):
            ready[ins.dst] = done
        retired = max(retired, done)
        rob += t.uops * (retired - when)
        if t.ports:  # a move eliminated at rename never waits in the scheduler
            waiting += t.uops * (start - when)
        dispatched += t.uops
    return rob, waiting


WINDOW_RUNS = 40  # trips the cycle-level core runs where the window and the ports interact; the last half count


def window_bound(block: list[Instr], uarch: Uarch, floor: float = 0.0) -> float:
    """Cycles per trip the out-of-order window allows when trips overlap: by Little's law, a trip's
    micro-op-cycles in the reorder buffer over its size, and in the scheduler over its size. Laid out alone,
    a trip gives the bound where its chain, not the ports, decides. Where the ports are nearly as busy (`floor`:
    the port and issue bounds, at most twice this bound), micro-ops also wait for their ports and stay longer,
    and the two compound: there the trips run on the cycle-by-cycle core of isa/timeline.py, which stalls
    dispatch when the reorder buffer or the scheduler is full, and its steady spacing of trips is the bound."""
    rob, waiting = _occupancy(block, uarch)
    alone = max(rob / uarch.reorder_buffer, waiting / uarch.scheduler)
    if alone < floor / 2:  # the window is far from deciding: no need to find how the two interact
        return alone
    last = [0] * WINDOW_RUNS
    for e in simulate(block, uarch, WINDOW_RUNS):
        last[e.iteration] = max(last[e.iteration], e.retired)
    half = WINDOW_RUNS // 2
    return max(alone, (last[-1] - last[half - 1]) / (WINDOW_RUNS - half))


def block_cost(block: list[Instr], uarch: Uarch, sequential: bool, overlap: float = 1.0) -> BlockCost:
    """A loop body's cycles per trip; `overlap`: how many runs of the whole loop the out-of-order window holds
    at once (see `_overlap`), which share the loop-carried chain's latency between them."""
    work: Counter = Counter()
    uops = 0
    for i, ins in enumerate(block):
        if fused_latch(block, i, uarch):  # the pair issues and executes as the branch's one uop
            continue
        t = uarch.timing(ins.mnemonic)
        if t.ports:
            work[frozenset(t.ports)] += t.rthroughput * len(t.ports)
        uops += t.uops
    busiest, port = port_bound(dict(work))
    latency = carried_latency(block, uarch) / overlap if sequential else 0.0
    issue = uops / uarch.issue_width
    return BlockCost(busiest, issue, latency, port, window_bound(block, uarch, max(busiest, issue)),
                     overlap if sequential else 1.0)


def _uops(block: list[Instr], uarch: Uarch) -> int:
    return sum(uarch.timing(ins.mnemonic).uops for i, ins in enumerate(block) if not fused_latch(block, i, uarch))


def _iteration_uops(items: tuple[Item, ...], own: list[Instr], uarch: Uarch) -> int:
    """Micro-ops one iteration of a loop issues: its own instructions and every trip of the loops in it."""
    straight = [it for it in items if isinstance(it, Instr)] + own
    return _uops(straight, uarch) + sum(it.trip * _iteration_uops(it.body, list(it.latch), uarch)
                                        for it in items if isinstance(it, Loop))


def _overlap(loop: Loop, parent: int, uarch: Uarch) -> float:
    """How many runs of an innermost sequential `loop` (a reduction chain: a dot product's k loop) are in
    flight at once, where the loop around it has independent iterations of `parent` micro-ops each, every one
    starting the chain afresh. The oldest iteration's chain runs at its latency; dispatch runs ahead of it, so
    the reorder buffer behind it fills with the next iterations, whose chains start as soon as their micro-ops
    are in: with U micro-ops per iteration and a window of W, 1 + W / U chains run together (Little's law).
    Measured on the Zen 5 host (benchmarks/chain_overlap.py, scalar GEMMs of one chain length K each, K = 4 to
    1536, U about 6K): cycles per FMA within 10% of 4 / (1 + 448 / U) for K of 96 or more, where the 4-cycle
    chain alone decides, and 7-40% above it for K of 24-64, where the chain's bound and the ports' are close
    and the model takes the larger, as if they did not interfere. By this rule minilm's 32-trip attention
    dot products run 3.3 chains at once there, its 128-trip P.V 1.6, a 1536-trip linear layer 1.05. Only Zen 5
    has measured it; an earlier Zen 3 host showed no overlap for 128- and 384-trip chains (README, Measured)."""
    if any(isinstance(it, Loop) for it in loop.body):
        return 1.0
    return 1.0 + uarch.reorder_buffer / max(parent, 1)


def _blocks(items: tuple[Item, ...], trips: int, uarch: Uarch, acc: _Acc, own: list[Instr] | None = None,
            sequential: bool = False, overlap: float = 1.0) -> None:
    """Cost the straight-line instructions of `items` (plus `own`, the latch) as one block, recursing;
    `sequential`: the loop of `items` carries a chain from trip to trip (else its trips are independent)."""
    straight = [it for it in items if isinstance(it, Instr)] + (own or [])
    if straight:
        bc = block_cost(straight, uarch, sequential, overlap)
        acc.compute[bc.bound.kind, bc.bound.where] += trips * bc.cycles
        acc.total += trips * bc.cycles
        if own is not None and (acc.hottest is None or trips > acc.hottest[0]):
            acc.hottest = (trips, bc)
    independent = own is not None and not sequential  # this loop's iterations share no chain
    parent = _iteration_uops(items, own or [], uarch) if independent else 0
    for it in items:
        if isinstance(it, Loop):
            runs = _overlap(it, parent, uarch) if independent and not it.parallel else 1.0
            _blocks(it.body, trips * it.trip, uarch, acc, list(it.latch), not it.parallel, runs)


def cache_tree(program: Program) -> tuple:
    """The program's loads and stores as the cache model's loop tree, at the addresses the executor uses."""
    base = place(program.buffers)

    def conv(items: tuple[Item, ...]) -> tuple:
        out = []
        for it in items:
            if isinstance(it, Loop):
                body = conv(it.body) + conv(tuple(it.latch))
                if body:
                    out.append(cache_model.Loop(it.trip, body))
            elif it.access is not None:
                a = it.access
                count, stride = a.rows
                access = cache_model.Access(a.buf, base[a.buf] + a.base, a.strides + ((stride,) if count > 1 else ()),
                                            a.width, it.prim in (Prim.STORE, Prim.TILE_STORE))
                # a tile's rows as a loop of their own: each is `width` bytes, `stride` apart
                out.append(cache_model.Loop(count, (access,)) if count > 1 else access)
        return tuple(out)

    return conv(program.body)


def cost_program(program: Program, uarch: Uarch) -> KernelCost:
    by_mnemonic: Counter = Counter()
    for ins, n, _ in walk(program.body):
        by_mnemonic[ins.mnemonic] += n
    acc = _Acc()
    _blocks(program.body, 1, uarch, acc)
    levels = [lv for lv in uarch.levels if lv.name != "dram"]
    traffic = cache_model.analytic_traffic(
        cache_tree(program),
        tuple(cache_model.CacheLevel(lv.name, lv.size, lv.assoc, lv.line) for lv in levels))
    nbytes = {"l1": traffic.l1, "l2": traffic.l2, "llc": traffic.llc, "dram": traffic.dram}
    memory = tuple(Bound(lv.name, nbytes[lv.name] / lv.bytes_per_cycle) for lv in uarch.levels)
    kind, where = max(acc.compute.items(), key=lambda kv: kv[1])[0] if acc.compute else ("issue", "")
    slowest = decider(memory)
    bound = slowest if slowest.cycles > acc.total else Bound(kind, acc.total, where)
    return KernelCost(program.name, sum(by_mnemonic.values()), dict(by_mnemonic), bound.cycles, bound,
                      (Bound("compute", acc.total),) + memory, nbytes, program.flops, fp_ops(program.body),
                      acc.hottest[1] if acc.hottest else None)
