"""The table of lowerings: one function per ATen op, registered by name (as torch/_inductor's lowerings are).

A lowering returns either a Kernel (whose outputs become new contiguous storages named after the node) or a
tuple of Views (the op only re-describes storage and costs nothing).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

from isasim.lowering.kernel import Buffer, Kernel
from isasim.lowering.views import View, contiguous_strides
from isasim.isa.dtype import DType
from isasim.isa.errors import UserError
from isasim.models.graph import Graph, Node, Ref, TensorMeta

LOWERINGS: dict[str, Callable] = {}


class UnsupportedOp(UserError):
    pass


def register(*ops: str):
    def deco(fn):
        for o in ops:
            LOWERINGS[o] = fn
        return fn
    return deco


def output_name(node: Node, index: int) -> str:
    return node.name if index == 0 else f"{node.name}#{index}"


@dataclass
class Context:
    """What lowering knows about every value so far: where its elements live."""

    graph: Graph
    views: dict[Ref, View] = field(default_factory=dict)
    storages: dict[str, TensorMeta] = field(default_factory=dict)
    # --precision fp16: every float32 tensor an op writes is stored as fp16 (models/fp16.py); the ops still
    # compute in float32 (their views keep DType.F32), converting as they load and store
    half_activations: bool = False
    placeholders: frozenset[str] = field(init=False)

    def __post_init__(self):
        self.placeholders = frozenset(p.name for p in self.graph.placeholders)

    def storage_dtype(self, name: str, meta: TensorMeta) -> DType:
        """What a storage's elements are held as in memory: a node's float32 output in fp16 under
        `half_activations`; a placeholder (weight, input) as it is."""
        half = self.half_activations and name not in self.placeholders and meta.dtype is DType.F32
        return DType.F16 if half else meta.dtype

    def view(self, ref: Ref) -> View:
        return self.views[ref]

    def out_view(self, node: Node, index: int = 0) -> View:
        meta = node.outs[index]
        return View(output_name(node, index), meta.shape, contiguous_strides(meta.shape), 0, meta.dtype)

    def buffers(self, node: Node, inputs: list[View], n_outputs: int | None = None) -> tuple[Buffer, ...]:
        """The kernel's buffers: each input storage once, then the node's outputs."""
        seen: dict[str, Buffer] = {}
        for v in inputs:
            meta = self.storages[v.storage]
            seen.setdefault(v.storage, Buffer(v.storage, meta.numel, self.storage_dtype(v.storage, meta)))
        outs = node.outs if n_outputs is None else node.outs[:n_outputs]
        for i, meta in enumerate(outs):
            name = output_name(node, i)
            seen[name] = Buffer(name, meta.numel, self.storage_dtype(name, meta), is_output=True)
        return tuple(seen.values())


def unsupported(node: Node, why: str = "") -> UnsupportedOp:
    detail = f" ({why})" if why else ""
    return UnsupportedOp(f"op {node.op} at node '{node.name}' in {node.module or 'the model'} has no lowering"
                         f"{detail}; open an issue with the model name and this line")


def lower_node(ctx: Context, node: Node) -> Kernel | None:
    """Lower one node; record its output views. Returns the kernel, or None for a pure view."""
    fn = LOWERINGS.get(node.op)
    if fn is None:
        raise unsupported(node)
    result = fn(ctx, node)
    if isinstance(result, Kernel):
        for i, meta in enumerate(node.outs):
            ctx.storages[output_name(node, i)] = meta
            ctx.views[Ref(node.name, i)] = ctx.out_view(node, i)
        return result
    for i, v in enumerate(result):
        ctx.views[Ref(node.name, i)] = v
    return None
