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
from isasim.lowering.pipeline import LoweredGraph, Step
from isasim.models.graph import Ref

OnStep = Callable[[Step, "Program | None", "Events | None"], None]


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
              live: dict[str, np.ndarray] | None = None) -> dict[str, np.ndarray]:
    """Execute every kernel of the graph for `target` on the graph's values, in isasim's executor or as
    machine code (native=True, no events); returns the storages. `on_step` sees each step with its program
    and what the executor counted (None for views), while every storage it may read is still held. The
    machine (default: the target's own) gives the geometry a SIMT executor counts sectors and banks with.

    `keep`: the storages to return; every other is released after the last step that uses it, so memory
    holds the live activations only (None: keep them all). `live`: the dict to hold the storages in while
    running (it is what is returned), for an `on_step` that reads them."""
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
        if step.kernel is not None:
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
