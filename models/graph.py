"""The captured computation graph: one node per ATen op, with shapes, dtypes and module paths.

This is the contract between models/ (which captures it from PyTorch) and lowering/ (which lowers every
node). It holds no torch objects, so lowering and costing never import torch.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum
from typing import Union

import networkx as nx
import numpy as np

from isasim.isa.dtype import DType


@dataclass(frozen=True)
class TensorMeta:
    shape: tuple[int, ...]
    dtype: DType

    @property
    def numel(self) -> int:
        return int(np.prod(self.shape, dtype=np.int64))


@dataclass(frozen=True)
class Ref:
    """A reference to a tensor value: output `index` of node (or placeholder) `name`."""

    name: str
    index: int = 0


# A node argument: a tensor reference, a Python constant, or a tuple of arguments.
Arg = Union[Ref, int, float, bool, str, None, tuple]


class PlaceholderKind(Enum):
    PARAMETER = "parameter"
    BUFFER = "buffer"
    INPUT = "input"
    CONSTANT = "constant"


@dataclass(frozen=True)
class Placeholder:
    name: str
    kind: PlaceholderKind
    meta: TensorMeta
    target: str  # the state_dict key for parameters and buffers, the kwarg name for inputs


@dataclass(frozen=True)
class Node:
    name: str  # the fx node name, unique in the graph, e.g. "addmm_3"
    op: str  # the ATen overload as str(target), e.g. "aten.addmm.default"
    args: tuple[Arg, ...]
    kwargs: tuple[tuple[str, Arg], ...]
    outs: tuple[TensorMeta, ...]  # one entry per tensor output (native_layer_norm has three)
    module: str  # the owning module path, e.g. "encoder.layer.3.attention.self.query"; "" at top level

    @property
    def out(self) -> TensorMeta:
        return self.outs[0]

    def kwarg(self, key: str, default: Arg = None) -> Arg:
        return dict(self.kwargs).get(key, default)


@dataclass
class Graph:
    model: str
    placeholders: tuple[Placeholder, ...]
    nodes: tuple[Node, ...]  # topological order; only ops that compute or alias tensors
    outputs: tuple[Ref, ...]  # outputs[0] is the last hidden state
    # Concrete values of placeholders (weights, buffers, inputs) when captured for execution; None for cost-only.
    values: dict[str, np.ndarray] | None = None
    config: dict = field(default_factory=dict)

    def meta(self, ref: Ref) -> TensorMeta:
        for p in self.placeholders:
            if p.name == ref.name:
                return p.meta
        return self.node(ref.name).outs[ref.index]

    def node(self, name: str) -> Node:
        return self._by_name()[name]

    def _by_name(self) -> dict[str, Node]:
        cache = self.__dict__.get("_node_index")
        if cache is None:
            cache = {n.name: n for n in self.nodes}
            self.__dict__["_node_index"] = cache
        return cache

    def to_networkx(self) -> nx.DiGraph:
        """Data-flow graph for analysis: an edge from each producer to each consumer."""
        g = nx.DiGraph()
        for p in self.placeholders:
            g.add_node(p.name, kind=p.kind.value)
        for n in self.nodes:
            g.add_node(n.name, op=n.op, module=n.module)
            for ref in iter_refs(n.args + tuple(v for _, v in n.kwargs)):
                g.add_edge(ref.name, n.name)
        return g


def check(g: Graph) -> None:
    """Raise ValueError unless the graph holds together: it has nodes and outputs, every shape is a tuple of
    non-negative integers, and every reference names a placeholder or an earlier node's output."""
    if not g.nodes or not g.outputs:
        raise ValueError("a graph without nodes or outputs")
    outs: dict[str, int] = {}
    for meta in [p.meta for p in g.placeholders] + [m for n in g.nodes for m in n.outs]:
        if not (isinstance(meta.shape, tuple) and all(isinstance(d, int) and d >= 0 for d in meta.shape)):
            raise ValueError(f"a shape of {meta.shape!r}")
    for p in g.placeholders:
        outs[p.name] = 1
    for n in g.nodes:
        for ref in iter_refs(n.args + tuple(v for _, v in n.kwargs)):
            if not 0 <= ref.index < outs.get(ref.name, 0):
                raise ValueError(f"node {n.name} reads {ref.name}[{ref.index}], which is not before it")
        outs[n.name] = len(n.outs)
    for ref in g.outputs:
        if not 0 <= ref.index < outs.get(ref.name, 0):
            raise ValueError(f"the graph's output {ref.name}[{ref.index}] does not exist")


def iter_refs(args) -> list[Ref]:
    """Every Ref inside a (possibly nested) argument tuple, in order."""
    found: list[Ref] = []
    for a in args:
        if isinstance(a, Ref):
            found.append(a)
        elif isinstance(a, (tuple, list)):
            found.extend(iter_refs(a))
    return found
