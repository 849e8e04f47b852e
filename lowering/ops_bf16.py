"""bf16 inference ops (models/bf16.py): the activation rounded to bf16, and the linear layer that accumulates
bf16 pairs in float32. Only the SIMD targets with a bf16 dot-product instruction select them
(lowering/isel_gemm_bf16.py, lowering/isel_vector.py `bf16_map`)."""

from __future__ import annotations

import numpy as np

from isasim.isa.semantics import Prim as P
from isasim.lowering import views as V
from isasim.lowering.kernel import Affine, Const, Kernel, Load, Map, Reduce, Scalar, op
from isasim.lowering.ops_elementwise import loop_vars
from isasim.lowering.registry import Context, register, unsupported
from isasim.models.graph import Node


@register("isasim.round_bf16")
def lower_round_bf16(ctx: Context, node: Node):
    """Each float32 element rounded to bf16 (nearest even), stored as 16 bits."""
    x = ctx.view(node.args[0])
    if not V.is_contiguous(x):
        raise unsupported(node, "bf16 rounding of a strided tensor")
    shape = node.out.shape
    dvars = loop_vars(len(shape))
    out = ctx.out_view(node)
    phase = Map(dvars[-1], shape[-1], out.storage, out.index(dvars), op(P.CVT_BF16, Load(x.storage, x.index(dvars))))
    return Kernel(node.name, node.op, ctx.buffers(node, [x]), tuple(zip(dvars[:-1], shape[:-1])), (phase,))


@register("isasim.linear_bf16")
def lower_linear_bf16(ctx: Context, node: Node):
    """out[b.., m, n] = sum_k xb[m, k] * W[n, k] (+ bias[n]): a float32 reduction over k in steps of two
    (Prim.DPBF16: each load names the first of two consecutive bf16; the weight is packed [K/2, N, 2])."""
    xb, wb = ctx.view(node.args[0]), ctx.view(node.args[1])
    bias = ctx.view(node.args[2]) if len(node.args) > 2 else None
    shape = node.out.shape
    batch, (m, n) = shape[:-2], shape[-2:]
    k2 = wb.shape[0]
    if not V.is_contiguous(xb) or xb.shape[-1] != 2 * k2 or wb.shape[1] != n or (bias is not None
                                                                                 and bias.shape != (n,)):
        raise unsupported(node, f"bf16 linear of {xb.shape} by a packed {wb.shape} weight")
    bvars = loop_vars(len(batch), "b")
    xix = xb.broadcast_to(batch + (m, 2 * k2)).index(bvars + ("m", None))
    a = Load(xb.storage, Affine(xix.offset, xix.terms + (("k2", 2),)))
    b = Load(wb.storage, Affine(wb.offset, (("k2", 2 * n), ("n", 2))))
    reduce = Reduce("k2", k2, "acc", Const(0.0), op(P.DPBF16, a, b, Scalar("acc")))
    value = Scalar("acc")
    if bias is not None:
        value = op(P.FADD, value, Load(bias.storage, Affine(bias.offset, (("n", 1),))))
    out = ctx.out_view(node)
    store = Map(None, 1, out.storage, out.index(bvars + ("m", "n")), value)
    parallel = tuple(zip(bvars, batch)) + (("m", m), ("n", n))
    flops = 2 * int(np.prod(batch, dtype=np.int64)) * m * n * 2 * k2
    inputs = [xb, wb] + ([bias] if bias is not None else [])
    return Kernel(node.name, node.op, ctx.buffers(node, inputs), parallel, (reduce, store), flops)
