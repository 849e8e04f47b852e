"""The loop-nest kernel IR: what every op lowers to once, before any target is chosen.

A kernel is a perfect nest of independent ("parallel") loops over output points; inside it, a sequence of
phases runs per point: a reduction loop that carries an accumulator, a scalar definition, or a map loop that
stores a row of outputs. That one shape covers GEMMs (reduce over k, store), row-wise norms and softmax
(reduce, reduce, map), and elementwise ops (map). Expressions are trees of primitive operations whose
semantics live in `isasim.isa.semantics`; transcendental functions are expanded into primitives by
`lowering.mathlib` so every target runs the same algorithm.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Union

from isasim.isa.semantics import RESULT_IS_FP, Prim
from isasim.isa.dtype import DType


@dataclass(frozen=True)
class Affine:
    """An element index: offset + sum(coef * loop variable) + sum(coef * dynamic integer value)."""

    offset: int
    terms: tuple[tuple[str, int], ...] = ()
    dynamic: tuple[tuple["Expr", int], ...] = ()  # gathers: (integer expression, element stride)

    def coef(self, var: str) -> int:
        return sum(c for v, c in self.terms if v == var)


@dataclass(frozen=True)
class Load:
    buf: str
    index: Affine


@dataclass(frozen=True)
class Const:
    value: float | int
    fp: bool = True


@dataclass(frozen=True)
class Scalar:
    """A per-point value defined by an earlier Reduce or Let phase."""

    name: str


@dataclass(frozen=True)
class Index:
    """The current iteration number (0-based, int64) of loop variable `var` — for arange and friends."""

    var: str


@dataclass(frozen=True)
class Op:
    prim: Prim
    args: tuple["Expr", ...]


Expr = Union[Load, Const, Scalar, Index, Op]


def op(prim: Prim, *args: Expr) -> Op:
    return Op(prim, tuple(args))


@dataclass(frozen=True)
class Reduce:
    """acc = init; for var in range(extent): acc = update  (update reads Scalar(acc)).

    `store`, if given, is a Map over the same variable fused into the loop: softmax stores exp(x - max) in the
    pass that sums it, as torch's kernel does, instead of computing the exponentials twice.
    """

    var: str
    extent: int
    acc: str
    init: Expr
    update: Expr
    store: "Map | None" = None


@dataclass(frozen=True)
class Let:
    name: str
    value: Expr


@dataclass(frozen=True)
class Map:
    """Store value at buf[index] for var in range(extent); var None means one store per point."""

    var: str | None
    extent: int
    buf: str
    index: Affine
    value: Expr


Phase = Union[Reduce, Let, Map]


@dataclass(frozen=True)
class Buffer:
    name: str
    size: int  # elements
    dtype: DType
    is_output: bool = False


@dataclass(frozen=True)
class Kernel:
    name: str  # the graph node this kernel computes
    op: str
    buffers: tuple[Buffer, ...]
    parallel: tuple[tuple[str, int], ...]
    phases: tuple[Phase, ...]
    flops: int = 0  # matrix-multiply FLOPs as torch's FlopCounterMode counts them (2 per multiply-add)

    def buffer(self, name: str) -> Buffer:
        for b in self.buffers:
            if b.name == name:
                return b
        raise KeyError(name)

    @property
    def points(self) -> int:
        n = 1
        for _, e in self.parallel:
            n *= e
        return n


def is_fp(expr: Expr, kernel: Kernel, scalars: dict[str, bool]) -> bool | None:
    """True for a float32 value, False for an integer, None for a predicate."""
    if isinstance(expr, Load):  # (an fp16 storage's elements are float32 values once loaded)
        return kernel.buffer(expr.buf).dtype in (DType.F32, DType.F16)
    if isinstance(expr, Const):
        return expr.fp
    if isinstance(expr, Scalar):
        return scalars[expr.name]
    if isinstance(expr, Index):
        return False
    if expr.prim is Prim.SELECT:
        return is_fp(expr.args[1], kernel, scalars)
    return RESULT_IS_FP[expr.prim]


def verify(kernel: Kernel) -> None:
    """Check that every variable, buffer and scalar a kernel uses is defined where it is used."""
    names = {b.name for b in kernel.buffers}
    outer = {v for v, _ in kernel.parallel}
    defined: set[str] = set()

    def check(e: Expr, loop_vars: set[str]) -> None:
        if isinstance(e, Load):
            if e.buf not in names:
                raise ValueError(f"{kernel.name}: load from undeclared buffer {e.buf}")
            check_index(e.index, loop_vars)
        elif isinstance(e, Index):
            if e.var not in loop_vars:
                raise ValueError(f"{kernel.name}: index of unknown loop variable {e.var}")
        elif isinstance(e, Scalar):
            if e.name not in defined:
                raise ValueError(f"{kernel.name}: scalar {e.name} used before it is defined")
        elif isinstance(e, Op):
            for a in e.args:
                check(a, loop_vars)

    def check_index(ix: Affine, loop_vars: set[str]) -> None:
        for v, _ in ix.terms:
            if v not in loop_vars:
                raise ValueError(f"{kernel.name}: index uses unknown loop variable {v}")
        for d, _ in ix.dynamic:
            check(d, loop_vars)

    for ph in kernel.phases:
        if isinstance(ph, Reduce):
            check(ph.init, outer)
            defined.add(ph.acc)
            check(ph.update, outer | {ph.var})
            if ph.store is not None:
                if ph.store.var != ph.var or not kernel.buffer(ph.store.buf).is_output:
                    raise ValueError(f"{kernel.name}: a fused store must walk the reduction into an output")
                check_index(ph.store.index, outer | {ph.var})
                check(ph.store.value, outer | {ph.var})
        elif isinstance(ph, Let):
            check(ph.value, outer)
            defined.add(ph.name)
        else:
            inner = outer | ({ph.var} if ph.var else set())
            if ph.buf not in names or not kernel.buffer(ph.buf).is_output:
                raise ValueError(f"{kernel.name}: store to {ph.buf}, which is not an output buffer")
            check_index(ph.index, inner)
            check(ph.value, inner)


def reindexed(e: Expr, ix) -> Expr:
    """The expression with `ix` (Affine -> Affine) applied to the index of every load in it."""
    if isinstance(e, Load):
        return Load(e.buf, ix(e.index))
    if isinstance(e, Op):
        return Op(e.prim, tuple(reindexed(a, ix) for a in e.args))
    return e


def reindexed_map(m: Map, ix) -> Map:
    """The map with `ix` applied to the index of its store and of every load in its value."""
    return Map(m.var, m.extent, m.buf, ix(m.index), reindexed(m.value, ix))


def canonical(kernel: Kernel) -> Kernel:
    """The kernel with its buffers renamed by position and its name dropped: kernels that differ only in
    which tensors they read (the same op in every layer) become equal, so their costs can be shared."""
    names = {b.name: f"buf{i}" for i, b in enumerate(kernel.buffers)}

    def ix(a: Affine) -> Affine:
        return Affine(a.offset, a.terms, tuple((ex(d), c) for d, c in a.dynamic))

    def ex(e: Expr) -> Expr:
        if isinstance(e, Load):
            return Load(names[e.buf], ix(e.index))
        if isinstance(e, Op):
            return Op(e.prim, tuple(ex(a) for a in e.args))
        return e

    def ph(p: Phase) -> Phase:
        if isinstance(p, Reduce):
            return Reduce(p.var, p.extent, p.acc, ex(p.init), ex(p.update), p.store and ph(p.store))
        if isinstance(p, Let):
            return Let(p.name, ex(p.value))
        return Map(p.var, p.extent, names[p.buf], ix(p.index), ex(p.value))

    buffers = tuple(Buffer(names[b.name], b.size, b.dtype, b.is_output) for b in kernel.buffers)
    return Kernel("", kernel.op, buffers, kernel.parallel, tuple(ph(p) for p in kernel.phases), kernel.flops)
