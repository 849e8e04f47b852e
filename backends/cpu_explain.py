"""Explaining a CPU kernel: its hottest loop, instruction by instruction, and why it costs what it costs
(what llvm-mca's views show: each instruction's latency, throughput and ports with their sources, port
pressure, the bound that decides, and a cycle-by-cycle timeline from isa/timeline.py)."""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass, field

from isasim.isa.cost import BlockCost, KernelCost, block_cost, carried_latency, cost_program
from isasim.isa.emit import hottest_loop, instruction_lines
from isasim.isa.errors import UserError
from isasim.isa.machine import Uarch
from isasim.isa.program import Program
from isasim.isa.targets import Target
from isasim.isa.timeline import cycles, render, simulate
from isasim.models.graph import Node
from isasim.report import Report, plain


@dataclass
class Line:
    instruction: str
    mnemonic: str
    latency: float
    rthroughput: float
    ports: list[str]
    source: str


@dataclass
class Explanation(Report):
    """A CPU kernel's hottest loop taught (`isasim explain`)."""

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
    internal = ("chrome_events",)

    def records(self) -> list[dict]:
        return [{"kernel": self.kernel, "target": self.target, "uarch": self.uarch, "#": i, **plain(ln)}
                for i, ln in enumerate(self.listing)]


def _advice(bc: BlockCost, chain: float, sequential: bool, lanes: int) -> str:
    """What decides, by how much, and what would move it (`lanes`: the target's vector width)."""
    others = {"ports": bc.ports, "issue": bc.issue}
    wider = "vector lanes doing several elements per instruction" if lanes == 1 else \
        f"wider vectors than these {lanes} lanes"
    if bc.bound.kind == "latency":
        runner = max(others, key=others.get)
        accs = max(2, math.ceil(bc.latency / max(bc.ports, bc.issue, 1e-9)))
        return (f"a {chain:g}-cycle dependency chain through the loop-carried register bounds this loop at "
                f"{bc.latency:g} cycles per iteration; {runner} alone would allow {others[runner]:g}. With about "
                f"{accs} independent accumulators (or vector lanes) the chain would stop deciding and {runner} "
                f"would.")
    if bc.bound.kind == "window":
        return (f"the out-of-order window decides at {bc.window:g} cycles per iteration (ports alone: {bc.ports:g}, "
                f"issue: {bc.issue:g}): each iteration holds a long dependency chain, and iterations overlap only "
                f"as far as the reorder buffer and the scheduler hold their micro-ops. A shorter chain per element, "
                f"or fewer micro-ops waiting on it, would move it.")
    if bc.bound.kind == "port" and bc.busiest_port == "TMUL":
        return (f"the AMX tile unit decides at {bc.ports:g} cycles per iteration (issue alone: {bc.issue:g}): it "
                f"starts one tile multiply every 16 cycles, its peak, so the loop runs as fast as the tiles can.")
    if bc.bound.kind == "port":
        return (f"the ports {bc.busiest_port} decide at {bc.ports:g} cycles per iteration (issue alone: "
                f"{bc.issue:g}{', carried chain: %g' % bc.latency if sequential else ''}); fewer instructions on "
                f"those ports, or {wider}, would move it.")
    return (f"the issue width decides at {bc.issue:g} cycles per iteration (ports alone: {bc.ports:g}): the "
            f"loop simply has many instructions per element; {wider} would divide them.")


def _beside_it(kernel: KernelCost) -> str:
    """A sentence when the hottest loop's chain does not run alone in the kernel: the enclosing loop's
    iterations are independent, so their chains overlap with it in the reorder buffer (isa/cost.py
    `_overlap`), which the loop on its own, as listed and simulated here, cannot show."""
    inner = kernel.inner_loop
    if inner is None or inner.chains < 1.05 or inner.latency * inner.chains <= max(inner.ports, inner.issue,
                                                                                 inner.window):
        return ""
    return (f" In the kernel it does not run alone: the enclosing loop's iterations are independent, and about "
            f"{inner.chains:.1f} of their chains run at once (1 + the reorder buffer over one iteration's "
            f"micro-ops), so the kernel counts {inner.cycles:.3g} cycles per iteration (bound: "
            f"{inner.bound.label}).")


def _beyond_the_loop(kernel: KernelCost, trips: int, bc: BlockCost) -> str:
    """A sentence when the whole kernel takes clearly longer than its hottest loop's own bound: what decides
    it then (the memory traffic, as the cost model's per-kernel bounds say)."""
    loop = trips * bc.cycles
    if kernel.cycles <= 1.1 * loop:
        return ""
    why = ("the bytes it moves between the levels of memory, not its instructions, set its time"
           if kernel.bound.kind in ("l1", "l2", "llc", "dram") else "its other loops add the rest")
    return (f" The whole kernel takes {kernel.cycles:,.0f} cycles, decided by {kernel.bound.label}, where its "
            f"hottest loop alone would take {loop:,.0f} ({trips:,} x {bc.cycles:g}): {why}.")


def explain_cpu(program: Program, node: Node, target: Target, uarch: Uarch, iterations: int) -> Explanation:
    """`node`'s kernel, lowered to `program`: its hottest loop on `uarch`, simulated for `iterations`."""
    trips, loop = hottest_loop(program.body)
    if loop is None:
        raise UserError(f"kernel {node.name} has no loop to explain")
    body = list(loop.body) + list(loop.latch)
    asm = instruction_lines(program, target, body)
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
    kernel = cost_program(program, uarch)
    advice = (_advice(bc, chain, not loop.parallel, target.vector_lanes) + _beside_it(kernel)
              + _beyond_the_loop(kernel, trips, bc))
    return Explanation(
        node.name, node.op, target.name, uarch.name, trips, listing,
        {p: round(pressure.get(p, 0.0), 3) for p in uarch.ports},
        {"ports": bc.ports, "busiest_ports": bc.busiest_port, "issue": bc.issue, "latency": bc.latency,
         "window": bc.window, "cycles_per_iteration": bc.cycles, "decides": bc.bound.label},
        advice, render(asm, events),
        cycles(events) / iterations, iterations, _slices(events, asm))


def _slices(events, asm: list[str]) -> list[dict]:
    """Each instruction's execution as a slice on its port's track (1 microsecond in the viewer = 1 cycle),
    with when it was dispatched and retired."""
    return [{"ph": "X", "tid": e.port, "ts": e.started, "dur": max(e.finished - e.started, 0.5),
             "name": asm[e.index], "cat": f"iteration {e.iteration}",
             "args": {"iteration": e.iteration, "dispatched": e.dispatched, "started": e.started,
                      "finished": e.finished, "retired": e.retired}} for e in events]
