"""Running a lowered graph's programs on real values, through each target's backend."""

from __future__ import annotations

from typing import Callable, Iterable, Iterator

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
# a step's kernel as the pieces that run it (each core's chunk, each GPU's shard) and whether they are partial
# sums to add up; None: the kernel whole
Shards = Callable[[Step], "tuple[list[Kernel], bool] | None"]


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
              live: dict[str, np.ndarray] | None = None, shards: Shards | None = None) -> dict[str, np.ndarray]:
    """Execute every kernel of the graph for `target` on the graph's values, in isasim's executor or as
    machine code (native=True, no events); returns the storages. `on_step` sees each step with its program
    and what the executor counted (None for views), while every storage it may read is still held. The
    machine (default: the target's own) gives the geometry a SIMT executor counts sectors and banks with.

    `keep`: the storages to return; every other is released after the last step that uses it, so memory
    holds the live activations only (None: keep them all). `live`: the dict to hold the storages in while
    running (it is what is returned), for an `on_step` that reads them. `shards`: each step's kernel as the
    pieces that run it (engine/cores.py `core_shards`: each core's chunk, run in turn on the same storages;
    engine/tensor_parallel.py `shards`: each GPU's, partial sums each on outputs of their own, then added in
    shard order)."""
    storages = {} if live is None else live
    for _ in run_steps(lowered, target, storages, on_step, native, machine, keep, shards):
        pass
    return storages


def run_steps(lowered: LoweredGraph, target: Target, storages: dict[str, np.ndarray], on_step: OnStep | None = None,
              native: bool = False, machine: Machine | None = None, keep: Iterable[str] | None = None,
              shards: Shards | None = None) -> Iterator[Step]:
    """run_graph one step at a time, into `storages`: yields each step once it has run, before the storages
    it was the last to use are released (engine/tensor_parallel_training.py runs every GPU's graph in
    lockstep this way, adding their all-reduce buffers between steps)."""
    backend = backend_for(target)
    machine = machine or backend.load_machine(target.default_uarch)
    values = lowered.graph.values
    if values is None:
        raise ValueError("the graph was captured without values; capture it with values to execute it")
    storages.update({name: np.ascontiguousarray(v).reshape(-1) for name, v in values.items()})
    kept = None if keep is None else set(keep)
    drop_after: dict[int, list[str]] = {}
    if kept is not None:
        for name, i in last_uses(lowered).items():
            if name not in kept:
                drop_after.setdefault(i, []).append(name)
    for i, step in enumerate(lowered.steps):
        program = events = None
        pieces = shards(step) if step.kernel is not None and shards is not None else None
        if pieces is not None:
            program, events = _run_split(pieces[0], pieces[1], target, machine, native, storages)
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
        yield step
        for name in drop_after.get(i, ()):
            storages.pop(name, None)


def _run_split(kernels: list[Kernel], partial: bool, target: Target, machine: Machine, native: bool,
               storages: dict[str, np.ndarray]) -> tuple[tuple[Program, ...], Events | None]:
    """The pieces of a kernel, each run on its own, in order: into the same outputs (a core's chunk writes
    its part), or, for partial sums, each into outputs of its own, added up in order afterwards."""
    backend = backend_for(target)
    programs = tuple(backend.select(k, target, machine) for k in kernels)
    outputs = [b.name for b in programs[0].buffers if b.is_output]
    events = None if native else Events()
    sums: dict[str, np.ndarray] = {}

    def counted(ran: Events) -> None:
        events.instructions.update(ran.instructions)
        events.bytes_loaded += ran.bytes_loaded
        events.bytes_stored += ran.bytes_stored

    if not partial and not native:  # the chunks share one memory, each writing its part
        mem = load_memory(programs[0], storages)
        for program in programs:
            counted(backend.execute(program, mem, machine))
        store_outputs(programs[0], mem, storages)
        return programs, events
    for program in programs:
        if native:
            backend.run_native(program, target, storages, into=not partial)
        else:
            mem = load_memory(program, storages)
            counted(backend.execute(program, mem, machine))
            store_outputs(program, mem, storages)
        if partial:
            for name in outputs:
                sums[name] = sums[name] + storages[name] if name in sums else np.array(storages[name])
    storages.update(sums)
    return programs, events
