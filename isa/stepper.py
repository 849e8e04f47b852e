"""The stepped interpreter: one instruction at a time on registers, flags and memory.

The program is laid out as a flat instruction list; each loop's back-edge branch jumps to the loop's first
instruction while its counter is not zero, as on the machine. Slow (one Python step per dynamic instruction)
and meant for small shapes, teaching and as the reference the batched executor must match bit for bit.
"""

from __future__ import annotations

import numpy as np

from isasim.isa.machine_state import Events, Memory, run_instr
from isasim.isa.program import Instr, Item, Program
from isasim.isa.semantics import Prim


def layout(items: tuple[Item, ...], code: list[tuple[Instr, int | None]]) -> None:
    """Append items to `code` as (instruction, branch target or None)."""
    for it in items:
        if isinstance(it, Instr):
            code.append((it, None))
            continue
        head = len(code)
        layout(it.body, code)
        for ins in it.latch:
            code.append((ins, head if ins.prim is Prim.BRANCH_NZ else None))


def step_program(program: Program, mem: Memory, max_steps: int = 50_000_000) -> Events:
    code: list[tuple[Instr, int | None]] = []
    layout(program.body, code)
    regs: dict = {}
    events = Events()
    pc, steps = 0, 0
    while pc < len(code):
        ins, target = code[pc]
        run_instr(ins, regs, mem, 1, events)
        steps += 1
        if steps > max_steps:
            raise RuntimeError(f"{program.name}: more than {max_steps} steps; use the batched executor")
        if target is not None and regs[ins.srcs[0]] != np.int64(0):
            pc = target
        else:
            pc += 1
    return events
