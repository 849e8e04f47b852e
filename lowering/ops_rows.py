"""Row-wise ops: softmax and layer norm, as reduction phases followed by a map over the row.

softmax:    m = max_j x_j;  s = sum_j (y_j = exp(x_j - m));  r = 1 / s;  y_j = y_j * r   (torch's three passes)
layer norm: mean = sum_j x_j / H;  var = sum_j (x_j - mean)^2 / H;  rstd = 1 / sqrt(var + eps);
            y_j = (x_j - mean) * rstd * w_j + b_j          (two passes, as torch's reference does)
"""

from __future__ import annotations

import numpy as np

from isasim.isa.semantics import Prim as P
from isasim.lowering import mathlib
from isasim.lowering import views as V
from isasim.lowering.kernel import Const, Kernel, Let, Load, Map, Reduce, Scalar, op
from isasim.lowering.registry import Context, output_name, register, unsupported
from isasim.isa.dtype import DType
from isasim.models.graph import Node, Ref


def row_vars(ndim: int, dim: int) -> tuple[str | None, ...]:
    return tuple("j" if d == dim else f"p{d}" for d in range(ndim))


@register("aten.softmax.int", "aten._softmax.default")
def lower_softmax(ctx: Context, node: Node):
    x = ctx.view(node.args[0])
    if x.dtype is not DType.F32 or node.out.dtype is not DType.F32:
        raise unsupported(node, "softmax outside float32")
    dim = node.args[1] % len(x.shape)
    dvars = row_vars(len(x.shape), dim)
    n = x.shape[dim]
    xj = Load(x.storage, x.index(dvars))
    shifted = op(P.FSUB, xj, Scalar("m"))
    out = ctx.out_view(node)
    e = mathlib.exp(shifted)
    out_j = out.index(dvars)
    phases = (
        Reduce("j", n, "m", Const(float("-inf")), op(P.FMAX, Scalar("m"), xj)),
        Reduce("j", n, "s", Const(0.0), op(P.FADD, Scalar("s"), e), Map("j", n, out.storage, out_j, e)),
        Let("r", op(P.FDIV, Const(1.0), Scalar("s"))),
        Map("j", n, out.storage, out_j, op(P.FMUL, Load(out.storage, out_j), Scalar("r"))),
    )
    parallel = tuple((v, e) for v, e in zip(dvars, x.shape) if v != "j")
    return Kernel(node.name, node.op, ctx.buffers(node, [x]), parallel, phases)


@register("aten.layer_norm.default", "aten.native_layer_norm.default")
def lower_layer_norm(ctx: Context, node: Node):
    x = ctx.view(node.args[0])
    normalized = tuple(node.args[1])
    weight, bias = node.args[2], node.args[3]
    eps = node.args[4] if len(node.args) > 4 else node.kwarg("eps", 1e-5)
    lead = x.shape[: len(x.shape) - len(normalized)]
    h = int(np.prod(normalized, dtype=np.int64))
    x = V.reshape(x, lead + (h,))
    if x is None:
        raise unsupported(node, "layer norm over dims that are not contiguous")
    dvars = tuple(f"p{d}" for d in range(len(lead))) + ("j",)
    xj = Load(x.storage, x.index(dvars))
    centred = op(P.FSUB, xj, Scalar("mean"))
    hc = Const(float(h))
    y = op(P.FMUL, centred, Scalar("rstd"))
    inputs = [x]
    for ref, prim in ((weight, P.FMUL), (bias, P.FADD)):
        if isinstance(ref, Ref):
            v = V.reshape(ctx.view(ref), (h,))
            inputs.append(v)
            y = op(prim, y, Load(v.storage, v.index(("j",))))
    out = ctx.out_view(node)
    out = V.View(out.storage, lead + (h,), V.contiguous_strides(lead + (h,)), 0, out.dtype)
    phases = [
        Reduce("j", h, "sum", Const(0.0), op(P.FADD, Scalar("sum"), xj)),
        Let("mean", op(P.FDIV, Scalar("sum"), hc)),
        Reduce("j", h, "sq", Const(0.0), op(P.FMA, centred, centred, Scalar("sq"))),
        Let("rstd", mathlib.rsqrt(op(P.FADD, op(P.FDIV, Scalar("sq"), hc), Const(float(eps))))),
        Map("j", h, out.storage, out.index(dvars), y),
    ]
    n_out = 1 if node.op == "aten.layer_norm.default" else 3
    for i, name in ((1, "mean"), (2, "rstd")):
        if i < n_out:
            stat = V.View(output_name(node, i), lead, V.contiguous_strides(lead), 0, DType.F32)
            phases.append(Map(None, 1, stat.storage, stat.index(dvars[:-1]), Scalar(name)))
    parallel = tuple(zip(dvars[:-1], lead))
    return Kernel(node.name, node.op, ctx.buffers(node, inputs, n_out), parallel, tuple(phases))
