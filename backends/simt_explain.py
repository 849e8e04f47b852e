"""Explaining a GPU kernel (`isasim explain --target simt`): one kernel, and why it costs what it costs.

What a CUDA programmer would look at in Nsight Compute, computed by isasim: the launch (grid, block,
registers, shared memory), occupancy with every resource's limit and the one that binds, the hottest loop in
PTX with each instruction's pipe, rate and latency and their sources, the sectors each global access and the
wavefronts each shared access costs per warp request (coalescing, bank conflicts), the bounds, the one that
decides and by how much, and what would move it.
"""

from __future__ import annotations

from dataclasses import dataclass

from isasim.isa.cost import KernelCost
from isasim.isa.emit import hottest_loop
from isasim.isa.emit_ptx import instruction_text
from isasim.isa.gpu import Gpu
from isasim.isa.program import Loop, Program, walk
from isasim.isa.semantics import Prim
from isasim.isa.simt_cost import cost_simt, memory_costs, occupancy_limits
from isasim.isa.targets import Target
from isasim.models.graph import Node
from isasim.report import Report, plain


@dataclass
class SimtLine:
    instruction: str  # as emitted in the PTX file
    mnemonic: str
    pipe: str
    per_clock_per_sm: float
    latency: float
    source: str
    per_request: float | None  # memory: sectors (global) or wavefronts (shared) per warp request


@dataclass
class SimtExplanation(Report):
    """A GPU kernel taught (`isasim explain --target simt`)."""

    kernel: str
    op: str
    target: str
    uarch: str
    strategy: str
    grid: int
    block: int
    registers: int
    shared_bytes: int
    occupancy: dict  # limits per resource (blocks per SM), resident blocks, limiter, achieved occupancy
    trips: int  # how many times each warp runs the listed loop
    listing: list[SimtLine]
    elsewhere: dict[str, int]  # the rest of the stream: dynamic instructions per warp, per mnemonic
    bounds: dict[str, float]  # cycles each bound alone would take, and the launch overhead
    decides: str
    cycles: float
    advice: str
    chrome_events: tuple = ()  # no port timeline on SIMT: `explain --chrome-trace` skips these
    internal = ("chrome_events",)

    def records(self) -> list[dict]:
        return [{"kernel": self.kernel, "target": self.target, "uarch": self.uarch, "#": i, **plain(ln)}
                for i, ln in enumerate(self.listing)]


def _advice(c: KernelCost, gpu: Gpu, listing: list[SimtLine], occ: dict) -> str:
    """What decides, by how much over the runner-up, and what would move it."""
    b = {x.label: x.cycles for x in c.bounds if x.kind != "launch"}
    decider = c.bound
    ranked = sorted(b.items(), key=lambda kv: -kv[1])
    runner = next((kv for kv in ranked if kv[0] != decider.label), ("-", 0.0))
    margin = f"{c.bound.cycles / max(runner[1], 1e-9):.1f}x the runner-up, {runner[0]} at " \
             f"{runner[1]:,.0f} cycles"
    count = {p: sum(1 for ln in listing if ln.pipe == p) for p in {ln.pipe for ln in listing}}
    fmas = sum(1 for ln in listing if ln.mnemonic == "fma.rn.f32")
    head = f"{decider} decides, {margin}: "
    if decider.kind == "launch":
        return head + (f"the kernel's work takes less than its {gpu.launch_overhead_us:g} us launch overhead "
                       f"(its largest bound is {ranked[0][0]} at {ranked[0][1]:,.0f} cycles); fusing it into its "
                       f"neighbour, or launching the layer as a CUDA graph, would remove most of its time.")
    if decider.kind == "latency":
        return head + (f"one warp's own dependency chain, once per round of resident blocks. "
                       f"{occ['resident_warps']} warps per SM ({occ['achieved']:.0%} occupancy, limited by "
                       f"{occ['limiter']}) cannot hide the {c.simt['global_latency']:g}-cycle {c.simt['global_level']} "
                       f"latency of each load. More "
                       f"warps per SM (more blocks: smaller tiles, split-K, fewer registers) or more independent "
                       f"loads per warp (unrolling its loop) would move it.")
    if (decider.kind, decider.where) == ("pipe", "lsu"):
        return head + (f"the load/store pipe takes one warp instruction per cycle per SM, and the loop issues "
                       f"{count.get('lsu', 0)} memory instructions for {fmas} FMAs. Vector loads "
                       f"(ld.shared.v4.f32: one instruction for four words) or a bigger register tile per thread "
                       f"would issue fewer per FMA.")
    if (decider.kind, decider.where) == ("pipe", "fp32"):
        return head + (f"the kernel runs at the SM's FMA rate ({gpu.fp32_lanes():g} lanes per cycle); only fewer "
                       f"operations or tensor cores (TF32, FP16) would move it.")
    if decider.kind == "shared":
        factor = c.simt["bank_conflict_factor"]
        return head + (f"{factor:.2f} times the wavefronts a conflict-free access pattern would take"
                       + ("; padding the arrays so a warp's words fall in different banks would remove the "
                          "conflicts." if factor > 1.01 else "; the accesses are conflict-free, so fewer bytes "
                          "through shared memory per operation (bigger register or warp tiles) would move it."))
    if decider.kind in ("l2", "dram"):
        return head + (f"{c.simt['sectors_per_request']:.1f} sectors per global request (4 is ideal for a warp of "
                       f"4-byte accesses): better coalescing, or reuse through shared memory, would move it.")
    return head + "fewer instructions per element (address arithmetic, loop control) would move it."


def explain_simt(prog: Program, node: Node, target: Target, gpu: Gpu) -> SimtExplanation:
    """`node`'s kernel, lowered to `prog`: its launch, occupancy, hottest loop and bounds on `gpu`."""
    c = cost_simt(prog, gpu)
    mem = memory_costs(prog, gpu)
    trips, loop = hottest_loop(prog.body)
    body = list(loop.body) + list(loop.latch) if loop is not None else \
        [it for it in prog.body if not isinstance(it, Loop)]
    chosen = {id(ins) for ins in body}
    per_request = {}
    for pos, (ins, _, _) in enumerate(walk(prog.body)):
        if id(ins) in chosen and pos in mem.by_instruction:
            requests, units = mem.by_instruction[pos]
            per_request[id(ins)] = units / max(requests, 1)
    elsewhere: dict[str, int] = {}
    for ins, n, depth in walk(prog.body):
        if id(ins) not in chosen:
            elsewhere[ins.mnemonic] = elsewhere.get(ins.mnemonic, 0) + n
    listing = []
    for ins in body:
        t = gpu.timing(ins.mnemonic)
        latency, source = t.latency, t.source
        if ins.prim in (Prim.LOAD, Prim.STORE):  # the level the model found the kernel's data in
            latency = c.simt["global_latency"]
            fits = "fit" if c.simt["global_level"] == "L2" else "do not fit"
            source = f"{c.simt['global_level']} latency: the kernel's buffers {fits} in L2. {source}"
        listing.append(SimtLine(instruction_text(prog, ins), ins.mnemonic, t.pipe, t.per_clock_per_sm, latency, source,
                                per_request.get(id(ins))))
    limits = occupancy_limits(prog, c.simt["registers"], gpu)
    occ = {"limits": limits, "resident_blocks": c.simt["blocks_per_sm"], "resource": c.simt["resource_limiter"],
           "blocks_on_busiest_sm": c.simt["blocks_on_busiest_sm"], "limiter": c.simt["limiter"],
           "achieved": c.simt["occupancy"], "resident_warps": round(c.simt["occupancy"] * gpu.max_warps_per_sm)}
    launch = prog.launch
    return SimtExplanation(node.name, node.op, target.name, gpu.name, launch.strategy, launch.grid, launch.block,
                           c.simt["registers"], launch.shared_bytes, occ, trips or 1, listing, elsewhere,
                           {b.label: b.cycles for b in c.bounds}, c.bound.label, c.cycles,
                           _advice(c, gpu, listing, occ))
