"""Graph -> kernels -> programs, and running a lowered graph's programs on real values."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np

from isasim.isa.execute import execute
from isasim.isa.machine_state import Events, Memory
from isasim.isa.program import Program
from isasim.isa.targets import Target
from isasim.lowering import (ops_backward, ops_elementwise, ops_gather, ops_linalg, ops_rows,  # noqa: F401
                             ops_views)  # (they register their lowerings)
from isasim.lowering.backends import is_simt
from isasim.lowering.isel import select
from isasim.lowering.kernel import Kernel, verify
from isasim.lowering.registry import Context, lower_node
from isasim.lowering.views import View, contiguous_strides
from isasim.models.graph import Graph, Node, Ref


@dataclass(frozen=True)
class Step:
    node: Node
    kernel: Kernel | None  # None: the node is a view and moves no data


@dataclass
class LoweredGraph:
    graph: Graph
    steps: tuple[Step, ...]
    context: Context

    @property
    def kernels(self) -> list[Kernel]:
        return [s.kernel for s in self.steps if s.kernel is not None]


def lower_graph(graph: Graph) -> LoweredGraph:
    ctx = Context(graph)
    for p in graph.placeholders:
        ctx.storages[p.name] = p.meta
        ctx.views[Ref(p.name)] = View(p.name, p.meta.shape, contiguous_strides(p.meta.shape), 0, p.meta.dtype)
    steps = []
    for node in graph.nodes:
        kernel = lower_node(ctx, node)
        if kernel is not None:
            verify(kernel)
        steps.append(Step(node, kernel))
    return LoweredGraph(graph, tuple(steps), ctx)


def materialize(view: View, storages: dict[str, np.ndarray]) -> np.ndarray:
    """The tensor a view describes, read from its storage (a copy)."""
    flat = storages[view.storage]
    isz = flat.itemsize
    return np.lib.stride_tricks.as_strided(flat[view.offset:], view.shape, [s * isz for s in view.strides]).copy()


def run_program(program: Program, storages: dict[str, np.ndarray]) -> Events:
    """Place the program's buffers in memory, execute it, and write its outputs back into `storages`."""
    mem = Memory(program.buffers)
    for b in program.buffers:
        if not b.is_output:
            mem.write(b.name, storages[b.name])
    events = execute(program, mem)
    for b in program.buffers:
        if b.is_output:
            storages[b.name] = mem.read(b.name)
    return events


def run_native(program: Program, target: Target, storages: dict[str, np.ndarray]) -> None:
    """Assemble the program, run the machine code (natively, or under qemu for AArch64), and write its
    outputs back into `storages`."""
    from isasim.isa import native
    from isasim.isa.emit import emit, symbol

    buffers = [np.zeros(b.size, b.dtype.numpy) if b.is_output else
               np.ascontiguousarray(storages[b.name].astype(b.dtype.numpy)) for b in program.buffers]
    native.run(target.isa, emit(program, target), symbol(program.name), buffers)
    for b, arr in zip(program.buffers, buffers):
        if b.is_output:
            storages[b.name] = arr


def run_simt_program(program, storages: dict[str, np.ndarray], gpu):
    """Place a SIMT kernel's buffers in global memory, run the whole grid, write its outputs back."""
    from isasim.isa.simt_exec import run_simt

    mem = Memory(program.buffers)
    for b in program.buffers:
        if not b.is_output:
            mem.write(b.name, storages[b.name])
    events = run_simt(program, mem, gpu.sector_bytes, gpu.shared_banks, gpu.shared_bank_bytes)
    for b in program.buffers:
        if b.is_output:
            storages[b.name] = mem.read(b.name)
    return events


def run_graph(lowered: LoweredGraph, target: Target,
              on_step: Callable[[Step, Events | None], None] | None = None,
              native: bool = False, machine=None) -> dict[str, np.ndarray]:
    """Execute every kernel of the graph for `target` on the graph's values, in isasim's executor or as
    machine code (native=True, no events); returns all storages. A SIMT target's executor counts sectors and
    banks with `machine`'s geometry (the target's default GPU when None)."""
    if is_simt(target) and machine is None:
        from isasim.isa.gpu import load_gpu
        machine = load_gpu(target.default_uarch)
    values = lowered.graph.values
    if values is None:
        raise ValueError("the graph was captured without values; capture it with values to execute it")
    storages = {name: np.ascontiguousarray(v).reshape(-1) for name, v in values.items()}
    for step in lowered.steps:
        events = None
        if step.kernel is not None and is_simt(target):
            from isasim.lowering.isel_simt import select_simt
            events = run_simt_program(select_simt(step.kernel, target, machine), storages, machine)
        elif step.kernel is not None:
            program = select(step.kernel, target)
            if native:
                run_native(program, target, storages)
            else:
                events = run_program(program, storages)
        if on_step:
            on_step(step, events)
    return storages
