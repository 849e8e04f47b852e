"""Running a lowered graph's programs on real values, through each target's backend."""

from __future__ import annotations

from typing import Callable, Iterable

import numpy as np

from isasim.backends import backend_for
from isasim.backends.base import load_memory, store_outputs
from isasim.isa.hardware import Machine
from isasim.isa.machine_state import Events
from isasim.isa.program import Program
from isasim.isa.targets import Target
from isasim.lowering.kernel import Kernel
from isasim.lowering.pipeline import LoweredGraph, Step
from isasim.models.graph import Ref

# (step, its program, what the executor counted); on many cores, the chunks' programs as a tuple and their
# events summed
OnStep = Callable[[Step, "Program | tuple[Program, ...] | None", "Events | None"], None]


def last_uses(lowered: LoweredGraph) -> dict[str, int]:
    """For each storage, the last step that touches it: a kernel reading or writing it, or a node whose output
    is a view of it (the step where that output is compared)."""
    last = {}
    for i, step in enumerate(lowered.steps):
        if step.kernel is not None:
            for b in step.kernel.buffers:
                last[b.name] = i
        for k in range(len(step.node.outs)):
            view = lowered.context.views.get(Ref(step.node.name, k))
            if view is not None:
                last[view.storage] = i
    return last


def run_graph(lowered: LoweredGraph, target: Target, on_step: OnStep | None = None, native: bool = False,
              machine: Machine | None = None, keep: Iterable[str] | None = None,
              live: dict[str, np.ndarray] | None = None, cores: int = 1) -> dict[str, np.ndarray]:
    """Execute every kernel of the graph for `target` on the graph's values, in isasim's executor or as
    machine code (native=True, no events); returns the storages. `on_step` sees each step with its program
    and what the executor counted (None for views), while every storage it may read is still held. The
    machine (default: the target's own) gives the geometry a SIMT executor counts sectors and banks with.

    `keep`: the storages to return; every other is released after the last step that uses it, so memory
    holds the live activations only (None: keep them all). `live`: the dict to hold the storages in while
    running (it is what is returned), for an `on_step` that reads them. `cores`: each kernel split across that
    many cores as engine/cores.py chooses, every chunk run in turn on the same storages (a CPU target)."""
    backend = backend_for(target)
    machine = machine or backend.load_machine(target.default_uarch)
    values = lowered.graph.values
    if values is None:
        raise ValueError("the graph was captured without values; capture it with values to execute it")
    storages = {} if live is None else live
    storages.update({name: np.ascontiguousarray(v).reshape(-1) for name, v in values.items()})
    kept = None if keep is None else set(keep)
    drop_after: dict[int, list[str]] = {}
    if kept is not None:
        for name, i in last_uses(lowered).items():
            if name not in kept:
                drop_after.setdefault(i, []).append(name)
    for i, step in enumerate(lowered.steps):
        program = events = None
        if step.kernel is not None and cores > 1:
            program, events = _run_split(step.kernel, target, machine, cores, native, storages)
        elif step.kernel is not None:
            program = backend.select(step.kernel, target, machine)
            if native:
                backend.run_native(program, target, storages)
            else:
                mem = load_memory(program, storages)
                events = backend.execute(program, mem, machine)
                store_outputs(program, mem, storages)
                del mem
        if on_step:
            on_step(step, program, events)
        for name in drop_after.get(i, ()):
            storages.pop(name, None)
    return storages


def _run_split(kernel: Kernel, target: Target, machine: Machine, cores: int, native: bool,
               storages: dict[str, np.ndarray]) -> tuple[tuple[Program, ...], Events | None]:
    """The kernel's chunks (engine/cores.py), each run on its own into the same outputs, in core order."""
    from isasim.engine.cores import split_cost

    backend = backend_for(target)
    programs = tuple(backend.select(c, target, machine) for c in split_cost(kernel, target, machine, cores).chunks)
    if native:
        for program in programs:
            backend.run_native(program, target, storages, into=len(programs) > 1)
        return programs, None
    mem = load_memory(programs[0], storages)
    events = Events()
    for program in programs:
        ran = backend.execute(program, mem, machine)
        events.instructions.update(ran.instructions)
        events.bytes_loaded += ran.bytes_loaded
        events.bytes_stored += ran.bytes_stored
    store_outputs(programs[0], mem, storages)
    return programs, events
