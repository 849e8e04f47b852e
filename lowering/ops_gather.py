"""Indexed reads: embedding, gather and advanced indexing. The index is loaded, scaled and added to a row
pointer (integer multiply + add), then the element is loaded from the computed address."""

from __future__ import annotations

from isasim.lowering.kernel import Affine, Kernel, Load, Map
from isasim.lowering.registry import Context, register, unsupported
from isasim.lowering.views import View
from isasim.isa.dtype import DType
from isasim.models.graph import Node, Ref


def _indexed_kernel(ctx: Context, node: Node, src: View, dvars: tuple[str, ...], static: list[tuple[str, int]],
                    dynamic: list[tuple[View, tuple[str, ...], int]]) -> Kernel:
    """out[dvars] = src[offset + static terms + sum(index_view[ivars] * stride)]."""
    shape = node.out.shape
    dyn = []
    inputs = [src]
    for iv, ivars, stride in dynamic:
        if iv.dtype is DType.F32:
            raise unsupported(node, "float indices")
        dyn.append((Load(iv.storage, iv.index(ivars)), stride))
        inputs.append(iv)
    index = Affine(src.offset, tuple((v, s) for v, s in static if s), tuple(dyn))
    out = ctx.out_view(node)
    value = Load(src.storage, index)
    phase = Map(dvars[-1], shape[-1], out.storage, out.index(dvars), value) if shape else \
        Map(None, 1, out.storage, out.index(()), value)
    parallel = tuple(zip(dvars[:-1], shape[:-1]))
    return Kernel(node.name, node.op, ctx.buffers(node, inputs), parallel, (phase,))


@register("aten.embedding.default")
def lower_embedding(ctx: Context, node: Node):
    weight, ids = ctx.view(node.args[0]), ctx.view(node.args[1])
    ivars = tuple(f"t{d}" for d in range(len(ids.shape)))
    dvars = ivars + ("h",)
    static = [("h", weight.strides[1])] if weight.shape[1] > 1 else []
    return _indexed_kernel(ctx, node, weight, dvars, static, [(ids, ivars, weight.strides[0])])


@register("aten.gather.default")
def lower_gather(ctx: Context, node: Node):
    src, index = ctx.view(node.args[0]), ctx.view(node.args[2])
    dim = node.args[1] % len(src.shape)
    dvars = tuple(f"d{k}" for k in range(len(index.shape)))
    static = [(v, s) for k, (v, s, n) in enumerate(zip(dvars, src.strides, index.shape)) if k != dim and n > 1]
    return _indexed_kernel(ctx, node, src, dvars, static, [(index, dvars, src.strides[dim])])


@register("aten.index.Tensor")
def lower_index(ctx: Context, node: Node):
    src = ctx.view(node.args[0])
    indices = node.args[1]
    if any(not isinstance(i, Ref) for i in indices):
        raise unsupported(node, "indexing with None or slices between the index tensors")
    k = len(indices)
    shape = node.out.shape
    bshape = shape[: len(shape) - (len(src.shape) - k)]
    bvars = tuple(f"b{d}" for d in range(len(bshape)))
    rvars = tuple(f"r{d}" for d in range(len(src.shape) - k))
    dynamic = [(ctx.view(i).broadcast_to(bshape), bvars, src.strides[d]) for d, i in enumerate(indices)]
    static = [(v, s) for v, s, n in zip(rvars, src.strides[k:], src.shape[k:]) if n > 1]
    return _indexed_kernel(ctx, node, src, bvars + rvars, static, dynamic)
