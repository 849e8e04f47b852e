"""One entry point per question, whatever kind of machine a target is: CPU targets (scalar and SIMD) lower to
a Program costed by isa/cost.py; the GPU SIMT target lowers to a Program costed by isa/simt_cost.py.
The kind is a capability of the target (`Target.isa == "ptx"`), asked here once so callers need not."""

from __future__ import annotations

from collections import Counter

from isasim.isa.cost import KernelCost, cost_program
from isasim.isa.program import walk
from isasim.isa.targets import Target
from isasim.lowering.kernel import Kernel


def is_simt(target: Target) -> bool:
    return target.isa == "ptx"


def machine_names(target: Target) -> tuple[str, ...]:
    """The cores (CPU) or parts (GPU) a target's timing can come from."""
    if is_simt(target):
        from isasim.isa.gpu import gpu_names
        return gpu_names()
    from isasim.isa.machine import uarch_names
    return uarch_names(target.isa)


def load_machine(name: str):
    """A CPU core (isa/uarch) or a GPU (isa/gpu) by name."""
    from isasim.isa.gpu import gpu_names, load_gpu
    from isasim.isa.machine import load_uarch, uarch_names
    from isasim.isa.errors import UserError

    if name in gpu_names():
        return load_gpu(name)
    if name in uarch_names():
        return load_uarch(name)
    raise UserError(f"unknown microarchitecture {name!r}: choose one of "
                    f"{', '.join(uarch_names() + gpu_names())}")


def lower(kernel: Kernel, target: Target, machine=None):
    """The kernel for `target`; on SIMT the GPU `machine` may shape it (tile sizes)."""
    if is_simt(target):
        from isasim.lowering.isel_simt import select_simt
        return select_simt(kernel, target, machine)
    from isasim.lowering.isel import select
    return select(kernel, target)


def cost_kernel(kernel: Kernel, target: Target, machine) -> KernelCost:
    program = lower(kernel, target, machine)
    if is_simt(target):
        from isasim.isa.simt_cost import cost_simt
        return cost_simt(program, machine)
    return cost_program(program, machine)


def expected_counts(kernel: Kernel, target: Target, machine=None) -> dict[str, int]:
    """What the executor must count for this kernel: instructions per mnemonic (warp instructions on SIMT)."""
    program = lower(kernel, target, machine)
    if is_simt(target):
        from isasim.isa.simt_cost import warp_counts
        return dict(warp_counts(program))
    counts: Counter = Counter()
    for ins, n, _ in walk(program.body):
        counts[ins.mnemonic] += n
    return dict(counts)
