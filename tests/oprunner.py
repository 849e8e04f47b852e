"""Build one-op graphs by hand and run them through lowering, so op tests need no model capture."""

from __future__ import annotations

import numpy as np

from isasim.isa.execute import execute
from isasim.isa.machine_state import Memory
from isasim.isa.stepper import step_program
from isasim.isa.targets import TARGETS
from isasim.lowering.isel import select
from isasim.lowering.pipeline import lower_graph, materialize, run_graph
from isasim.isa.dtype import DType
from isasim.models.graph import Graph, Node, Placeholder, PlaceholderKind, Ref, TensorMeta

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
    storages = run_graph(lowered, TARGETS[target])
    node = graph.nodes[-1]
    return [materialize(lowered.context.views[Ref(node.name, i)], storages) for i in range(len(node.outs))]


def programs(graph: Graph, target: str = "x86-64"):
    lowered = lower_graph(graph)
    return [select(k, TARGETS[target]) for k in lowered.kernels]


def both_executors(program, values: dict[str, np.ndarray]):
    """Run a program in the batched executor and the stepped interpreter on the same inputs."""
    results = []
    for run in (execute, step_program):
        mem = Memory(program.buffers)
        for b in program.buffers:
            if not b.is_output:
                mem.write(b.name, values[b.name])
        events = run(program, mem)
        results.append((mem, events))
    return results
