"""Running a lowered graph's programs on real values, through each target's backend."""

from __future__ import annotations

from typing import Callable

import numpy as np

from isasim.backends import backend_for
from isasim.backends.base import load_memory, store_outputs
from isasim.isa.hardware import Machine
from isasim.isa.machine_state import Events
from isasim.isa.program import Program
from isasim.isa.targets import Target
from isasim.lowering.pipeline import LoweredGraph, Step

OnStep = Callable[[Step, "Program | None", "Events | None"], None]


def run_graph(lowered: LoweredGraph, target: Target, on_step: OnStep | None = None, native: bool = False,
              machine: Machine | None = None) -> dict[str, np.ndarray]:
    """Execute every kernel of the graph for `target` on the graph's values, in isasim's executor or as
    machine code (native=True, no events); returns all storages. `on_step` sees each step with its program
    and what the executor counted (None for views). The machine (default: the target's own) gives the
    geometry a SIMT executor counts sectors and banks with."""
    backend = backend_for(target)
    machine = machine or backend.load_machine(target.default_uarch)
    values = lowered.graph.values
    if values is None:
        raise ValueError("the graph was captured without values; capture it with values to execute it")
    storages = {name: np.ascontiguousarray(v).reshape(-1) for name, v in values.items()}
    for step in lowered.steps:
        program = events = None
        if step.kernel is not None:
            program = backend.select(step.kernel, target, machine)
            if native:
                backend.run_native(program, target, storages)
            else:
                mem = load_memory(program, storages)
                events = backend.execute(program, mem, machine)
                store_outputs(program, mem, storages)
        if on_step:
            on_step(step, program, events)
    return storages
