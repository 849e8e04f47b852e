"""The stepped interpreter: one instruction at a time on registers, flags and memory.

The program is laid out as a flat instruction list (isa/program.py `layout`); each loop's back-edge
branch jumps to the loop's first instruction while its counter is not zero, as on the machine. Slow (one
Python step per dynamic instruction) and meant for small shapes, teaching and as the reference the batched
executor must match bit for bit.
"""

from __future__ import annotations

import numpy as np

from isasim.isa.machine_state import Events, Memory, run_instr
from isasim.isa.program import Program, layout


def step_program(program: Program, mem: Memory, max_steps: int = 50_000_000) -> Events:
    code = layout(program.body)
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
