"""Graph -> kernels: every node lowered to a loop-nest Kernel (or to a view, which moves no data), and the
tensor a view describes read back from storage. Kernels become programs in each target's backend (backends/)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from isasim.lowering import (ops_backward, ops_bf16, ops_elementwise, ops_fp16, ops_gather, ops_linalg,  # noqa: F401
                             ops_quant, ops_rows, ops_views)  # (they register their lowerings)
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
    ctx = Context(graph, half_activations=graph.config.get("precision") == "fp16")
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
