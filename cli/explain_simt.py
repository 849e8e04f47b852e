"""`isasim explain --target simt`: one GPU kernel, and why it costs what it costs.

What a CUDA programmer would look at in Nsight Compute, computed by isasim: the launch (grid, block,
registers, shared memory), occupancy with every resource's limit and the one that binds, the hottest loop in
PTX with each instruction's pipe, rate and latency and their sources, the sectors each global access and the
wavefronts each shared access costs per warp request (coalescing, bank conflicts), the bounds, the one that
decides and by how much, and what would move it.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from isasim.isa.emit import hottest_loop
from isasim.isa.emit_ptx import _Writer
from isasim.isa.gpu import Gpu
from isasim.isa.program import Instr, Loop, walk
from isasim.isa.semantics import Prim
from isasim.isa.simt_cost import cost_simt, memory_costs, occupancy_limits
from isasim.isa.targets import Target
from isasim.lowering.isel_simt import select_simt
from isasim.isa.errors import UserError

_MEMORY = (Prim.LOAD, Prim.STORE, Prim.LOAD_SHARED, Prim.STORE_SHARED)


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
class SimtExplanation:
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

    def to_json(self) -> dict:
        out = asdict(self)
        out.pop("chrome_events")
        return out


def _ptx(writer: _Writer, ins: Instr) -> str:
    before = len(writer.lines)
    writer.instr(ins, "$Lloop")
    return " ".join(line.strip() for line in writer.lines[before:])


def _advice(c, gpu: Gpu, listing: list[SimtLine], occ: dict) -> str:
    """What decides, by how much over the runner-up, and what would move it."""
    b = {k: v for k, v in c.bounds.items() if k != "launch"}
    decider = c.bound
    ranked = sorted(b.items(), key=lambda kv: -kv[1])
    runner = next((kv for kv in ranked if kv[0] != decider), ("-", 0.0))
    margin = f"{b.get(decider, c.bounds['launch']) / max(runner[1], 1e-9):.1f}x the runner-up, {runner[0]} at " \
             f"{runner[1]:,.0f} cycles"
    count = {p: sum(1 for ln in listing if ln.pipe == p) for p in {ln.pipe for ln in listing}}
    fmas = sum(1 for ln in listing if ln.mnemonic == "fma.rn.f32")
    head = f"{decider} decides, {margin}: "
    if decider == "launch":
        return head + (f"the kernel's work takes less than its {gpu.launch_overhead_us:g} us launch overhead "
                       f"(its largest bound is {ranked[0][0]} at {ranked[0][1]:,.0f} cycles); fusing it into its "
                       f"neighbour, or launching the layer as a CUDA graph, would remove most of its time.")
    if decider == "latency":
        return head + (f"one warp's own dependency chain, once per round of resident blocks. "
                       f"{occ['resident_warps']} warps per SM ({occ['achieved']:.0%} occupancy, limited by "
                       f"{occ['limiter']}) cannot hide the {c.simt['global_latency']:g}-cycle {c.simt['global_level']} "
                       f"latency of each load. More "
                       f"warps per SM (more blocks: smaller tiles, split-K, fewer registers) or more independent "
                       f"loads per warp (unrolling its loop) would move it.")
    if decider == "pipe lsu":
        return head + (f"the load/store pipe takes one warp instruction per cycle per SM, and the loop issues "
                       f"{count.get('lsu', 0)} memory instructions for {fmas} FMAs. Vector loads "
                       f"(ld.shared.v4.f32: one instruction for four words) or a bigger register tile per thread "
                       f"would issue fewer per FMA.")
    if decider == "pipe fp32":
        return head + (f"the kernel runs at the SM's FMA rate ({gpu.fp32_lanes():g} lanes per cycle); only fewer "
                       f"operations or tensor cores (TF32, FP16) would move it.")
    if decider == "shared":
        factor = c.simt["bank_conflict_factor"]
        return head + (f"{factor:.2f} wavefronts per shared request"
                       + ("; padding the arrays so a warp's words fall in different banks would remove the "
                          "conflicts." if factor > 1.01 else "; the accesses are conflict-free, so fewer shared "
                          "loads (vector loads, bigger register tiles) would move it."))
    if decider in ("l2", "dram"):
        return head + (f"{c.simt['sectors_per_request']:.1f} sectors per global request (4 is ideal for a warp of "
                       f"4-byte accesses): better coalescing, or reuse through shared memory, would move it.")
    return head + "fewer instructions per element (address arithmetic, loop control) would move it."


def explain_simt(lowered, target: Target, gpu: Gpu, op: str) -> SimtExplanation:
    steps = [s for s in lowered.steps if s.kernel is not None
             and op in (s.node.name, s.node.op, s.node.op.split(".")[1])]
    if not steps:
        raise UserError(f"no kernel matches --op {op}: give a node name (e.g. linear_3) or an op (e.g. gelu)")
    step = steps[0]
    prog = select_simt(step.kernel, target, gpu)
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
    writer = _Writer(prog)
    listing = []
    for ins in body:
        t = gpu.timing(ins.mnemonic)
        latency, source = t.latency, t.source
        if ins.prim in (Prim.LOAD, Prim.STORE):  # the level the model found the kernel's data in
            latency = c.simt["global_latency"]
            fits = "fit" if c.simt["global_level"] == "L2" else "do not fit"
            source = f"{c.simt['global_level']} latency: the kernel's buffers {fits} in L2. {source}"
        listing.append(SimtLine(_ptx(writer, ins), ins.mnemonic, t.pipe, t.per_clock_per_sm, latency, source,
                                per_request.get(id(ins))))
    limits = occupancy_limits(prog, c.simt["registers"], gpu)
    occ = {"limits": limits, "resident_blocks": c.simt["blocks_per_sm"], "resource": c.simt["resource_limiter"],
           "blocks_on_busiest_sm": c.simt["blocks_on_busiest_sm"], "limiter": c.simt["limiter"],
           "achieved": c.simt["occupancy"], "resident_warps": round(c.simt["occupancy"] * gpu.max_warps_per_sm)}
    return SimtExplanation(step.node.name, step.node.op, target.name, gpu.name, prog.launch.strategy, prog.launch.grid, prog.launch.block,
                           c.simt["registers"], prog.launch.shared_bytes, occ, trips or 1, listing, elsewhere,
                           dict(c.bounds), c.bound,
                           c.cycles, _advice(c, gpu, listing, occ))


def render_simt(e: SimtExplanation, console: Console) -> None:
    console.print(f"[bold]{e.kernel}[/] ({e.op}) on {e.target} / {e.uarch}: {e.strategy}; grid {e.grid} x block "
                  f"{e.block}, ~{e.registers} registers per thread (isasim's estimate; `isasim emit` shows "
                  f"ptxas's), {e.shared_bytes:,} bytes of shared memory per block")
    o = e.occupancy
    grid = (f"; but the grid gives the busiest SM only {o['blocks_on_busiest_sm']}"
            if o["limiter"] == "grid" else "")
    console.print("occupancy: blocks per SM allowed by " + ", ".join(f"{k} {v}" for k, v in o["limits"].items())
                  + f" -> {o['resident_blocks']} can reside (limited by {o['resource']}){grid}: {o['resident_warps']} "
                  f"warps, {o['achieved']:.0%} of the SM's warp slots")
    where = "its hottest loop runs" if e.trips > 1 else "its instruction stream runs"
    console.print(f"{where} {e.trips:,} times per warp; one pass:")
    table = Table(title_justify="left")
    for col in ("#", "PTX", "pipe", "per clk/SM", "latency", "per request", "source"):
        table.add_column(col, overflow="fold")
    shown: dict[str, int] = {}
    for i, ln in enumerate(e.listing):
        req = "-" if ln.per_request is None else \
            f"{ln.per_request:.2f} {'wavefronts' if 'shared' in ln.mnemonic else 'sectors'}"
        source = ln.source if ln.mnemonic not in shown else f"as #{shown[ln.mnemonic]}"
        shown.setdefault(ln.mnemonic, i)
        table.add_row(str(i), escape(ln.instruction), ln.pipe, f"{ln.per_clock_per_sm:g}", f"{ln.latency:g}", req,
                      escape(source))
    console.print(table)
    if e.elsewhere:
        console.print("the rest of each warp's stream: " + ", ".join(
            f"{n:,} {m}" for m, n in sorted(e.elsewhere.items(), key=lambda kv: -kv[1])))
    console.print("bounds (cycles): " + ", ".join(f"{k} {v:,.0f}" for k, v in
                                                  sorted(e.bounds.items(), key=lambda kv: -kv[1]))
                  + f" -> [bold]{e.cycles:,.0f} cycles, {e.decides}[/] (the launch overhead is added to the largest)")
    console.print(e.advice)
