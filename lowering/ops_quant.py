"""int8 inference ops (models/quantize.py): the activation's quantization parameters, its quantization, and
the int8 linear layer with its dequantizing epilogue. Each computes, operation for operation, what the numpy
reference in models/quantize.py computes.
"""

from __future__ import annotations

import numpy as np

from isasim.isa.semantics import Prim as P
from isasim.lowering import views as V
from isasim.lowering.kernel import Affine, Const, Kernel, Let, Load, Map, Reduce, Scalar, op
from isasim.lowering.ops_elementwise import loop_vars
from isasim.lowering.registry import Context, register, unsupported
from isasim.models.graph import Node
from isasim.models.quantize import MIN_SCALE, QMAX

SCALE, INVERSE, ZERO_POINT = 0, 1, 2  # the elements of a quant_params output


def _flat(ctx: Context, node: Node, ref) -> V.View:
    view = ctx.view(ref)
    if not V.is_contiguous(view):
        raise unsupported(node, "int8 quantization of a strided tensor")
    return view


@register("isasim.minmax_rows")
def lower_minmax_rows(ctx: Context, node: Node):
    """Each row's max and -min (the max of the negation, so both reductions vectorise with vmaxps / fmaxp):
    rows are independent, so the executors and the cores run them side by side."""
    x = _flat(ctx, node, node.args[0])
    rows, cols = node.out.shape[0], x.numel // max(node.out.shape[0], 1)
    i = Load(x.storage, Affine(x.offset, (("r", cols), ("c", 1))))
    ninf = Const(float("-inf"))
    hi = Reduce("c", cols, "hi", ninf, op(P.FMAX, Scalar("hi"), i))
    nlo = Reduce("c", cols, "nlo", ninf, op(P.FMAX, Scalar("nlo"), op(P.FNEG, i)))
    out = ctx.out_view(node).storage
    stores = (Map(None, 1, out, Affine(0, (("r", 2),)), Scalar("hi")), Map(None, 1, out, Affine(1, (("r", 2),)),
                                                                          Scalar("nlo")))
    return Kernel(node.name, node.op, ctx.buffers(node, [x]), (("r", rows),), (hi, nlo) + stores)


@register("isasim.quant_params")
def lower_quant_params(ctx: Context, node: Node):
    """The rows' partial results combined, then the scale, its inverse and the zero point, one store each."""
    p = ctx.view(node.args[0])
    rows = p.shape[0]
    ninf, zero = Const(float("-inf")), Const(0.0)
    hi = Reduce("r", rows, "hi", ninf, op(P.FMAX, Scalar("hi"), Load(p.storage, Affine(p.offset, (("r", 2),)))))
    nlo = Reduce("r", rows, "nlo", ninf, op(P.FMAX, Scalar("nlo"),
                                            Load(p.storage, Affine(p.offset + 1, (("r", 2),)))))
    span = op(P.FADD, op(P.FMAX, Scalar("hi"), zero), op(P.FMAX, Scalar("nlo"), zero))
    scale = Let("scale", op(P.FMAX, op(P.FDIV, span, Const(float(QMAX))), Const(float(MIN_SCALE))))
    inv = Let("inv", op(P.FDIV, Const(1.0), Scalar("scale")))
    zp = Let("zp", op(P.FMIN, op(P.FROUND, op(P.FMUL, op(P.FMAX, Scalar("nlo"), zero), Scalar("inv"))),
                      Const(float(QMAX))))
    out = ctx.out_view(node).storage
    stores = tuple(Map(None, 1, out, Affine(k), Scalar(name))
                   for k, name in ((SCALE, "scale"), (INVERSE, "inv"), (ZERO_POINT, "zp")))
    return Kernel(node.name, node.op, ctx.buffers(node, [p]), (), (hi, nlo, scale, inv, zp) + stores)


def _param(params: V.View, k: int) -> Load:
    return Load(params.storage, Affine(params.offset + k))


@register("isasim.quantize_u7")
def lower_quantize(ctx: Context, node: Node):
    """clamp(round(x / scale) + zero point, 0, 127), stored as bytes."""
    x, params = ctx.view(node.args[0]), ctx.view(node.args[1])
    shape = node.out.shape
    dvars = loop_vars(len(shape))
    q = op(P.FADD, op(P.FROUND, op(P.FMUL, Load(x.storage, x.index(dvars)), _param(params, INVERSE))),
           _param(params, ZERO_POINT))
    value = op(P.CVT_F2I, op(P.FMIN, op(P.FMAX, q, Const(0.0)), Const(float(QMAX))))
    out = ctx.out_view(node)
    phase = Map(dvars[-1], shape[-1], out.storage, out.index(dvars), value)
    return Kernel(node.name, node.op, ctx.buffers(node, [x, params]), tuple(zip(dvars[:-1], shape[:-1])), (phase,))


@register("isasim.linear_int8")
def lower_linear_int8(ctx: Context, node: Node):
    """out[b.., m, n] = float(acc) * (scale * w_scale[n]) + (bias[n] - (zp * scale) * (w_scale * colsum)[n]),
    where acc = sum_k xq[m, k] * W[n, k] is a reduction over k in steps of four bytes (Prim.DOT4: each load
    names the first of four consecutive bytes; the weight is packed [K/4, N, 4]), exact in int32."""
    xq, params, wq, table = (ctx.view(a) for a in node.args[:4])
    shape = node.out.shape
    batch, (m, n) = shape[:-2], shape[-2:]
    k4 = wq.shape[0]
    if not V.is_contiguous(xq) or xq.shape[-1] != 4 * k4 or wq.shape[1] != n or table.shape != (3, n):
        raise unsupported(node, f"int8 linear of {xq.shape} by a packed {wq.shape} weight")
    bvars = loop_vars(len(batch), "b")
    xix = xq.broadcast_to(batch + (m, 4 * k4)).index(bvars + ("m", None))
    a = Load(xq.storage, Affine(xix.offset, xix.terms + (("k4", 4),)))
    b = Load(wq.storage, Affine(wq.offset, (("k4", 4 * n), ("n", 4))))
    reduce = Reduce("k4", k4, "acc", Const(0, fp=False), op(P.DOT4, a, b, Scalar("acc")))

    def row(r: int) -> Load:
        return Load(table.storage, Affine(table.offset + r * n, (("n", 1),)))

    scale, zp = _param(params, SCALE), _param(params, ZERO_POINT)
    shift = op(P.FNMA, op(P.FMUL, zp, scale), row(1), row(2))
    value = op(P.FMA, op(P.CVT_I2F, Scalar("acc")), op(P.FMUL, scale, row(0)), shift)
    out = ctx.out_view(node)
    store = Map(None, 1, out.storage, out.index(bvars + ("m", "n")), value)
    parallel = tuple(zip(bvars, batch)) + (("m", m), ("n", n))
    ops = 2 * int(np.prod(batch, dtype=np.int64)) * m * n * 4 * k4  # integer multiply-adds, counted as FLOPs are
    return Kernel(node.name, node.op, ctx.buffers(node, [xq, params, wq, table]), parallel, (reduce, store), ops)
