"""Build one-op graphs by hand and run them through lowering and each target's backend, so op tests need no
model capture and one test body serves every target."""

from __future__ import annotations

import numpy as np

from isasim.backends import backend_for, load_machine, machine_names
from isasim.backends.base import load_memory
from isasim.engine.run import run_graph
from isasim.isa.dtype import DType
from isasim.isa.targets import ALL_TARGETS
from isasim.lowering.pipeline import lower_graph, materialize
from isasim.models.graph import Graph, Node, Placeholder, PlaceholderKind, Ref, TensorMeta

TARGET_NAMES = [n for n, t in ALL_TARGETS.items() if t.fp32]  # every float32 target, CPU and GPU (not amx)
PAIRS = [(t, m) for t in ALL_TARGETS.values() for m in machine_names(t)]  # every target on every machine
PAIR_IDS = [f"{t.name}-{m}" for t, m in PAIRS]

_DT = {np.dtype(np.float32): DType.F32, np.dtype(np.int64): DType.I64, np.dtype(bool): DType.BOOL}


def one_op_graph(op: str, inputs: dict[str, np.ndarray], args: tuple, out_shapes: list[tuple[int, ...]],
                 out_dtype: DType = DType.F32, kwargs: tuple = ()) -> Graph:
    """A graph with the given input tensors (referred to in `args` by Ref(name)) and one node named 'out'."""
    ph = tuple(Placeholder(n, PlaceholderKind.INPUT, TensorMeta(tuple(v.shape), _DT[v.dtype]), n)
               for n, v in inputs.items())
    outs = tuple(TensorMeta(tuple(s), out_dtype if i == 0 else DType.F32) for i, s in enumerate(out_shapes))
    node = Node("out", op, args, kwargs, outs, "test")
    return Graph("test", ph, (node,), (Ref("out"),), dict(inputs), {})


def run_op(graph: Graph, target: str = "x86-64") -> list[np.ndarray]:
    lowered = lower_graph(graph)
    storages = run_graph(lowered, ALL_TARGETS[target])
    node = graph.nodes[-1]
    return [materialize(lowered.context.views[Ref(node.name, i)], storages) for i in range(len(node.outs))]


def machine_of(target: str, machine: str | None = None):
    return load_machine(machine or ALL_TARGETS[target].default_uarch)


def programs(graph: Graph, target: str = "x86-64", machine: str | None = None):
    t = ALL_TARGETS[target]
    return [backend_for(t).select(k, t, machine_of(target, machine)) for k in lower_graph(graph).kernels]


def both_executors(program, values: dict[str, np.ndarray], target: str = "x86-64", machine: str | None = None):
    """Run a program in the batched executor and in the stepped interpreter on the same inputs: for each,
    the whole memory it ran on (inputs included) and what it counted."""
    backend, m = backend_for(ALL_TARGETS[target]), machine_of(target, machine)
    storages = {name: np.ascontiguousarray(v).reshape(-1) for name, v in values.items()}
    results = []
    for run in (backend.execute, backend.step):
        mem = load_memory(program, storages)
        results.append((mem, run(program, mem, m)))
    return results
