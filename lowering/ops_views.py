"""Lowerings of ops that move no data: they return views of their input's storage.

Where torch would copy (reshape or contiguous() of a layout that cannot be viewed), the copy kernel from
ops_elementwise is used instead, and its bytes are costed.
"""

from __future__ import annotations

from isasim.lowering import views as V
from isasim.lowering.ops_elementwise import copy_kernel
from isasim.lowering.registry import Context, register
from isasim.models.graph import Node


def _arg(node: Node, i: int, name: str, default=None):
    if len(node.args) > i:
        return node.args[i]
    return node.kwarg(name, default)


def _in(ctx: Context, node: Node) -> V.View:
    return ctx.view(node.args[0])


@register("aten.view.default", "aten._unsafe_view.default", "aten.reshape.default")
def lower_view(ctx: Context, node: Node):
    v = V.reshape(_in(ctx, node), node.args[1])
    if v is None:
        if node.op == "aten.view.default":
            raise ValueError(f"{node.name}: view of a non-viewable layout")  # torch would have refused too
        return copy_kernel(ctx, node)
    return (v,)


@register("aten.permute.default")
def lower_permute(ctx: Context, node: Node):
    return (V.permute(_in(ctx, node), node.args[1]),)


@register("aten.transpose.int")
def lower_transpose(ctx: Context, node: Node):
    return (V.transpose(_in(ctx, node), node.args[1], node.args[2]),)


@register("aten.t.default")
def lower_t(ctx: Context, node: Node):
    v = _in(ctx, node)
    return (V.transpose(v, 0, 1) if len(v.shape) == 2 else v,)


@register("aten.expand.default")
def lower_expand(ctx: Context, node: Node):
    return (V.expand(_in(ctx, node), node.args[1]),)


@register("aten.unsqueeze.default")
def lower_unsqueeze(ctx: Context, node: Node):
    return (V.unsqueeze(_in(ctx, node), node.args[1]),)


@register("aten.squeeze.dim", "aten.squeeze.dims")
def lower_squeeze(ctx: Context, node: Node):
    return (V.squeeze(_in(ctx, node), node.args[1]),)


@register("aten.slice.Tensor")
def lower_slice(ctx: Context, node: Node):
    return (V.slice_(_in(ctx, node), _arg(node, 1, "dim", 0), _arg(node, 2, "start"), _arg(node, 3, "end"),
                     _arg(node, 4, "step", 1)),)


@register("aten.select.int")
def lower_select(ctx: Context, node: Node):
    return (V.select(_in(ctx, node), node.args[1], node.args[2]),)


@register("aten.alias.default", "aten.detach.default", "aten.dropout.default", "aten.lift_fresh.default",
          "aten.to.device", "isasim.to_gpus.default")  # (models/tensor_parallel.py: Megatron's f, nothing forward)
def lower_alias(ctx: Context, node: Node):
    return (_in(ctx, node),)


@register("aten.contiguous.default")
def lower_contiguous(ctx: Context, node: Node):
    v = _in(ctx, node)
    return (v,) if V.is_contiguous(v) else copy_kernel(ctx, node)


@register("aten.to.dtype", "aten.to.dtype_layout", "aten.to.other")
def lower_to(ctx: Context, node: Node):
    v = _in(ctx, node)
    return (v,) if v.dtype is node.out.dtype else copy_kernel(ctx, node)
