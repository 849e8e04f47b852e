"""`isasim explain`: one kernel's hottest loop, instruction by instruction, and why it costs what it costs."""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import asdict, dataclass, field

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from isasim.isa.cost import BlockCost, block_cost, carried_latency
from isasim.isa.emit import emitter_for, hottest_loop
from isasim.isa.semantics import Prim
from isasim.isa.machine import Uarch
from isasim.isa.targets import Target
from isasim.isa.timeline import cycles, render, simulate
from isasim.lowering.isel import select
from isasim.lowering.pipeline import LoweredGraph
from isasim.isa.errors import UserError


@dataclass
class Line:
    instruction: str
    mnemonic: str
    latency: float
    rthroughput: float
    ports: list[str]
    source: str


@dataclass
class Explanation:
    kernel: str
    op: str
    target: str
    uarch: str
    trips: int  # how many times the loop body runs in the whole kernel
    listing: list[Line]
    pressure: dict[str, float]  # cycles per iteration on each port, work split evenly (llvm-mca's view)
    bound: dict  # the analytic bounds per iteration and the one that decides
    advice: str
    timeline: list[str]
    simulated_cycles_per_iteration: float
    iterations: int
    chrome_events: list[dict] = field(default_factory=list)  # the timeline as Chrome trace slices

    def to_json(self) -> dict:
        out = asdict(self)
        out.pop("chrome_events")
        return out


def _advice(bc: BlockCost, chain: float, sequential: bool, lanes: int) -> str:
    """What decides, by how much, and what would move it (`lanes`: the target's vector width)."""
    others = {"ports": bc.ports, "issue": bc.issue}
    wider = "vector lanes doing several elements per instruction" if lanes == 1 else \
        f"wider vectors than these {lanes} lanes"
    if bc.bound == "latency":
        runner = max(others, key=others.get)
        accs = max(2, math.ceil(bc.latency / max(bc.ports, bc.issue, 1e-9)))
        return (f"a {chain:g}-cycle dependency chain through the loop-carried register bounds this loop at "
                f"{bc.latency:g} cycles per iteration; {runner} alone would allow {others[runner]:g}. With about "
                f"{accs} independent accumulators (or vector lanes) the chain would stop deciding and {runner} "
                f"would.")
    if bc.bound.startswith("port"):
        return (f"the ports {bc.busiest_port} decide at {bc.ports:g} cycles per iteration (issue alone: "
                f"{bc.issue:g}{', carried chain: %g' % bc.latency if sequential else ''}); fewer instructions on "
                f"those ports, or {wider}, would move it.")
    return (f"the issue width decides at {bc.issue:g} cycles per iteration (ports alone: {bc.ports:g}): the "
            f"loop simply has many instructions per element; {wider} would divide them.")


def assembly(program, target: Target, body: list) -> list[str]:
    """Each instruction as the emitter writes it (registers named, real syntax)."""
    emitter = emitter_for(program, target)
    emitter.sym = "loop"
    return [emitter.branch(".Lloop") if ins.prim is Prim.BRANCH_NZ else emitter.instr(ins) for ins in body]


def explain(lowered: LoweredGraph, target: Target, uarch: Uarch, op: str, iterations: int) -> Explanation:
    steps = [s for s in lowered.steps if s.kernel is not None
             and op in (s.node.name, s.node.op, s.node.op.split(".")[1])]
    if not steps:
        raise UserError(f"no kernel matches --op {op}: give a node name (e.g. linear_3) or an op (e.g. gelu)")
    step = steps[0]
    program = select(step.kernel, target)
    trips, loop = hottest_loop(program.body)
    if loop is None:
        raise UserError(f"kernel {step.node.name} has no loop to explain")
    body = list(loop.body) + list(loop.latch)
    asm = assembly(program, target, body)
    listing = []
    pressure: Counter = Counter()
    for ins in body:
        t = uarch.timing(ins.mnemonic)
        listing.append(Line(asm[len(listing)], ins.mnemonic, t.latency, t.rthroughput, list(t.ports), t.source))
        for p in t.ports:
            pressure[p] += t.rthroughput
    bc = block_cost(body, uarch, not loop.parallel)
    chain = carried_latency(body, uarch) if not loop.parallel else 0.0
    events = simulate(body, uarch, iterations)
    return Explanation(
        step.node.name, step.node.op, target.name, uarch.name, trips, listing,
        {p: round(pressure.get(p, 0.0), 3) for p in uarch.ports},
        {"ports": bc.ports, "busiest_ports": bc.busiest_port, "issue": bc.issue, "latency": bc.latency,
         "cycles_per_iteration": bc.cycles, "decides": bc.bound},
        _advice(bc, chain, not loop.parallel, target.vector_lanes), render(asm, events),
        cycles(events) / iterations, iterations, _slices(events, asm))


def _slices(events, asm: list[str]) -> list[dict]:
    """Each instruction's execution as a slice on its port's track (1 microsecond in the viewer = 1 cycle),
    with when it was dispatched and retired."""
    return [{"ph": "X", "tid": e.port, "ts": e.started, "dur": max(e.finished - e.started, 0.5),
             "name": asm[e.index], "cat": f"iteration {e.iteration}",
             "args": {"iteration": e.iteration, "dispatched": e.dispatched, "started": e.started,
                      "finished": e.finished, "retired": e.retired}} for e in events]


def chrome_trace(results: list[Explanation]) -> dict:
    """Explanations as a Chrome trace: one process per target and core, one thread per port."""
    events = []
    for pid, r in enumerate(results):
        events.append({"ph": "M", "name": "process_name", "pid": pid,
                       "args": {"name": f"{r.kernel} on {r.target} / {r.uarch} (1 us = 1 cycle)"}})
        events += [dict(e, pid=pid) for e in r.chrome_events]
    return {"traceEvents": events, "displayTimeUnit": "ns"}


def render_explanation(e: Explanation, console: Console) -> None:
    console.print(f"[bold]{e.kernel}[/] ({e.op}) on {e.target} / {e.uarch}: its hottest loop runs {e.trips:,} "
                  f"times; one iteration:")
    table = Table(title_justify="left")
    for col in ("#", "instruction", "latency", "rthroughput", "ports", "source"):
        table.add_column(col, overflow="fold")
    for i, ln in enumerate(e.listing):
        table.add_row(str(i), escape(ln.instruction), f"{ln.latency:g}", f"{ln.rthroughput:g}", " ".join(ln.ports) or "-",
                      escape(ln.source))
    console.print(table)
    console.print("port pressure per iteration (cycles): "
                  + ", ".join(f"{p} {v:g}" for p, v in e.pressure.items() if v))
    b = e.bound
    console.print(f"bounds per iteration: ports {b['ports']:g} ({b['busiest_ports']}), issue {b['issue']:g}, "
                  f"loop-carried latency {b['latency']:g} -> [bold]{b['cycles_per_iteration']:g} cycles, "
                  f"{b['decides']}[/]")
    console.print(e.advice)
    console.print(f"\ntimeline of {e.iterations} iterations (D dispatch, = wait for operands or a port, "
                  f"e execute, E done, - wait to retire, R retire): {e.simulated_cycles_per_iteration:.2f} "
                  f"cycles per iteration including the warm-up")
    for row in e.timeline:
        console.print(row, highlight=False, markup=False)
