"""Lowerings for a fine-tuning step's backward and loss ops (models/training.py captures them), one kernel each,
as PyTorch's own CPU kernels compute them:

- reductions: sum over dims (bias gradients: a column sum over every token);
- row ops: log_softmax and its backward, softmax's backward (sum_j g_j y_j, then y (g - s)), layer norm's
  input gradient (two sums per row, then an elementwise map); its weight and bias gradients are column sums;
- elementwise: tanh_backward, gelu_backward, lerp (AdamW's first moment), select_backward, nll_loss_backward;
- nll_loss_forward: one sum over the batch, reading each row's target logit (a gather);
- embedding_dense_backward: a zeroed table, then each token's gradient row added at its id (a scatter):
  a thread per hidden column walks the tokens in order, so repeated ids accumulate without races.
The AdamW update itself needs nothing new (mul, add, sqrt, div: ops_elementwise.py).
"""

from __future__ import annotations

import numpy as np

from isasim.isa.semantics import Prim as P
from isasim.lowering import mathlib
from isasim.lowering import views as V
from isasim.lowering.kernel import Affine, Const, Expr, Index, Kernel, Let, Load, Map, Reduce, Scalar, op
from isasim.lowering.ops_elementwise import elementwise_kernel
from isasim.lowering.ops_rows import row_vars
from isasim.lowering.registry import Context, output_name, register, unsupported
from isasim.isa.dtype import DType
from isasim.models.graph import Node

ZERO = Const(0.0)


def _f32(ctx: Context, node: Node, *refs) -> list[V.View]:
    views = [ctx.view(r) for r in refs]
    if any(v.dtype is not DType.F32 for v in views) or node.outs[0].dtype is not DType.F32:
        raise unsupported(node, "outside float32")
    return views


def _flag(pred: Expr) -> Expr:
    """An integer predicate as 1.0 / 0.0 (a float select would need a float compare on x86)."""
    return op(P.CVT_I2F, op(P.SETCC, pred))


def _equal(a: Expr, b: Expr) -> Expr:
    """1.0 where the integers a == b (there is no integer equality compare: 1 - (a != b))."""
    return op(P.CVT_I2F, op(P.ISUB, Const(1, fp=False), op(P.SETCC, op(P.ICMP_NE, a, b))))


# ---- sums ---------------------------------------------------------------------------------------------
@register("aten.sum.dim_IntList", "aten.sum.default")
def lower_sum(ctx: Context, node: Node):
    (x,) = _f32(ctx, node, node.args[0])
    nd = len(x.shape)
    dims = node.args[1] if len(node.args) > 1 and node.args[1] is not None else tuple(range(nd))
    dims = sorted({d % nd for d in (dims if isinstance(dims, (tuple, list)) else (dims,))}) or list(range(nd))
    kept = [d for d in range(nd) if d not in dims]
    rows = int(np.prod([x.shape[d] for d in dims], dtype=np.int64))
    moved = V.reshape(V.permute(x, kept + dims), tuple(x.shape[d] for d in kept) + (rows,))
    if moved is None:
        raise unsupported(node, "a sum over dims whose elements no single stride walks")
    kvars = tuple(f"p{d}" for d in kept)
    value = Load(moved.storage, moved.index(kvars + ("r",)))
    out = ctx.out_view(node)
    out = V.View(out.storage, tuple(x.shape[d] for d in kept), V.contiguous_strides(tuple(x.shape[d] for d in kept)),
                 0, DType.F32)
    phases = (Reduce("r", rows, "acc", ZERO, op(P.FADD, Scalar("acc"), value)),
              Map(None, 1, out.storage, out.index(kvars), Scalar("acc")))
    return Kernel(node.name, node.op, ctx.buffers(node, [x]), tuple(zip(kvars, out.shape)), phases)


# ---- row ops ------------------------------------------------------------------------------------------
def _row_kernel(ctx: Context, node: Node, views: list[V.View], dim: int, phases_of) -> Kernel:
    shape = views[0].shape
    dim %= len(shape)
    dvars = row_vars(len(shape), dim)
    loads = [Load(v.storage, v.index(dvars)) for v in views]
    out = ctx.out_view(node)
    phases = phases_of(*loads, shape[dim], out.storage, out.index(dvars))
    parallel = tuple((v, e) for v, e in zip(dvars, shape) if v != "j")
    return Kernel(node.name, node.op, ctx.buffers(node, views), parallel, phases)


@register("aten._log_softmax.default")
def lower_log_softmax(ctx: Context, node: Node):
    """m = max_j x_j;  s = sum_j exp(x_j - m);  y_j = x_j - m - ln s"""
    def phases(x, n, buf, idx):
        return (Reduce("j", n, "m", Const(float("-inf")), op(P.FMAX, Scalar("m"), x)),
                Reduce("j", n, "s", ZERO, op(P.FADD, Scalar("s"), mathlib.exp(op(P.FSUB, x, Scalar("m"))))),
                Let("l", mathlib.log(Scalar("s"))),
                Map("j", n, buf, idx, op(P.FSUB, op(P.FSUB, x, Scalar("m")), Scalar("l"))))
    return _row_kernel(ctx, node, _f32(ctx, node, node.args[0]), node.args[1], phases)


@register("aten._log_softmax_backward_data.default")
def lower_log_softmax_backward(ctx: Context, node: Node):
    """s = sum_j g_j;  dx_j = g_j - exp(y_j) s"""
    def phases(g, y, n, buf, idx):
        return (Reduce("j", n, "s", ZERO, op(P.FADD, Scalar("s"), g)),
                Map("j", n, buf, idx, op(P.FNMA, mathlib.exp(y), Scalar("s"), g)))
    return _row_kernel(ctx, node, _f32(ctx, node, node.args[0], node.args[1]), node.args[2], phases)


@register("aten._softmax_backward_data.default")
def lower_softmax_backward(ctx: Context, node: Node):
    """s = sum_j g_j y_j;  dx_j = y_j (g_j - s)"""
    def phases(g, y, n, buf, idx):
        return (Reduce("j", n, "s", ZERO, op(P.FMA, g, y, Scalar("s"))),
                Map("j", n, buf, idx, op(P.FMUL, y, op(P.FSUB, g, Scalar("s")))))
    return _row_kernel(ctx, node, _f32(ctx, node, node.args[0], node.args[1]), node.args[2], phases)


def _norm_views(ctx: Context, node: Node):
    """grad, x as [rows, h]; mean, rstd as [rows]."""
    g, x, mean, rstd = _f32(ctx, node, *node.args[:4])
    h = x.shape[-1]
    rows = int(np.prod(x.shape[:-1], dtype=np.int64))
    views = [V.reshape(g, (rows, h)), V.reshape(x, (rows, h)), V.reshape(mean, (rows,)), V.reshape(rstd, (rows,))]
    if any(v is None for v in views):
        raise unsupported(node, "a layer norm whose rows are not contiguous")
    return views, rows, h


@register("isasim.layer_norm_backward_row_terms.default")
def lower_layer_norm_backward_row_terms(ctx: Context, node: Node):
    """a = sum_j g w;  c = sum_j g w x;  per row: s2 = -rstd^3 (c - mean a) / h, s3 = -rstd a / h - mean s2"""
    (g, x, mean, rstd), rows, h = _norm_views(ctx, node)
    (w,) = _f32(ctx, node, node.args[4])
    w = V.reshape(w, (h,))
    gw = op(P.FMUL, Load(g.storage, g.index(("p", "j"))), Load(w.storage, w.index(("j",))))
    m, r, hc = Scalar("mean"), Scalar("rstd"), Const(float(h))
    s2 = op(P.FDIV, op(P.FMUL, op(P.FNEG, op(P.FMUL, op(P.FMUL, r, r), r)),
                       op(P.FNMA, m, Scalar("a"), Scalar("c"))), hc)
    s3 = op(P.FNMA, m, Scalar("s2"), op(P.FDIV, op(P.FNEG, op(P.FMUL, r, Scalar("a"))), hc))
    out = output_name(node, 0)
    phases = (Let("mean", Load(mean.storage, mean.index(("p",)))),
              Let("rstd", Load(rstd.storage, rstd.index(("p",)))),
              Reduce("j", h, "a", ZERO, op(P.FADD, Scalar("a"), gw)),
              Reduce("j", h, "c", ZERO, op(P.FMA, gw, Load(x.storage, x.index(("p", "j"))), Scalar("c"))),
              Let("s2", s2),
              Map(None, 1, out, Affine(0, (("p", 2),)), Scalar("s2")),
              Map(None, 1, out, Affine(1, (("p", 2),)), s3))
    return Kernel(node.name, node.op, ctx.buffers(node, [g, x, mean, rstd, w]), (("p", rows),), phases)


@register("isasim.layer_norm_backward_input.default")
def lower_layer_norm_backward_input(ctx: Context, node: Node):
    """dx = rstd g w + s2 x + s3"""
    g, x, rstd, w, terms = _f32(ctx, node, *node.args[:5])
    h = x.shape[-1]
    rows = int(np.prod(x.shape[:-1], dtype=np.int64))
    g, x, rstd = V.reshape(g, (rows, h)), V.reshape(x, (rows, h)), V.reshape(rstd, (rows,))
    w, terms = V.reshape(w, (h,)), V.reshape(terms, (rows, 2))
    if any(v is None for v in (g, x, rstd, w, terms)):
        raise unsupported(node, "a layer norm whose rows are not contiguous")
    at = ("p", "j")
    s2, s3 = (Load(terms.storage, Affine(terms.offset + k, (("p", terms.strides[0]),))) for k in range(2))
    gw = op(P.FMUL, Load(g.storage, g.index(at)), Load(w.storage, w.index(("j",))))
    value = op(P.FADD, op(P.FMA, s2, Load(x.storage, x.index(at)),
                          op(P.FMUL, Load(rstd.storage, rstd.index(("p",))), gw)), s3)
    out = ctx.out_view(node)
    out = V.View(out.storage, (rows, h), (h, 1), 0, DType.F32)
    return Kernel(node.name, node.op, ctx.buffers(node, [g, x, rstd, w, terms]), (("p", rows),),
                  (Map("j", h, out.storage, out.index(at), value),))


@register("isasim.layer_norm_backward_params.default")
def lower_layer_norm_backward_params(ctx: Context, node: Node):
    """dw_j = sum over rows of g xhat;  db_j = sum over rows of g  (a thread per column j)"""
    (g, x, mean, rstd), rows, h = _norm_views(ctx, node)
    gr = Load(g.storage, g.index(("r", "j")))
    xhat = op(P.FMUL, op(P.FSUB, Load(x.storage, x.index(("r", "j"))), Load(mean.storage, mean.index(("r",)))),
              Load(rstd.storage, rstd.index(("r",))))
    phases = (Reduce("r", rows, "dw", ZERO, op(P.FMA, gr, xhat, Scalar("dw"))),
              Reduce("r", rows, "db", ZERO, op(P.FADD, Scalar("db"), gr)),
              Map(None, 1, output_name(node, 0), Affine(0, (("j", 1),)), Scalar("dw")),
              Map(None, 1, output_name(node, 1), Affine(0, (("j", 1),)), Scalar("db")))
    return Kernel(node.name, node.op, ctx.buffers(node, [g, x, mean, rstd]), (("j", h),), phases)


# ---- elementwise --------------------------------------------------------------------------------------
@register("aten.tanh_backward.default")
def lower_tanh_backward(ctx: Context, node: Node):
    """g (1 - y^2)"""
    return elementwise_kernel(ctx, node, _f32(ctx, node, node.args[0], node.args[1]),
                              lambda g, y: op(P.FMUL, g[0], op(P.FNMA, y[0], y[0], Const(1.0))))


@register("aten.gelu_backward.default")
def lower_gelu_backward(ctx: Context, node: Node):
    """g (Phi(x) + x phi(x)): Phi(x) = (1 + erf(x / sqrt 2)) / 2, phi(x) = exp(-x^2 / 2) / sqrt(2 pi)"""
    if node.kwarg("approximate", "none") != "none":
        raise unsupported(node, "the tanh approximation's gradient")

    def fn(g, x):
        x = x[0]
        cdf = op(P.FMUL, op(P.FADD, Const(1.0), mathlib.erf(op(P.FMUL, x, Const(0.7071067811865476)))), Const(0.5))
        pdf = op(P.FMUL, mathlib.exp(op(P.FMUL, op(P.FMUL, x, x), Const(-0.5))), Const(0.3989422804014327))
        return op(P.FMUL, g[0], op(P.FMA, x, pdf, cdf))

    return elementwise_kernel(ctx, node, _f32(ctx, node, node.args[0], node.args[1]), fn)


@register("aten.lerp.Scalar")
def lower_lerp(ctx: Context, node: Node):
    """a + w (b - a) for |w| < 0.5, else b - (b - a)(1 - w): torch's two-sided formula (ATen Lerp.h)."""
    w = float(node.args[2])
    if abs(w) < 0.5:
        fn = lambda a, b: op(P.FMA, Const(w), op(P.FSUB, b[0], a[0]), a[0])  # noqa: E731
    else:
        fn = lambda a, b: op(P.FNMA, op(P.FSUB, b[0], a[0]), Const(1.0 - w), b[0])  # noqa: E731
    return elementwise_kernel(ctx, node, _f32(ctx, node, node.args[0], node.args[1]), fn)


@register("aten.select_backward.default")
def lower_select_backward(ctx: Context, node: Node):
    """A zero tensor of the input's shape with the gradient in slice `index` of dim `dim`."""
    (g,) = _f32(ctx, node, node.args[0])
    shape = node.out.shape
    dim, index = node.args[2] % len(shape), node.args[3] % shape[node.args[2] % len(shape)]
    dvars = tuple(f"d{k}" for k in range(len(shape)))
    gv = Load(g.storage, g.index(dvars[:dim] + dvars[dim + 1:]))
    value = op(P.FMUL, _equal(Index(dvars[dim]), Const(index, fp=False)), gv)
    out = ctx.out_view(node)
    return Kernel(node.name, node.op, ctx.buffers(node, [g]), tuple(zip(dvars[:-1], shape[:-1])),
                  (Map(dvars[-1], shape[-1], out.storage, out.index(dvars), value),))


# ---- the loss -----------------------------------------------------------------------------------------
def _nll_args(ctx: Context, node: Node, logits_at: int):
    x = ctx.view(node.args[logits_at])
    t = ctx.view(node.args[logits_at + 1])
    weight, reduction, ignore = node.args[logits_at + 2:logits_at + 5]
    if weight is not None or reduction not in (1, 2) or len(x.shape) != 2:
        raise unsupported(node, "class weights, reduction 'none' or inputs that are not [batch, classes]")
    return x, t, reduction == 1, int(ignore)


@register("aten.nll_loss_forward.default")
def lower_nll_loss(ctx: Context, node: Node):
    """loss = -sum_n x[n, t_n] over rows whose target is not ignored (/ their count for 'mean')"""
    x, t, mean, ignore = _nll_args(ctx, node, 0)
    tn = Load(t.storage, t.index(("n",)))
    keep = op(P.SETCC, op(P.ICMP_NE, tn, Const(ignore, fp=False)))  # read once, right after its compare
    safe = op(P.IMUL, tn, keep)  # an ignored row's target (-100) may be out of range: read column 0 instead
    picked = Load(x.storage, Affine(x.offset, (("n", x.strides[0]),), ((safe, x.strides[1]),)))
    flag = op(P.CVT_I2F, keep)
    phases = [Reduce("n", x.shape[0], "total", ZERO, op(P.FNMA, picked, flag, Scalar("total"))),
              Reduce("n", x.shape[0], "count", ZERO, op(P.FADD, Scalar("count"), flag))]
    loss = op(P.FDIV, Scalar("total"), Scalar("count")) if mean else Scalar("total")
    phases += [Map(None, 1, output_name(node, 0), Affine(0), loss),
               Map(None, 1, output_name(node, 1), Affine(0), Scalar("count"))]
    return Kernel(node.name, node.op, ctx.buffers(node, [x, t]), (), tuple(phases))


@register("aten.nll_loss_backward.default")
def lower_nll_loss_backward(ctx: Context, node: Node):
    """dx[n, c] = -g (/ total weight for 'mean') where c == t_n and t_n is not ignored, else 0"""
    g = ctx.view(node.args[0])
    x, t, mean, ignore = _nll_args(ctx, node, 1)
    total = ctx.view(node.args[6])
    tn = Load(t.storage, t.index(("n",)))
    scale = op(P.FNEG, Load(g.storage, Affine(g.offset)))
    if mean:
        scale = op(P.FDIV, scale, Load(total.storage, Affine(total.offset)))
    hit = op(P.FMUL, _equal(Index("c"), tn), _flag(op(P.ICMP_NE, tn, Const(ignore, fp=False))))
    out = ctx.out_view(node)
    return Kernel(node.name, node.op, ctx.buffers(node, [g, t, total]), (("n", x.shape[0]),),
                  (Map("c", x.shape[1], out.storage, out.index(("n", "c")), op(P.FMUL, hit, scale)),))


# ---- embeddings ---------------------------------------------------------------------------------------
@register("aten.embedding_dense_backward.default")
def lower_embedding_backward(ctx: Context, node: Node):
    """table = 0; for each token t in order: table[id_t] += g_t (rows of padding_idx stay 0)"""
    (g,) = _f32(ctx, node, node.args[0])
    ids = ctx.view(node.args[1])
    vocab, pad, by_freq = int(node.args[2]), int(node.args[3]), bool(node.args[4])
    if by_freq:
        raise unsupported(node, "scale_grad_by_freq")
    h = g.shape[-1]
    tokens = int(np.prod(ids.shape, dtype=np.int64))
    g, ids = V.reshape(g, (tokens, h)), V.reshape(ids, (tokens,))
    if g is None or ids is None:
        raise unsupported(node, "gradients whose token rows no single stride walks")
    out = ctx.out_view(node)
    idt = Load(ids.storage, ids.index(("t",)))
    row = Affine(0, (("h", 1),), ((idt, h),))
    grad = Load(g.storage, g.index(("t", "h")))
    if pad >= 0:
        grad = op(P.FMUL, grad, _flag(op(P.ICMP_NE, idt, Const(pad, fp=False))))
    phases = (Map("v", vocab, out.storage, out.index(("v", "h")), ZERO),
              Map("t", tokens, out.storage, row, op(P.FADD, Load(out.storage, row), grad)))
    return Kernel(node.name, node.op, ctx.buffers(node, [g, ids]), (("h", h),), phases)

