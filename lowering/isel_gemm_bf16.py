"""bf16 GEMMs on SIMD targets: the linear layers of bf16 inference (lowering/ops_bf16.py) as register-blocked
outer products on the bf16 dot-product instructions.

The weight is packed [K/2, N, 2] (models/bf16.py), so one vector register of B holds two consecutive k of
`lanes` consecutive outputs, and one 32-bit broadcast of A holds the matching two k of one row: the int8
kernel's shape (lowering/isel_gemm_int8.py) with pairs instead of quads. Each k step of two folds every
(broadcast, B vector) pair into its float32 accumulator with `vdpbf16ps acc, a, b` (AVX512-BF16) or
`bfdot acc.4s, a.8h, b.8h` (Arm BF16). The block's epilogue is the float GEMM's: the bias added, the block
stored (lowering/isel_gemm.py). The accumulators add k in order, so the sums are the numpy reference's
(models/bf16.py `linear_bf16`) bit for bit.
"""

from __future__ import annotations

from isasim.isa.dtype import F32_BYTES, DType
from isasim.isa.program import Instr, Item, Reg
from isasim.isa.semantics import Prim
from isasim.lowering.isel import nest
from isasim.lowering.isel_gemm import MicroKernel
from isasim.lowering.isel_gemm_int8 import packed_block, packed_loops
from isasim.lowering.isel_vector import VectorSelector
from isasim.lowering.kernel import Kernel, Load, Map, Op, Reduce, Scalar

BF16_BYTES = DType.BF16.itemsize


def linear_parts(kernel: Kernel):
    """(reduce, store, a, b, bias or None) of ops_bf16's linear, else None."""
    if len(kernel.phases) != 2:
        return None
    red, st = kernel.phases
    if not (isinstance(red, Reduce) and isinstance(st, Map) and st.var is None and isinstance(red.update, Op)
            and red.update.prim is Prim.DPBF16 and red.update.args[2] == Scalar(red.acc)):
        return None
    a, b = red.update.args[:2]
    v = st.value
    if v == Scalar(red.acc):
        return red, st, a, b, None
    if isinstance(v, Op) and v.prim is Prim.FADD and v.args[0] == Scalar(red.acc) and isinstance(v.args[1], Load):
        return red, st, a, b, v.args[1]
    return None


def select_gemm_bf16(sel: VectorSelector, kernel: Kernel, parallel) -> list[Item] | None:
    parts = linear_parts(kernel)
    extents = dict(kernel.parallel)
    if parts is None or sel.vec.bf16_dot is None or "m" not in extents or "n" not in extents:
        return None
    red, st, a, b, bias = parts
    L = sel.lanes
    M, N = extents["m"], extents["n"]
    if not (b.index.coef("n") == 2 and a.index.coef("n") == 0 and st.index.coef("n") == 1 and N % L == 0
            and (bias is None or bias.index.coef("n") == 1)):
        return None
    cols = N // L
    mr, nr = packed_block(sel, M, cols)
    loops, pvars, index = packed_loops(sel, parallel, red, M, cols, mr, nr)

    def blocked(ld: Load) -> Load:
        return Load(ld.buf, index(ld.index))

    OUT = Map(None, 1, st.buf, index(st.index), st.value)
    g = _Bf16MicroKernel(sel, mr, nr, red.var, red.extent, pvars, blocked(a), blocked(b), OUT, bias and blocked(bias),
                         a.index.coef("m") * BF16_BYTES, L * F32_BYTES)
    return nest(sel, loops, g.outer_product())


class _Bf16MicroKernel(MicroKernel):
    def fma(self, acc: Reg, x: Reg, y: Reg, code: list, lanes: int) -> None:
        """acc += the dot products of x's broadcast bf16 pair and y's lanes, rounded as the ISA rounds."""
        s = self.s
        prim = Prim.BFDOT if s.vec.bf16_dot == "bfdot" else Prim.DPBF16
        code.append(Instr(s.vop(prim), prim, acc, (x, y, acc), lanes=lanes))
