"""int8 GEMMs on SIMD targets: the linear layers of int8 inference (lowering/ops_quant.py) as register-blocked
outer products on the vector dot-product instructions.

The weight is packed [K/4, N, 4] (models/quantize.py), so one vector register of B holds four consecutive k
of `lanes` consecutive outputs, and one 32-bit broadcast of A holds the matching four k of one row. Each k
step of four loads NR vectors of B, broadcasts MR words of A, and folds each pair into its int32 accumulator:
- "vnni": `vpdpbusd acc, a, b` (AVX512-VNNI; `{vex} vpdpbusd` on ymm where an AVX2 core has AVX-VNNI), as
  oneDNN's and fbgemm's VNNI kernels do;
- "maddubs": `vpmaddubsw t, a, b` (unsigned by signed bytes into int16 pairs), `vpmaddwd t, t, ones` (pairs
  into int32), `vpaddd acc, acc, t`: AVX2's sequence, exact here because 7-bit activations cannot saturate
  the int16 sums (fbgemm's reduce_range);
- "sdot": AArch64's `sdot acc.4s, b.16b, a.16b` (dot product extension).
The epilogue dequantizes each accumulator vector in float32 with the per-channel table (vcvtdq2ps / scvtf,
then two fused multiply-adds) and stores it: no horizontal sums, since lanes run along n.

The block is the largest MR <= 6, NR <= 6 dividing the output whose accumulators, B vectors, broadcast (and
for maddubs, the ones vector and a temporary) fit the register file, and whose accumulators leave room for the
epilogue's operands; panels of B and the loop order are as for float GEMMs (lowering/isel_gemm.py), with a
quarter of the bytes per element.
"""

from __future__ import annotations

from isasim.isa.dtype import F32_BYTES, DType
from isasim.isa.program import Instr, Item, Mem, Reg
from isasim.isa.semantics import Prim
from isasim.lowering.isel import nest
from isasim.lowering.isel_gemm import MAX_MR, MAX_NR, blocked_index, MicroKernel, panel_blocks
from isasim.lowering.isel_vector import VectorSelector
from isasim.lowering.kernel import Kernel, Load, Map, Op, Reduce, Scalar

ONES_16 = 0x00010001  # two int16 ones in a 32-bit lane: vpmaddwd by it adds the pairs


def linear_parts(kernel: Kernel):
    """(reduce, store, a, b, table loads by row, params loads (scale, zp)) of ops_quant's int8 linear."""
    if len(kernel.phases) != 2:
        return None
    red, st = kernel.phases
    if not (isinstance(red, Reduce) and isinstance(st, Map) and st.var is None and isinstance(red.update, Op)
            and red.update.prim is Prim.DOT4 and red.update.args[2] == Scalar(red.acc)):
        return None
    a, b = red.update.args[:2]
    v = st.value  # FMA(CVT_I2F(acc), FMUL(scale, row0), FNMA(FMUL(zp, scale), row1, row2))
    try:
        cvt, sw, shift = v.args
        scale, row0 = sw.args
        zs, row1, row2 = shift.args
        zp, scale2 = zs.args
    except (AttributeError, ValueError):
        return None
    if not (v.prim is Prim.FMA and cvt.prim is Prim.CVT_I2F and cvt.args[0] == Scalar(red.acc)
            and sw.prim is Prim.FMUL and shift.prim is Prim.FNMA and zs.prim is Prim.FMUL and scale == scale2):
        return None
    return red, st, a, b, (row0, row1, row2), (scale, zp)


EPILOGUE_REGS = 6  # live beside the accumulators while a column is dequantized: scale, zp * scale, the table's
#                   three rows, and scale * w_scale as it replaces the first


def packed_block(sel: VectorSelector, M: int, cols: int, spare: int = 0, epilogue: int = 0) -> tuple[int, int]:
    """(MR, NR) of an outer product on a packed weight (int8, bf16): the most accumulators dividing the output
    that fit the registers with NR vectors of B, one broadcast, one spare and `spare` more, and leave
    `epilogue` registers beside them."""
    regs = len(sel.target.registers.fp)
    room = regs - 1 - spare
    best = (1, 1)
    for mr in range(1, MAX_MR + 1):
        for nr in range(1, MAX_NR + 1):
            if M % mr or cols % nr or mr * nr + nr + 1 > room or mr * nr + epilogue > regs:
                continue
            if (mr * nr, -(mr + nr)) > (best[0] * best[1], -sum(best)):
                best = (mr, nr)
    return best


def packed_loops(sel: VectorSelector, parallel, red: Reduce, M: int, cols: int, mr: int, nr: int):
    """(loops, their variables, the blocked index of an operand) of an outer product on a weight packed
    [K/g, N, g], four bytes per k group and output: panels of B within the target's panel budget, row blocks
    of MR, column blocks of NR vectors (as float GEMMs, lowering/isel_gemm.py)."""
    nstep = nr * sel.lanes
    blocks = cols // nr
    per = panel_blocks(blocks, 4 * red.extent * nstep, sel.vec.panel_bytes)
    bvars = tuple((v, e) for v, e in parallel if v not in ("m", "n"))
    order = (("nP", blocks // per), ("m0", M // mr), ("n0", per))
    loops = bvars + tuple((v, e) for v, e in order if e > 1)
    sel.trips.update(dict(loops))
    sel.trips[red.var] = red.extent
    return loops, tuple(v for v, _ in loops), lambda ix: blocked_index(ix, mr, nstep, per)


def select_gemm_int8(sel: VectorSelector, kernel: Kernel, parallel, how: str | None) -> list[Item] | None:
    parts = linear_parts(kernel)
    extents = dict(kernel.parallel)
    if parts is None or how is None or "m" not in extents or "n" not in extents:
        return None
    red, st, a, b, rows, params = parts
    L = sel.lanes
    M, N, K4 = extents["m"], extents["n"], red.extent
    if not (b.index.coef("n") == 4 and a.index.coef("n") == 0 and st.index.coef("n") == 1 and N % L == 0
            and all(r.index.coef("n") == 1 for r in rows)):
        return None
    cols = N // L
    mr, nr = packed_block(sel, M, cols, 2 if how == "maddubs" else 0, EPILOGUE_REGS)
    loops, pvars, index = packed_loops(sel, parallel, red, M, cols, mr, nr)

    def blocked(ld: Load) -> Load:
        return Load(ld.buf, index(ld.index))

    OUT = Map(None, 1, st.buf, index(st.index), st.value)
    g = _Int8MicroKernel(sel, mr, nr, red.var, K4, pvars, blocked(a), blocked(b), OUT, None, a.index.coef("m"),
                         L * F32_BYTES)
    g.rows, g.params, g.how = tuple(blocked(r) for r in rows), params, how
    return nest(sel, loops, g.outer_product())


class _Int8MicroKernel(MicroKernel):
    rows: tuple[Load, Load, Load]
    params: tuple[Load, Load]
    how: str

    def fma(self, acc: Reg, x: Reg, y: Reg, code: list, lanes: int) -> None:
        """acc += the dot products of the four bytes of x's broadcast word and y's lanes."""
        s = self.s
        if self.how == "vnni":
            code.append(Instr(s.vop(Prim.DOT4), Prim.DOT4, acc, (x, y, acc), lanes=lanes))
        elif self.how == "sdot":
            code.append(Instr(s.vop(Prim.SDOT4), Prim.SDOT4, acc, (x, y, acc), lanes=lanes))
        else:
            t = s.vnew()
            code.append(Instr(s.vop(Prim.MADDUBS), Prim.MADDUBS, t, (x, y), lanes=lanes))
            code.append(Instr(s.vop(Prim.MADDWD), Prim.MADDWD, t, (t, s.vconst(ONES_16)), lanes=lanes))
            code.append(Instr(s.vop(Prim.IADD32), Prim.IADD32, acc, (acc, t), lanes=lanes))

    def finish(self, values: list[list[Reg]], code: list, lanes: int) -> None:
        """Dequantize and store the block: per column vector, scale * w_scale and bias - zp * scale *
        w_scale * colsum once; per accumulator, a conversion and one fused multiply-add."""
        s = self.s
        scale, zp = (self.load(p, 0, 0, code, lanes, 1, bcast=True, chain=self.pvars, scope=1) for p in self.params)
        zs = s.vnew()
        code.append(Instr(s.vop(Prim.FMUL), Prim.FMUL, zs, (zp, scale), lanes=lanes))
        out_ix = self.OUT.index
        for c in range(self.nr):
            col = c * lanes * F32_BYTES
            w_scale, w_colsum, bias = (self.load(r, 0, col, code, lanes, 1, chain=self.pvars, scope=1)
                                       for r in self.rows)
            sw, shift = s.vnew(), s.vnew()
            code.append(Instr(s.vop(Prim.FMUL), Prim.FMUL, sw, (scale, w_scale), lanes=lanes))
            code.append(Instr(s.vop(Prim.FNMA), Prim.FNMA, shift, (zs, w_colsum, bias), lanes=lanes))
            for r in range(self.mr):
                v = values[r][c]
                f, y = s.vnew(), s.vnew()
                code.append(Instr(s.vop(Prim.CVT_I32F), Prim.CVT_I32F, f, (v,), lanes=lanes))
                code.append(Instr(s.vop(Prim.FMA), Prim.FMA, y, (f, sw, shift), lanes=lanes))
                row = r * out_ix.coef("m0") // self.mr * F32_BYTES
                index, disp = self.address(out_ix, row, col, lanes * F32_BYTES)
                stream = s.stream(1, self.OUT.buf, index, self.pvars)
                acc = s.access(self.OUT.buf, index, self.pvars, 1, disp, lanes * F32_BYTES)
                code.append(Instr(s.vec.store, Prim.STORE, Mem(stream.reg, disp), (y,), DType.F32, acc, lanes=lanes))

