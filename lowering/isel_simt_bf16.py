"""`isasim.round_bf16` (models/bf16.py) on the GPU: a thread per pair of neighbouring elements, which
`cvt.rn.bf16x2.f32` rounds to bf16 (nearest even, denormals kept) and packs into one 32-bit register, stored
with one `st.global.b32`: the instruction's form, and half the threads and stores of a thread per element,
whose 16-bit result PTX would need a .b16 register and store for. The kernel is rewritten over pairs here and
then lowered as any elementwise one (lowering/isel_simt.py `select_points`)."""

from __future__ import annotations

from dataclasses import replace

from isasim.isa.program import Program
from isasim.isa.semantics import Prim
from isasim.lowering.kernel import Affine, Kernel, Load, Map, Op


def _doubled(index: Affine, var: str, offset: int = 0) -> Affine:
    """The index with `var` stepping two elements, moved by `offset` elements."""
    return Affine(index.offset + offset, tuple((v, 2 * c if v == var else c) for v, c in index.terms),
                  index.dynamic)


def round_pairs(kernel: Kernel) -> Kernel:
    """ops_bf16's rounding kernel (one Map of CVT_BF16 along its contiguous innermost loop) over pairs:
    element 2j + 1 into the high half, 2j into the low, as cvt.rn.bf16x2.f32 d, hi, lo packs them."""
    (ph,) = kernel.phases
    assert isinstance(ph, Map) and isinstance(ph.value, Op) and ph.value.prim is Prim.CVT_BF16, kernel.name
    (x,) = ph.value.args
    assert isinstance(x, Load) and x.index.coef(ph.var) == 1 and ph.index.coef(ph.var) == 1 \
        and ph.extent % 2 == 0, kernel.name
    value = Op(Prim.CVT_BF16X2, (Load(x.buf, _doubled(x.index, ph.var, 1)), Load(x.buf, _doubled(x.index, ph.var))))
    return replace(kernel, phases=(Map(ph.var, ph.extent // 2, ph.buf, _doubled(ph.index, ph.var), value),))


def named_pairs(prog: Program) -> Program:
    """The program's launch described as what it is: a thread per pair."""
    strategy = prog.launch.strategy.replace("thread per element", "thread per pair of elements")
    return replace(prog, launch=replace(prog.launch, strategy=strategy))
