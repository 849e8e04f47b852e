"""CPU cores: the scalar and the SIMD backend.

Both lower a kernel to a register program, cost it per straight-line block on a core's ports, issue width
and latency chains plus the cache model (isa/cost.py), execute it in the batched executor (isa/execute.py)
and the stepped interpreter (isa/stepper.py), emit it for GNU as (isa/emit.py), and run that machine code
on the host or under qemu (isa/native.py). They differ only in instruction selection: the SIMD backend
vectorises (lowering/select.py).
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import numpy as np

from isasim.backends.base import Backend, Storages, arguments
from isasim.backends.cpu_explain import Explanation, explain_cpu
from isasim.isa import native
from isasim.isa.cost import KernelCost, cost_program
from isasim.isa.emit import emit, hottest_loop, symbol
from isasim.isa.execute import execute
from isasim.isa.machine import Uarch, load_uarch, uarch_names
from isasim.isa.machine_state import Events, Memory
from isasim.isa.program import Instr, Program, walk
from isasim.isa.stepper import step_program
from isasim.isa.targets import Target
from isasim.lowering.kernel import Kernel
from isasim.lowering.select import select_scalar, select_vector
from isasim.models.graph import Node


class CpuBackend(Backend):
    file_suffix = ".s"

    def machine_names(self, target: Target, precision: str = "fp32") -> tuple[str, ...]:
        """The cores of the target's ISA that have the extensions it needs in `precision` (no AVX-512 target on
        Zen 3; int8 AVX-512 only with VNNI; none for amx in float32, which it does not run)."""
        if precision == "fp32" and not target.fp32:
            return ()
        need = target.features(precision)
        return tuple(n for n in uarch_names(target.isa) if not load_uarch(n).lacks(need))

    def all_machine_names(self) -> tuple[str, ...]:
        return uarch_names()

    def load_machine(self, name: str) -> Uarch:
        return load_uarch(name)

    def cost(self, program: Program, machine: Uarch) -> KernelCost:
        return cost_program(program, machine)

    def counts(self, program: Program, machine: Uarch) -> dict[str, int]:
        counts: Counter = Counter()
        for ins, n, _ in walk(program.body):
            counts[ins.mnemonic] += n
        return dict(counts)

    def execute(self, program: Program, mem: Memory, machine: Uarch) -> Events:
        return execute(program, mem)

    def step(self, program: Program, mem: Memory, machine: Uarch) -> Events:
        return step_program(program, mem)

    def emit(self, program: Program, target: Target, machine: Uarch) -> str:
        return emit(program, target)

    def manifest_entry(self, program: Program, cost: KernelCost, path: Path, machine: Uarch) -> dict:
        inner = cost.inner_loop
        hot = hottest_loop(program.body)[1]
        keys = sorted({i.mnemonic for i in hot.body + hot.latch if isinstance(i, Instr)}) if hot else []
        return {
            "symbol": symbol(program.name),
            "arguments": arguments(program),
            "instructions": cost.instructions,
            "cycles": cost.cycles,
            "inner_loop": None if inner is None else {
                "predicted_cycles_per_iteration": inner.cycles, "bound": inner.bound.label,
                "ports": inner.ports, "issue": inner.issue, "latency": inner.latency, "window": inner.window,
                "chains_in_flight": inner.chains, "alone_cycles_per_iteration": inner.alone,
                "timing_keys": keys},
        }

    def manifest_header(self, target: Target, machine: Uarch) -> dict:
        return {"abi": target.registers.abi,
                "calling": "void symbol(void *arg0, ...): the buffers' base addresses, in 'arguments' order"}

    def explain(self, program: Program, node: Node, target: Target, machine: Uarch, iterations: int
                ) -> Explanation:
        return explain_cpu(program, node, target, machine, iterations)

    def can_run_native(self, target: Target, precision: str = "fp32", machine: Uarch | None = None) -> str | None:
        need = target.features(precision, machine.features if machine is not None else ())
        if native.host_isa() == target.isa and not native.host_supports(target.isa, need):
            missing = [f for f in need if not native.host_supports(target.isa, (f,))]
            return f"this CPU lacks {', '.join(missing)}, which {target.name} code needs"
        if not native.can_run(target.isa, need):
            return f"this machine runs neither {target.isa} code nor qemu for it (run 'bash .ci/install-tools')"
        return None

    def run_native(self, program: Program, target: Target, storages: Storages, into: bool = False) -> None:
        """Assemble the program, run the machine code (natively, or under qemu for AArch64), and write its
        outputs back into `storages`; `into`: the outputs start as `storages` holds them (where one core's chunk
        writes its share of a kernel's outputs), else as zeros."""
        buffers = [(np.array(storages[b.name], b.dtype.numpy) if into and b.name in storages else
                    np.zeros(b.size, b.dtype.numpy)) if b.is_output else
                   np.ascontiguousarray(storages[b.name].astype(b.dtype.numpy)) for b in program.buffers]
        native.run(target.isa, emit(program, target), symbol(program.name), buffers)
        for b, arr in zip(program.buffers, buffers):
            if b.is_output:
                storages[b.name] = arr


class ScalarBackend(CpuBackend):
    kind = "scalar CPU"

    def accepts(self, target: Target) -> bool:
        return target.simt is None and target.vector is None

    def select(self, kernel: Kernel, target: Target, machine: Uarch | None = None) -> Program:
        return select_scalar(kernel, target)


class SimdBackend(CpuBackend):
    kind = "SIMD CPU"

    def accepts(self, target: Target) -> bool:
        return target.simt is None and target.vector is not None

    def select(self, kernel: Kernel, target: Target, machine: Uarch | None = None) -> Program:
        if machine is None:
            return select_vector(kernel, target)
        sizes = machine.sizes()
        caches = (sizes["l1"], sizes["l2"]) if "l1" in sizes and "l2" in sizes else None  # (else the ISA's smallest)
        return select_vector(kernel, target, machine.features, caches)
