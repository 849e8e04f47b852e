"""A thread per pair of neighbouring 16-bit elements, for the GPU: two elements read and computed, and stored
together as one 32-bit word (cvt.rn.f16x2.f32 or cvt.rn.bf16x2.f32 rounds both and packs them), as CUDA's
half2 kernels do. A thread per element would store 16 bits at a time (st.global.u16) and work out its
element's coordinates, and pointers, for each element; a pair shares them, and a warp's stores cover 128
contiguous bytes. The kernel is rewritten over pairs here and then lowered as any elementwise one
(lowering/isel_simt.py `select_points`).

- `isasim.round_bf16` (models/bf16.py): each float32 rounded to bf16 (nearest even, denormals kept).
- --precision fp16: every elementwise op whose output is stored in fp16 (models/fp16.py), where its innermost
  loop walks the output contiguously over an even extent. Each element is computed in float32, as a thread per
  element computes it, so the bits are the same; only the final rounding packs two (except as below).
- Paired arithmetic, where it gives those same bits: an op that is one add, subtract or multiply of fp16
  elements (or of an fp16 constant), or a copy, runs on both halves of a 32-bit register at once
  (add.rn.f16x2, sub.rn.f16x2, mul.rn.f16x2), as CUDA's __hadd2 and friends do, with no conversion at all.
  Rounding the exact result to fp16 once is what PyTorch's float32 arithmetic followed by its rounding to
  fp16 gives too (isa/semantics.py `_half2`: double rounding through float32 is innocuous for these three).
  A chain of operations is not paired: PyTorch rounds only its final result, and .f16x2 would round each
  step. Neighbouring elements come in one 32-bit load, an element both halves share (a broadcast) in one
  16-bit load spread by prmt.b32, and a constant as one mov.b32.
"""

from __future__ import annotations

from dataclasses import replace

from isasim.isa.dtype import DType
from isasim.isa.program import Program
from isasim.isa.semantics import Prim
import numpy as np

from isasim.lowering.kernel import Affine, Const, Index, Kernel, Load, Map, Op


def _doubled(index: Affine, var: str, shift: int = 0) -> Affine:
    """The index with `var` stepping two elements, at the pair's first element (shift 0) or second (1)."""
    c = index.coef(var)
    return Affine(index.offset + shift * c, tuple((v, 2 * k if v == var else k) for v, k in index.terms),
                  index.dynamic)


def _at(e, var: str, shift: int):
    """The expression for the pair's first (shift 0) or second (1) element."""
    if isinstance(e, Load):
        return Load(e.buf, _doubled(e.index, var, shift))
    if isinstance(e, Op):
        return Op(e.prim, tuple(_at(a, var, shift) for a in e.args))
    return e


def round_pairs(kernel: Kernel) -> Kernel:
    """ops_bf16's rounding kernel (one Map of CVT_BF16 along its contiguous innermost loop) over pairs:
    element 2j + 1 into the high half, 2j into the low, as cvt.rn.bf16x2.f32 d, hi, lo packs them."""
    (ph,) = kernel.phases
    assert isinstance(ph, Map) and isinstance(ph.value, Op) and ph.value.prim is Prim.CVT_BF16, kernel.name
    (x,) = ph.value.args
    assert isinstance(x, Load) and x.index.coef(ph.var) == 1 and ph.index.coef(ph.var) == 1 \
        and ph.extent % 2 == 0, kernel.name
    value = Op(Prim.CVT_BF16X2, (_at(x, ph.var, 1), _at(x, ph.var, 0)))
    return replace(kernel, phases=(Map(ph.var, ph.extent // 2, ph.buf, _doubled(ph.index, ph.var), value),))


def _plain(e) -> bool:
    """No element index in the arithmetic and no gather: its pair is the same expression at the next element."""
    if isinstance(e, Index):
        return False
    if isinstance(e, Load):
        return not e.index.dynamic
    return not isinstance(e, Op) or all(_plain(a) for a in e.args)


def half_pairs(kernel: Kernel) -> Kernel | None:
    """An fp16-output elementwise kernel over pairs (the module's docstring), or None where it is not one:
    a single Map along a loop of even extent that walks the output contiguously, each pair 4-byte aligned."""
    if len(kernel.phases) != 1 or not isinstance(kernel.phases[0], Map):
        return None
    ph = kernel.phases[0]
    if ph.var is None or ph.extent % 2 or kernel.buffer(ph.buf).dtype is not DType.F16:
        return None
    aligned = ph.index.offset % 2 == 0 and all(c % 2 == 0 for v, c in ph.index.terms if v != ph.var)
    if ph.index.coef(ph.var) != 1 or not aligned or ph.index.dynamic or not _plain(ph.value):
        return None
    value = paired_arithmetic(kernel, ph.value, ph.var) \
        or Op(Prim.CVT_F16X2, (_at(ph.value, ph.var, 1), _at(ph.value, ph.var, 0)))
    return replace(kernel, phases=(Map(ph.var, ph.extent // 2, ph.buf, _doubled(ph.index, ph.var), value),))


_PAIRED = {Prim.FADD: Prim.HADD2, Prim.FSUB: Prim.HSUB2, Prim.FMUL: Prim.HMUL2}


def _halves(kernel: Kernel, e, var: str) -> Op | None:
    """An operand as one .f16x2 register (Prim.PACK_H2 of its pair's two elements), or None where it cannot be:
    an fp16 element that steps with `var` from an even element (so its pair is one aligned 32-bit word), an fp16
    element the pair shares, or a constant that fp16 holds exactly."""
    if isinstance(e, Const):
        exact = e.fp and abs(e.value) <= 65504 and float(np.float16(e.value)) == e.value  # (fp16's largest)
        return Op(Prim.PACK_H2, (e, e)) if exact else None
    if not isinstance(e, Load) or e.index.dynamic or kernel.buffer(e.buf).dtype is not DType.F16:
        return None
    step = e.index.coef(var)
    even = e.index.offset % 2 == 0 and all(c % 2 == 0 for v, c in e.index.terms if v != var)
    if step == 0 or (step == 1 and even):
        return Op(Prim.PACK_H2, (_at(e, var, 0), _at(e, var, 1)))
    return None


def paired_arithmetic(kernel: Kernel, value, var: str) -> Op | None:
    """The pair's value computed on .f16x2 registers (the module's docstring), or None where that would not give
    the same bits: a copy of fp16 elements, or one add, subtract or multiply of two such operands."""
    if isinstance(value, Load):
        return _halves(kernel, value, var)
    if not isinstance(value, Op) or value.prim not in _PAIRED:
        return None
    args = [_halves(kernel, a, var) for a in value.args]
    return Op(_PAIRED[value.prim], tuple(args)) if all(args) else None


def named_pairs(prog: Program) -> Program:
    """The program's launch described as what it is: a thread per pair."""
    strategy = prog.launch.strategy.replace("thread per element", "thread per pair of elements")
    return replace(prog, launch=replace(prog.launch, strategy=strategy))
