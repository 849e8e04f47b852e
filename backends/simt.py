"""GPUs: the SIMT backend.

A kernel becomes one thread's PTX instruction stream plus its launch geometry (lowering/select.py); the cost
model counts warp instructions, sectors, bank conflicts and occupancy in closed form (isa/simt_cost.py);
the grid executor runs every thread in lockstep (isa/simt_exec.py) and the stepped interpreter one warp at a
time, meeting at barriers (isa/simt_stepper.py); the PTX is checked by ptxas when it is installed
(isa/emit_ptx.py, isa/ptxas.py). No NVIDIA GPU runs it here: `can_run_native` says so.
"""

from __future__ import annotations

from pathlib import Path

from isasim.backends.base import Backend, arguments
from isasim.backends.simt_explain import SimtExplanation, explain_simt
from isasim.isa import ptxas
from isasim.isa.cost import KernelCost
from isasim.isa.datafile import MachineFileError
from isasim.isa.emit_ptx import emit_ptx, symbol
from isasim.isa.gpu import Gpu, gpu_names, load_gpu
from isasim.isa.machine_state import Events, Memory
from isasim.isa.program import Program
from isasim.isa.simt_cost import cost_simt, warp_counts
from isasim.isa.simt_exec import run_simt
from isasim.isa.simt_stepper import step_simt
from isasim.isa.targets import Target
from isasim.lowering.kernel import Kernel
from isasim.lowering.select import select_simt
from isasim.models.graph import Node


class SimtBackend(Backend):
    kind = "SIMT GPU"
    file_suffix = ".ptx"

    def accepts(self, target: Target) -> bool:
        return target.simt is not None

    def machine_names(self, target: Target, precision: str = "fp32") -> tuple[str, ...]:
        target.features(precision)  # (refuses a precision the SIMT lowering does not have)
        return gpu_names()

    def all_machine_names(self) -> tuple[str, ...]:
        return gpu_names()

    def load_machine(self, name: str) -> Gpu:
        return load_gpu(name)

    def select(self, kernel: Kernel, target: Target, machine: Gpu | None = None) -> Program:
        if machine is not None and machine.warp_size != target.simt.warp_size:  # two descriptions disagree
            raise MachineFileError(f"{machine.name}: warp_size {machine.warp_size}, but {target.name} lowers for "
                                   f"warps of {target.simt.warp_size}")
        return select_simt(kernel, target, machine)

    def cost(self, program: Program, machine: Gpu) -> KernelCost:
        return cost_simt(program, machine)

    def counts(self, program: Program, machine: Gpu) -> dict[str, int]:
        return dict(warp_counts(program, machine))

    def execute(self, program: Program, mem: Memory, machine: Gpu) -> Events:
        return run_simt(program, mem, machine)

    def step(self, program: Program, mem: Memory, machine: Gpu) -> Events:
        return step_simt(program, mem, machine)

    def emit(self, program: Program, target: Target, machine: Gpu) -> str:
        return emit_ptx(program, machine)

    def manifest_entry(self, program: Program, cost: KernelCost, path: Path, machine: Gpu) -> dict:
        launch = program.launch
        return {
            "entry": symbol(program.name), "arguments": arguments(program),
            "grid": launch.grid, "block": launch.block, "strategy": launch.strategy,
            "warp_instructions": cost.instructions, "cycles": cost.cycles, "bound": cost.bound.label,
            "registers_estimate": cost.simt["registers"], "ptxas": ptxas.report(path, machine.ptx_target),
        }

    def manifest_header(self, target: Target, machine: Gpu) -> dict:
        return {"ptx_target": machine.ptx_target,
                "calling": "a .entry per kernel taking .param .u64 pointers to its buffers, in 'arguments' order; "
                           "launch with 'grid' blocks of 'block' threads (1-D)"}

    def explain(self, program: Program, node: Node, target: Target, machine: Gpu, iterations: int
                ) -> SimtExplanation:
        return explain_simt(program, node, target, machine)

    def can_run_native(self, target: Target, precision: str = "fp32", machine: Gpu | None = None) -> str | None:
        return f"{target.name} code needs an NVIDIA GPU (its PTX is checked by ptxas in `isasim emit`)"
