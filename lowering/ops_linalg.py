"""Matrix multiplies: linear, addmm, mm, bmm and matmul all lower to one batched GEMM kernel.

out[b..., m, n] = sum_k A[b..., m, k] * B[b..., k, n] (+ bias[m, n] broadcast): parallel over (b..., m, n),
a reduction over k with one FMA per step into an accumulator, then one store. This is the plain scalar loop
nest — its single accumulator makes the FMA latency, not the ports, the bound (the cost model shows it);
register-blocked micro-kernels belong to the SIMD targets.
"""

from __future__ import annotations

import numpy as np

from isasim.isa.semantics import Prim as P
from isasim.lowering import views as V
from isasim.lowering.kernel import Const, Kernel, Load, Map, Reduce, Scalar, op
from isasim.lowering.registry import Context, register, unsupported
from isasim.isa.dtype import DType
from isasim.models.graph import Node, Ref


def gemm_kernel(ctx: Context, node: Node, a: V.View, b: V.View, bias: V.View | None) -> Kernel:
    shape = node.out.shape
    if len(a.shape) < 2 or len(b.shape) < 2:
        raise unsupported(node, "matrix-vector products")
    if DType.F32 not in (a.dtype,) or b.dtype is not DType.F32:
        raise unsupported(node, "integer matrix multiply")
    batch, (m, n) = shape[:-2], shape[-2:]
    k = a.shape[-1]
    if b.shape[-2] != k:
        raise unsupported(node, f"inner dimensions {a.shape} x {b.shape}")
    a = a.broadcast_to(batch + (m, k))
    b = b.broadcast_to(batch + (k, n))
    bvars = tuple(f"b{i}" for i in range(len(batch)))
    load_a = Load(a.storage, a.index(bvars + ("m", "k")))
    load_b = Load(b.storage, b.index(bvars + ("k", "n")))
    reduce = Reduce("k", k, "acc", Const(0.0), op(P.FMA, load_a, load_b, Scalar("acc")))
    value = Scalar("acc")
    inputs = [a, b]
    if bias is not None:
        bias = bias.broadcast_to(shape)
        value = op(P.FADD, value, Load(bias.storage, bias.index(bvars + ("m", "n"))))
        inputs.append(bias)
    out = ctx.out_view(node)
    store = Map(None, 1, out.storage, out.index(bvars + ("m", "n")), value)
    parallel = tuple(zip(bvars, batch)) + (("m", m), ("n", n))
    flops = 2 * int(np.prod(batch, dtype=np.int64)) * m * n * k
    return Kernel(node.name, node.op, ctx.buffers(node, inputs), parallel, (reduce, store), flops)


def _scalar_arg(node: Node, i: int, name: str, default=1):
    return node.args[i] if len(node.args) > i else node.kwarg(name, default)


@register("aten.mm.default", "aten.bmm.default", "aten.matmul.default")
def lower_mm(ctx: Context, node: Node):
    return gemm_kernel(ctx, node, ctx.view(node.args[0]), ctx.view(node.args[1]), None)


@register("aten.addmm.default")
def lower_addmm(ctx: Context, node: Node):
    if _scalar_arg(node, 3, "beta") != 1 or _scalar_arg(node, 4, "alpha") != 1:
        raise unsupported(node, "addmm with beta or alpha other than 1")
    return gemm_kernel(ctx, node, ctx.view(node.args[1]), ctx.view(node.args[2]), ctx.view(node.args[0]))


@register("aten.linear.default")
def lower_linear(ctx: Context, node: Node):
    weight = V.transpose(ctx.view(node.args[1]), 0, 1)  # linear computes x @ W^T
    bias = node.args[2] if len(node.args) > 2 else node.kwarg("bias")
    return gemm_kernel(ctx, node, ctx.view(node.args[0]), weight,
                       ctx.view(bias) if isinstance(bias, Ref) else None)
