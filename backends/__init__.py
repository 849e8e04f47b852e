"""The backends, one per kind of machine, and the registry that picks a target's by its capabilities.

    backend_for(target)   the backend that lowers the target: SIMT if it runs threads in warps
                          (`Target.simt`), SIMD if it has vector registers (`Target.vector`), else scalar
    load_machine(name)    a CPU core or a GPU by name (isa/uarch/*.toml, isa/gpu/*.toml)
    machine_names(target) the machines a target's timing can come from

Nothing outside this registry asks which kind of machine a target is.
"""

from __future__ import annotations

from isasim.backends.base import Backend
from isasim.backends.cpu import ScalarBackend, SimdBackend
from isasim.backends.simt import SimtBackend
from isasim.isa.errors import UserError
from isasim.isa.hardware import Machine
from isasim.isa.targets import Target

BACKENDS: tuple[Backend, ...] = (ScalarBackend(), SimdBackend(), SimtBackend())  # they accept disjoint targets


def backend_for(target: Target) -> Backend:
    for backend in BACKENDS:
        if backend.accepts(target):
            return backend
    raise LookupError(f"no backend lowers target {target.name}")  # a target table without capabilities: a bug


def machine_names(target: Target, precision: str = "fp32") -> tuple[str, ...]:
    """The cores (CPU) or parts (GPU) a target's timing can come from, in `precision`."""
    return backend_for(target).machine_names(target, precision)


def all_machines() -> dict[str, Backend]:
    """Every described machine's name, CPU cores first, with the backend that loads it."""
    every: dict[str, Backend] = {}
    for backend in BACKENDS:
        every.update({n: backend for n in backend.all_machine_names() if n not in every})
    return every


def load_machine(name: str) -> Machine:
    """A CPU core or a GPU by name."""
    every = all_machines()
    if name not in every:
        raise UserError(f"unknown microarchitecture {name!r}: choose one of {', '.join(every)}")
    return every[name].load_machine(name)
