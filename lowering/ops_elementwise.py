"""Elementwise lowerings: one output element per iteration, inputs broadcast as torch broadcasts them.

The output is walked in row-major order: parallel loops over all dims but the last, and a map loop over the
last. Integer and bool tensors (BERT's attention-mask arithmetic) use the integer register file.
"""

from __future__ import annotations

from typing import Callable

from isasim.isa.semantics import Prim as P
from isasim.lowering import mathlib
from isasim.lowering.kernel import Const, Expr, Index, Kernel, Load, Map, op
from isasim.lowering.registry import Context, register, unsupported
from isasim.lowering.views import View
from isasim.isa.dtype import DType
from isasim.models.graph import Node, Ref

Typed = tuple[Expr, DType]


def loop_vars(ndim: int, prefix: str = "d") -> tuple[str, ...]:
    return tuple(f"{prefix}{k}" for k in range(ndim))


def convert(e: Expr, src: DType, dst: DType) -> Expr:
    """Value conversion as torch's .to(dtype) does it."""
    if src is dst or (src is DType.BOOL and dst is DType.I64):
        return e
    if dst is DType.F32:
        return op(P.CVT_I2F, e)
    if dst is DType.I64:
        return op(P.CVT_F2I, e)
    zero = Const(0.0) if src is DType.F32 else Const(0, fp=False)
    return op(P.SETCC, op(P.FCMP_NE if src is DType.F32 else P.ICMP_NE, e, zero))


def scalar(value) -> Typed:
    if isinstance(value, bool):
        return Const(int(value), fp=False), DType.BOOL
    if isinstance(value, int):
        return Const(value, fp=False), DType.I64
    return Const(float(value)), DType.F32


def elementwise_kernel(ctx: Context, node: Node, inputs: list, fn: Callable[..., Expr]) -> Kernel:
    """out = fn(*typed inputs) for every output element; inputs are Views or Python numbers."""
    shape = node.out.shape
    dvars = loop_vars(len(shape))
    views = [x for x in inputs if isinstance(x, View)]
    typed: list[Typed] = []
    for x in inputs:
        if isinstance(x, View):
            b = x.broadcast_to(shape)
            typed.append((Load(b.storage, b.index(dvars)), b.dtype))
        else:
            typed.append(scalar(x))
    value = fn(*typed)
    out = ctx.out_view(node)
    inner = (dvars[-1], shape[-1]) if shape else (None, 1)
    phase = Map(inner[0], inner[1], out.storage, out.index(dvars), value)
    parallel = tuple(zip(dvars[:-1], shape[:-1]))
    return Kernel(node.name, node.op, ctx.buffers(node, views), parallel, (phase,))


def _tensor_or_scalar(ctx: Context, a):
    return ctx.view(a) if isinstance(a, Ref) else a


def copy_kernel(ctx: Context, node: Node) -> Kernel:
    """A copy into a fresh contiguous tensor, converting the dtype when the node's output asks."""
    out_dtype = node.out.dtype
    return elementwise_kernel(ctx, node, [ctx.view(node.args[0])], lambda x: convert(x[0], x[1], out_dtype))


@register("aten.clone.default", "aten._to_copy.default", "aten.lift_fresh_copy.default")
def lower_copy(ctx: Context, node: Node):
    return copy_kernel(ctx, node)


@register("isasim.all_reduce.default")
def lower_all_reduce(ctx: Context, node: Node):
    """One GPU's partial sum, copied into the buffer where the GPUs' sum lands (models/tensor_parallel.py): the
    lockstep run adds the GPUs' copies there, and the trace costs the step as link time, not as this copy
    (engine/tensor_parallel_training.py)."""
    return copy_kernel(ctx, node)


_FLOAT_BINARY = {"add": P.FADD, "sub": P.FSUB, "mul": P.FMUL, "div": P.FDIV}
_INT_BINARY = {"add": P.IADD, "sub": P.ISUB, "mul": P.IMUL, "bitwise_and": P.IAND, "__and__": P.IAND}


@register("aten.add.Tensor", "aten.sub.Tensor", "aten.mul.Tensor", "aten.div.Tensor", "aten.add.Scalar",
          "aten.mul.Scalar", "aten.sub.Scalar", "aten.div.Scalar", "aten.bitwise_and.Tensor",
          "aten.__and__.Tensor")
def lower_binary(ctx: Context, node: Node):
    name = node.op.split(".")[1]
    out = node.out.dtype
    alpha = node.kwarg("alpha", 1)
    if node.op.endswith(".div.Tensor") and node.kwarg("rounding_mode") is not None:
        raise unsupported(node, "div with a rounding mode")
    table = _FLOAT_BINARY if out is DType.F32 else _INT_BINARY
    if name not in table:
        raise unsupported(node, f"{name} on {out.value}")
    prim = table[name]

    def fn(a: Typed, b: Typed) -> Expr:
        x, y = convert(a[0], a[1], out), convert(b[0], b[1], out)
        if alpha != 1:
            y = op(P.FMUL if out is DType.F32 else P.IMUL, y, scalar(alpha)[0] if out is not DType.F32
                   else Const(float(alpha)))
        return op(prim, x, y)

    return elementwise_kernel(ctx, node, [_tensor_or_scalar(ctx, a) for a in node.args[:2]], fn)


@register("aten.ge.Scalar", "aten.ge.Tensor", "aten.lt.Scalar", "aten.lt.Tensor", "aten.ne.Scalar",
          "aten.ne.Tensor")
def lower_compare(ctx: Context, node: Node):
    kind = node.op.split(".")[1]

    def fn(a: Typed, b: Typed) -> Expr:
        fp = DType.F32 in (a[1], b[1])
        common = DType.F32 if fp else DType.I64
        x, y = convert(a[0], a[1], common), convert(b[0], b[1], common)
        prim = {("ge", False): P.ICMP_GE, ("lt", True): P.FCMP_LT, ("ne", True): P.FCMP_NE,
                ("ne", False): P.ICMP_NE}.get((kind, fp))
        if prim is None:
            raise unsupported(node, f"{kind} on {common.value}")
        return op(P.SETCC, op(prim, x, y))

    return elementwise_kernel(ctx, node, [_tensor_or_scalar(ctx, a) for a in node.args[:2]], fn)


@register("aten.where.self", "aten.where.ScalarOther", "aten.where.ScalarSelf", "aten.where.Scalar")
def lower_where(ctx: Context, node: Node):
    out = node.out.dtype

    def fn(c: Typed, a: Typed, b: Typed) -> Expr:
        # a float select needs a float compare (x86 blends on an xmm mask, not on flags)
        if out is DType.F32:
            cond = op(P.FCMP_NE, convert(c[0], c[1], DType.F32), Const(0.0))
        else:
            cond = op(P.ICMP_NE, convert(c[0], c[1], DType.I64), Const(0, fp=False))
        return op(P.SELECT, cond, convert(a[0], a[1], out), convert(b[0], b[1], out))

    return elementwise_kernel(ctx, node, [_tensor_or_scalar(ctx, a) for a in node.args[:3]], fn)


def _unary(fn_f32: Callable[[Expr], Expr]):
    def lower(ctx: Context, node: Node):
        if node.out.dtype is not DType.F32:
            raise unsupported(node, f"on {node.out.dtype.value}")
        return elementwise_kernel(ctx, node, [ctx.view(node.args[0])],
                                  lambda x: fn_f32(convert(x[0], x[1], DType.F32)))
    return lower


def _gelu_tanh(x: Expr) -> Expr:
    """gelu(approximate='tanh'): 0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3)))."""
    inner = op(P.FMUL, op(P.FMA, op(P.FMUL, op(P.FMUL, x, x), x), Const(0.044715), x), Const(0.7978845608028654))
    return op(P.FMUL, op(P.FMUL, x, Const(0.5)), op(P.FADD, Const(1.0), mathlib.tanh(inner)))


@register("aten.gelu.default")
def lower_gelu(ctx: Context, node: Node):
    approx = node.kwarg("approximate", node.args[1] if len(node.args) > 1 else "none")
    return _unary(_gelu_tanh if approx == "tanh" else mathlib.gelu)(ctx, node)


register("aten.tanh.default")(_unary(mathlib.tanh))
register("aten.exp.default")(_unary(mathlib.exp))
register("aten.erf.default")(_unary(mathlib.erf))
register("aten.rsqrt.default")(_unary(mathlib.rsqrt))
register("aten.sqrt.default")(_unary(lambda x: op(P.FSQRT, x)))
register("aten.neg.default")(_unary(lambda x: op(P.FNEG, x)))
register("aten.relu.default")(_unary(lambda x: op(P.FMAX, x, Const(0.0))))


def _fill(ctx: Context, node: Node, value) -> Kernel:
    out = node.out.dtype
    return elementwise_kernel(ctx, node, [value], lambda v: convert(v[0], v[1], out))


@register("aten.full.default", "aten.new_full.default")
def lower_full(ctx: Context, node: Node):
    return _fill(ctx, node, node.args[-1] if node.op == "aten.full.default" else node.args[2])


@register("aten.scalar_tensor.default")
def lower_scalar_tensor(ctx: Context, node: Node):
    return _fill(ctx, node, node.args[0])


@register("aten.zeros.default", "aten.new_zeros.default", "aten.zeros_like.default")
def lower_zeros(ctx: Context, node: Node):
    return _fill(ctx, node, 0)


@register("aten.ones.default", "aten.new_ones.default", "aten.ones_like.default")
def lower_ones(ctx: Context, node: Node):
    return _fill(ctx, node, 1)


@register("aten.arange.default", "aten.arange.start", "aten.arange.start_step")
def lower_arange(ctx: Context, node: Node):
    args = [a for a in node.args if not isinstance(a, Ref)]
    start, step = (0, 1) if len(args) == 1 else (args[0], args[2] if len(args) > 2 else 1)
    out = node.out.dtype
    if out is not DType.I64:
        raise unsupported(node, f"arange of {out.value}")
    (d,) = loop_vars(1)
    value = op(P.IADD, op(P.IMUL, Index(d), Const(int(step), fp=False)), Const(int(start), fp=False))
    view = ctx.out_view(node)
    return Kernel(node.name, node.op, ctx.buffers(node, []), (),
                  (Map(d, node.out.shape[0], view.storage, view.index((d,)), value),))
