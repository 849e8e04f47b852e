"""A cycle-by-cycle timeline of a loop body repeated K times, for teaching (llvm-mca's timeline view).

A small out-of-order core: each cycle up to `issue_width` micro-ops dispatch in program order, while the
reorder buffer has room for them (`reorder_buffer` micro-ops between dispatch and retirement) and the
scheduler too (`scheduler` micro-ops dispatched but not yet started); an instruction starts executing once its
source registers are ready and one of its ports is free (a port stays busy for the instruction's reciprocal
throughput times the number of ports it may use, so a divider blocks its port; an instruction ready earlier
may take a port's free cycle before one reserved for a later instruction); it finishes `latency` cycles
later; instructions retire in order, `issue_width` per cycle. Like llvm-mca, it models no front end, no branch
misprediction, and every load hits L1.
"""

from __future__ import annotations

import heapq
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


def fused_latch(block: list[Instr], i: int, uarch: Uarch) -> bool:
    """Whether block[i] is a latch's `sub` that issues and executes as one uop with the branch after it."""
    return (uarch.fuses_sub_branch and block[i].prim is Prim.DEC_FLAGS and i + 1 < len(block)
            and block[i + 1].prim is Prim.BRANCH_NZ)


def reads(ins: Instr) -> list[Reg]:
    """The registers an instruction reads, a memory operand's base included."""
    regs = [s.base if isinstance(s, Mem) else s for s in ins.srcs]
    if isinstance(ins.dst, Mem):
        regs.append(ins.dst.base)
    return [r for r in regs if isinstance(r, Reg)]


def simulate(body: list[Instr], uarch: Uarch, iterations: int) -> list[Event]:
    ready: dict[Reg, int] = {}  # cycle a register's newest value is available
    busy: dict[str, set[int]] = {p: set() for p in uarch.ports}  # the cycles each port is taken
    events: list[Event] = []
    dispatch_cycle = dispatched_now = retire_cycle = retired_now = 0
    in_flight: list[int] = []  # the retire cycle of every micro-op dispatched so far, in order
    waiting: list[int] = []  # a heap of the start cycles of micro-ops in the scheduler
    for it in range(iterations):
        for k, ins in enumerate(body):
            t = uarch.timing(ins.mnemonic)
            fused = fused_latch(body, k, uarch)  # a latch's sub fused with its jnz: no slot or port of its own
            uops = 0 if fused else t.uops
            if dispatched_now + uops > uarch.issue_width:
                dispatch_cycle, dispatched_now = dispatch_cycle + 1, 0
            at = dispatch_cycle
            if uops and len(in_flight) + uops > uarch.reorder_buffer:  # wait until the oldest ones retire
                at = max(at, in_flight[len(in_flight) + uops - uarch.reorder_buffer - 1] + 1)
            if uops and t.ports:  # wait until the scheduler has room
                while waiting and waiting[0] <= at:
                    heapq.heappop(waiting)
                while len(waiting) + uops > uarch.scheduler:
                    at = max(at, heapq.heappop(waiting))
                    while waiting and waiting[0] <= at:
                        heapq.heappop(waiting)
            if at != dispatch_cycle:
                dispatch_cycle, dispatched_now = at, 0
            dispatched_now += uops
            start = max([dispatch_cycle + 1] + [ready.get(r, 0) for r in reads(ins)])  # issue takes a cycle
            port = "-"
            if t.ports and not fused:
                hold = max(1, round(t.rthroughput * len(t.ports)))
                start, port = min((_free_from(busy[p], start, hold), p) for p in t.ports)
                busy[port].update(range(start, start + hold))
            finish = start + int(round(t.latency))
            if isinstance(ins.dst, Reg):
                ready[ins.dst] = finish
            retire = max(finish, retire_cycle)
            if retire == retire_cycle and retired_now >= uarch.issue_width:
                retire += 1
            if retire != retire_cycle:
                retire_cycle, retired_now = retire, 0
            retired_now += 1
            in_flight += [retire] * uops
            if uops and t.ports:
                for _ in range(uops):
                    heapq.heappush(waiting, start)
            events.append(Event(it, k, dispatch_cycle, start, finish, retire, port))
    return events


def _free_from(busy: set[int], cycle: int, hold: int) -> int:
    """The first cycle from `cycle` on at which a port is free for `hold` cycles in a row: an instruction
    ready early takes a free slot before one reserved later for an instruction ready later (the scheduler
    picks the oldest ready micro-op each cycle, not the next in program order)."""
    while any(c in busy for c in range(cycle, cycle + hold)):
        cycle += 1
    return cycle


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
