"""The batched executor: runs a Program's instructions on numpy arrays, one lane per loop iteration.

Iterations of a parallel loop are independent, so they run side by side: entering such a loop adds a
trailing array axis, and every register then holds one value per iteration (numpy broadcasting keeps a value
that does not vary along an axis at size 1 there). The loop's counter and pointer registers take, in
iteration t, the values its latch would have given them after t trips: start + t * (net advance per trip).
Sequential loops (reductions) step through their trips in order, running every instruction of the body and
latch on all lanes, so each element sees the same operations in the same order as in the stepped
interpreter — the results are the same bits (tests/test_executors.py checks this).
"""

from __future__ import annotations

import numpy as np

from isasim.isa.machine_state import Events, Memory, run_instr
from isasim.isa.program import Imm, Instr, Item, Loop, Program, Reg
from isasim.isa.semantics import Prim


def advance(loop: Loop, reg: Reg, regs: dict) -> int:
    """How far one trip of `loop` moves `reg` (its latch adds plus every inner loop's full run). A step too
    wide for an immediate sits in a register set before the loop (the same value on every lane)."""
    total = 0
    for ins in loop.latch:
        if ins.prim is Prim.IADD and ins.dst == reg:
            step = ins.srcs[1]
            total += int(step.value) if isinstance(step, Imm) else int(np.unique(regs[step]).item())
    for it in loop.body:
        if isinstance(it, Loop):
            total += it.trip * advance(it, reg, regs)
    return total


def _pointers(loop: Loop) -> set[Reg]:
    regs = {ins.dst for ins in loop.latch if ins.prim is Prim.IADD}
    for it in loop.body:
        if isinstance(it, Loop):
            regs |= _pointers(it)
    return regs


def _deeper(reg: Reg, value, depth: int) -> np.ndarray:
    """A register's value with one more batch axis for the loop being entered (batch axes outermost first,
    a vector's lane axis kept last); axes a value does not vary along have size 1."""
    v = np.asarray(value)
    lane = 1 if reg.lanes > 1 else 0
    batch = v.ndim - lane
    if batch == depth:
        v = np.expand_dims(v, batch)
        batch += 1
    if batch < depth + 1:
        v = v.reshape(v.shape[:batch] + (1,) * (depth + 1 - batch) + v.shape[batch:])
    return v


class BatchedExecutor:
    def __init__(self, mem: Memory):
        self.mem = mem
        self.events = Events()

    def run(self, program: Program) -> Events:
        self.items(program.body, {}, 1, 0)
        return self.events

    def items(self, items: tuple[Item, ...], regs: dict, lanes: int, depth: int) -> None:
        for it in items:
            if isinstance(it, Instr):
                run_instr(it, regs, self.mem, lanes, self.events)
            elif it.parallel:
                self.parallel(it, regs, lanes, depth)
            else:
                self.sequential(it, regs, lanes, depth)

    def parallel(self, loop: Loop, regs: dict, lanes: int, depth: int) -> None:
        t = np.arange(loop.trip, dtype=np.int64).reshape((1,) * depth + (loop.trip,))
        inner = {r: _deeper(r, v, depth) for r, v in regs.items()}
        moved = {p: advance(loop, p, regs) for p in _pointers(loop)}
        for p, adv in moved.items():
            if adv:
                inner[p] = inner[p] + t * np.int64(adv)
        inner[loop.counter] = inner[loop.counter] - t
        self.items(loop.body, inner, lanes * loop.trip, depth + 1)
        for ins in loop.latch:  # the latch of every trip, on every lane; its effect is the closed form above
            self.events.instructions[ins.mnemonic] += lanes * loop.trip
        for p, adv in moved.items():
            regs[p] = regs[p] + np.int64(adv * loop.trip)
        regs[loop.counter] = np.int64(0)

    def sequential(self, loop: Loop, regs: dict, lanes: int, depth: int) -> None:
        for trip in range(loop.trip):
            self.items(loop.body, regs, lanes, depth)
            for ins in loop.latch:
                run_instr(ins, regs, self.mem, lanes, self.events)
            if trip + 1 < loop.trip and not np.all(regs[loop.counter] != 0):
                raise RuntimeError(f"loop counter {loop.counter} reached zero early")


def execute(program: Program, mem: Memory) -> Events:
    return BatchedExecutor(mem).run(program)
