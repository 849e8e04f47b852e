"""The stepped SIMT interpreter: one warp at a time, following a program counter, warps meeting at barriers.

The program is laid out as a list with jumps (isa/program.py `layout`, as the CPU stepper's): a loop's latch
ends in its predicated `bra` back to the loop's first instruction, decided by the counter register as in real
code. Each block's warps then run in
turn: a warp runs until it reaches bar.sync (or the end, or all its threads have exited), and when every
warp of the block is waiting, all go on. So warps really interleave through shared memory, and only the
barriers keep it consistent: a barrier missing from the lowering would show up here as a different result,
where the batched executor (isa/simt_exec.py, all threads in one lockstep pass) could not see it.

Each instruction runs through the batched executor's own `instr` on one warp's slice of threads, so both executors
share one definition of every instruction; tests hold their results and counts equal, bit for bit.
"""

from __future__ import annotations

import numpy as np

from isasim.isa.machine_state import Memory
from isasim.isa.program import Program, layout
from isasim.isa.semantics import Prim
from isasim.isa.simt_exec import SimtEvents, SimtExecutor, new_shared
from isasim.isa.gpu import Gpu


class _Warp:
    def __init__(self, prog: Program, mem: Memory, gpu: Gpu, first: int, shared: np.ndarray):
        self.ex = SimtExecutor(prog, mem, gpu, gid=np.arange(first, first + gpu.warp_size, dtype=np.int64),
                               shared=shared)
        self.regs: dict = {}
        self.pc = 0

    def run_to_barrier(self, code: list) -> bool:
        """Step until a barrier (True: waiting there) or the end of the kernel (False)."""
        while self.pc < len(code) and self.ex.alive.any():
            ins, target = code[self.pc]
            self.pc += 1
            self.ex.instr(ins, self.regs)
            if target is not None:  # a loop's back edge: taken while the latch's predicate holds
                taken = np.broadcast_to(self.regs[ins.srcs[0]], self.ex.gid.shape)[self.ex.alive]
                if taken.any() != taken.all():
                    raise RuntimeError(f"{self.ex.prog.name}: a loop branch diverged inside a warp")
                if taken.all():
                    self.pc = target
                continue
            if ins.prim is Prim.BARRIER:
                return True
        return False


def step_simt(prog: Program, mem: Memory, gpu: Gpu) -> SimtEvents:
    code = layout(prog.body)
    shared = new_shared(prog, gpu)
    events = SimtEvents()
    for block in range(prog.launch.grid):
        warps = [_Warp(prog, mem, gpu, block * prog.launch.block + w * gpu.warp_size, shared)
                 for w in range(prog.launch.block // gpu.warp_size)]
        running = list(warps)
        while running:  # every warp to the next barrier (or its end), then release them together
            running = [w for w in running if w.run_to_barrier(code)]
        for w in warps:
            events.add(w.ex.events)
    return events
