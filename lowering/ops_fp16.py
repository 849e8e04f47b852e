"""The fp16 linear layer (models/fp16.py): each activation rounded to fp16, times the fp16 weight, summed in
float32 over k in order, plus the float32 bias. Only the SIMT target selects it, on its tensor cores
(lowering/isel_simt_mma.py); a CPU target is refused before lowering (isa/targets.py `fp16_features`)."""

from __future__ import annotations

import numpy as np

from isasim.isa.semantics import Prim as P
from isasim.lowering import views as V
from isasim.lowering.kernel import Affine, Const, Kernel, Load, Map, Reduce, Scalar, op
from isasim.lowering.ops_elementwise import loop_vars
from isasim.lowering.registry import Context, register, unsupported
from isasim.models.graph import Node


@register("isasim.linear_fp16")
def lower_linear_fp16(ctx: Context, node: Node):
    """out[b.., m, n] = sum_k f16(x[m, k]) * W[n, k] (+ bias[n]), the weight fp16 [N, K]."""
    x, w = ctx.view(node.args[0]), ctx.view(node.args[1])
    bias = ctx.view(node.args[2]) if len(node.args) > 2 else None
    shape = node.out.shape
    batch, (m, n) = shape[:-2], shape[-2:]
    k = x.shape[-1]
    if not V.is_contiguous(x) or w.shape != (n, k) or (bias is not None and bias.shape != (n,)):
        raise unsupported(node, f"fp16 linear of {x.shape} by a {w.shape} weight")
    bvars = loop_vars(len(batch), "b")
    xix = x.broadcast_to(batch + (m, k)).index(bvars + ("m", "k"))
    a = op(P.ROUND_F16, Load(x.storage, xix))
    b = Load(w.storage, Affine(w.offset, (("n", k), ("k", 1))))
    reduce = Reduce("k", k, "acc", Const(0.0), op(P.FMA, a, b, Scalar("acc")))
    value = Scalar("acc")
    if bias is not None:
        value = op(P.FADD, value, Load(bias.storage, Affine(bias.offset, (("n", 1),))))
    out = ctx.out_view(node)
    store = Map(None, 1, out.storage, out.index(bvars + ("m", "n")), value)
    parallel = tuple(zip(bvars, batch)) + (("m", m), ("n", n))
    flops = 2 * int(np.prod(batch, dtype=np.int64)) * m * n * k
    inputs = [x, w] + ([bias] if bias is not None else [])
    return Kernel(node.name, node.op, ctx.buffers(node, inputs), parallel, (reduce, store), flops)
