"""A cycle-by-cycle timeline of a loop body repeated K times, for teaching (llvm-mca's timeline view).

A small out-of-order core: each cycle up to `issue_width` micro-ops dispatch in program order; an instruction
starts executing once its source registers are ready and one of its ports is free (a port stays busy for the
instruction's reciprocal throughput times the number of ports it may use, so a divider blocks its port);
it finishes `latency` cycles later; instructions retire in order, `issue_width` per cycle. Like llvm-mca, it
models no front end, no branch misprediction, and every load hits L1.
"""

from __future__ import annotations

from dataclasses import dataclass

from isasim.isa.machine import Uarch
from isasim.isa.program import Instr, Mem, Reg
from isasim.isa.semantics import Prim


@dataclass(frozen=True)
class Event:
    iteration: int
    index: int  # position in the loop body
    dispatched: int
    started: int
    finished: int
    retired: int
    port: str


def _reads(ins: Instr) -> list[Reg]:
    regs = [s.base if isinstance(s, Mem) else s for s in ins.srcs]
    if isinstance(ins.dst, Mem):
        regs.append(ins.dst.base)
    return [r for r in regs if isinstance(r, Reg)]


def simulate(body: list[Instr], uarch: Uarch, iterations: int) -> list[Event]:
    ready: dict[Reg, int] = {}  # cycle a register's newest value is available
    port_free = {p: 0 for p in uarch.ports}  # first cycle each port can start a new micro-op
    events: list[Event] = []
    dispatch_cycle = dispatched_now = retire_cycle = retired_now = 0
    for it in range(iterations):
        for k, ins in enumerate(body):
            t = uarch.timing(ins.mnemonic)
            # a latch's sub fused with its jnz (as isa/cost.py counts it): no slot or port of its own
            fused = (uarch.fuses_sub_branch and ins.prim is Prim.DEC_FLAGS and k + 1 < len(body)
                     and body[k + 1].prim is Prim.BRANCH_NZ)
            uops = 0 if fused else t.uops
            if dispatched_now + uops > uarch.issue_width:
                dispatch_cycle, dispatched_now = dispatch_cycle + 1, 0
            dispatched_now += uops
            start = max([dispatch_cycle + 1] + [ready.get(r, 0) for r in _reads(ins)])  # issue takes a cycle
            port = "-"
            if t.ports and not fused:
                port = min(t.ports, key=lambda p: (max(port_free[p], start), p))
                start = max(start, port_free[port])
                port_free[port] = start + max(1, round(t.rthroughput * len(t.ports)))
            finish = start + int(round(t.latency))
            if isinstance(ins.dst, Reg):
                ready[ins.dst] = finish
            retire = max(finish, retire_cycle)
            if retire == retire_cycle and retired_now >= uarch.issue_width:
                retire += 1
            if retire != retire_cycle:
                retire_cycle, retired_now = retire, 0
            retired_now += 1
            events.append(Event(it, k, dispatch_cycle, start, finish, retire, port))
    return events


def cycles(events: list[Event]) -> int:
    return max(e.retired for e in events) + 1 if events else 0


def render(body: list[str], events: list[Event], width: int = 60) -> list[str]:
    """llvm-mca style rows: D dispatched, = waiting, e executing, E last cycle of execution, - waiting to
    retire, R retired. `body` holds each instruction's text."""
    rows = []
    for e in events:
        line = [" "] * (e.retired + 1)
        for c in range(e.dispatched, e.retired + 1):
            line[c] = "-"
        for c in range(e.dispatched, e.started):
            line[c] = "="
        for c in range(e.started, e.finished):
            line[c] = "e"
        line[e.dispatched] = "D"
        line[max(e.finished - 1, e.dispatched + 1)] = "E"
        line[e.retired] = "R"
        cells = "".join(line)[:width]
        rows.append(f"[{e.iteration},{e.index:>2}] {cells:<{width}} {body[e.index]}")
    return rows
