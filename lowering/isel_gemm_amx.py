"""int8 and bf16 GEMMs on AMX tiles (the `amx` target): the linear layers of int8 and bf16 inference
(lowering/ops_quant.py, lowering/ops_bf16.py) as tile multiplies, their epilogues on AVX-512.

A tile holds up to 16 rows of 64 bytes. The accumulator tiles are 16 columns of int32 or float32; an A tile
holds `tr` rows of the input, `kt` dwords each (four int8 or two bf16 of consecutive k: the input's own
row-major layout); a B tile holds `kt` rows of the packed weight, 16 outputs of four int8 or two bf16 each (the
[K/4, N, 4] and [K/2, N, 2] packing of models/quantize.py and models/bf16.py is the layout AMX reads, so no
run-time packing is needed). With eight tiles, a block of 2 x 2 accumulator tiles (32 rows x 32 outputs)
leaves two for A and two for B: per k step, four tile loads and four multiplies (`tdpbusd` / `tdpbf16ps`),
each 16 x 16 x kt multiply-adds of four int8 or two bf16 (oneDNN's brgemm AMX kernels use the same block).

After the k loop the accumulator tiles are stored (`tilestored`) into the output, whose float32 rows then hold
int32 sums (int8) or float32 ones (bf16), and AVX-512 finishes each 16-output vector in place: int8
dequantizes it (vcvtdq2ps and one FMA, as lowering/isel_gemm_int8.py), bf16 adds the bias. `ldtilecfg` sets
the tiles' shapes once per kernel (a 64-byte palette-1 configuration), `tilerelease` ends it.
"""

from __future__ import annotations

from dataclasses import replace

from isasim.isa.amx import largest_divisor
from isasim.isa.dtype import F32_BYTES, DType
from isasim.isa.program import Imm, Instr, Item, Mem, Reg, RegFile
from isasim.isa.semantics import Prim
from isasim.lowering import isel_gemm_bf16, isel_gemm_int8
from isasim.lowering.isel import nest
from isasim.lowering.isel_gemm import blocked_index
from isasim.lowering.isel_vector import VectorSelector
from isasim.lowering.kernel import Affine, Kernel, Load

TILES = 8  # tmm0-7
ROWS, ROW_BYTES, COLS = 16, 64, 16  # a tile's most rows, the bytes of each, and the dwords of an accumulator row
# accumulator tiles (rows x columns), best first, each leaving a tile per row of A and per column of B
BLOCKS = tuple(b for b in ((2, 2), (1, 3), (3, 1), (1, 2), (2, 1), (1, 1)) if b[0] * b[1] + b[0] + b[1] <= TILES)


def tile_config(shapes: list[tuple[int, int]]) -> tuple[int, ...]:
    """The 64-byte ldtilecfg block for tiles tmm0.. of (rows, bytes per row): palette 1, start row 0, then
    each tile's bytes per row (16-bit, bytes 16-47) and rows (bytes 48-63) (Intel SDM vol. 2, LDTILECFG)."""
    cfg = [0] * 64
    cfg[0] = 1
    for t, (rows, colsb) in enumerate(shapes):
        cfg[16 + 2 * t], cfg[17 + 2 * t] = colsb & 0xFF, colsb >> 8
        cfg[48 + t] = rows
    return tuple(cfg)


def select_gemm_amx(sel: VectorSelector, kernel: Kernel, parallel) -> list[Item] | None:
    """The tile program of an int8 or a bf16 linear layer, or None for any other kernel (or an N that is not
    a multiple of 16 outputs)."""
    if not sel.vec.tiles:
        return None
    int8 = isel_gemm_int8.linear_parts(kernel)
    bf16 = None if int8 else isel_gemm_bf16.linear_parts(kernel)
    extents = dict(kernel.parallel)
    if not (int8 or bf16) or "m" not in extents or "n" not in extents:
        return None
    red, st, a, b = (int8 or bf16)[:4]
    M, N, KD = extents["m"], extents["n"], red.extent  # KD: k in dwords (four int8 or two bf16)
    per_dword = 4 // kernel.buffer(a.buf).dtype.itemsize  # elements of A in a dword
    if N % COLS or a.index.coef(red.var) != per_dword or b.index.coef("n") != per_dword or st.index.coef("n") != 1:
        return None
    return _TileGemm(sel, kernel, parallel, red, st, a, b, int8, bf16, M, N, KD).code()


class _TileGemm:
    def __init__(self, sel, kernel, parallel, red, st, a, b, int8, bf16, M, N, KD):
        self.s, self.red, self.int8, self.bf16 = sel, red, int8, bf16
        self.tr, self.kt = largest_divisor(M, ROWS), largest_divisor(KD, ROWS)
        self.mt, self.nt = next((mt, nt) for mt, nt in BLOCKS if (M // self.tr) % mt == 0 and (N // COLS) % nt == 0)
        self.M, self.N, self.KD = M, N, KD
        rows, cols = self.mt * self.tr, self.nt * COLS
        # the column blocks outside the row blocks: a column block of B (K x 32 outputs, 24-48 KB for BERT)
        # stays in L1 while the rows of A (all of them fit L2) pass, so B comes from memory once
        self.loops = tuple((v, e) for v, e in parallel if v not in ("m", "n")) + tuple(
            (v, e) for v, e in (("n0", N // cols), ("m0", M // rows)) if e > 1)
        sel.trips.update(dict(self.loops))
        sel.trips[red.var] = KD
        self.pvars = tuple(v for v, _ in self.loops)
        self.chain = self.pvars + (red.var,)

        def blocked(ix: Affine) -> Affine:
            return blocked_index(ix, rows, cols, 1)

        self.blocked = blocked
        self.A, self.B = Load(a.buf, blocked(a.index)), Load(b.buf, blocked(b.index))
        self.OUT = replace(st, index=blocked(st.index))
        isz = kernel.buffer(a.buf).dtype.itemsize
        self.a_row = a.index.coef("m") * isz  # bytes between rows of A, of B (a k dword) and of the output
        self.b_row = b.index.coef(red.var) * kernel.buffer(b.buf).dtype.itemsize
        self.c_row = st.index.coef("m") * F32_BYTES
        n_c = self.mt * self.nt
        self.c = [[Reg(RegFile.TILE, i * self.nt + j) for j in range(self.nt)] for i in range(self.mt)]
        self.a = [Reg(RegFile.TILE, n_c + i) for i in range(self.mt)]
        self.b = [Reg(RegFile.TILE, n_c + self.mt + j) for j in range(self.nt)]
        self.config = tile_config([(self.tr, ROW_BYTES)] * n_c + [(self.tr, 4 * self.kt)] * self.mt
                                  + [(self.kt, ROW_BYTES)] * self.nt)

    def stride(self, nbytes: int) -> Reg:
        """A register holding a row stride, set once in the prologue (tileloadd's index register)."""
        key = ("stride", nbytes)
        s = self.s
        if key not in s.consts:
            r = s.new(RegFile.GP)
            s.prologue.append(s.imov(r, nbytes))
            s.consts[key] = r
        return s.consts[key]

    def tile_load(self, ld: Load, tile: Reg, disp: int, rows: int, dwords: int, row_bytes: int, code: list) -> None:
        s = self.s
        stream = s.stream(0, ld.buf, ld.index, self.chain)
        acc = replace(s.access(ld.buf, ld.index, self.chain, self.kt, disp, 4 * dwords), rows=(rows, row_bytes))
        code.append(Instr("tileloadd", Prim.TILE_LOAD, tile, (Mem(stream.reg, disp), self.stride(row_bytes),
                                                               Imm(rows), Imm(dwords)), DType.F32, acc))

    def out_access(self, disp: int, width: int, rows: int = 1):
        s = self.s
        acc = s.access(self.OUT.buf, self.OUT.index, self.pvars, 1, disp, width)
        return replace(acc, rows=(rows, self.c_row)) if rows > 1 else acc

    def code(self) -> list[Item]:
        s = self.s
        s.prologue.append(Instr("ldtilecfg", Prim.TILE_CONFIG, None, (Imm(self.config),)))
        block: list[Item] = []
        for row in self.c:
            for t in row:
                block.append(Instr("tilezero", Prim.TILE_ZERO, t, (Imm(self.tr), Imm(COLS))))
        body: list[Item] = []
        for i, t in enumerate(self.a):
            self.tile_load(self.A, t, i * self.tr * self.a_row, self.tr, self.kt, self.a_row, body)
        for j, t in enumerate(self.b):
            self.tile_load(self.B, t, j * ROW_BYTES, self.kt, COLS, self.b_row, body)
        multiply = (Prim.TDPBUSD, "tdpbusd") if self.int8 else (Prim.TDPBF16PS, "tdpbf16ps")
        for i in range(self.mt):
            for j in range(self.nt):
                c = self.c[i][j]
                body.append(Instr(multiply[1], multiply[0], c, (self.a[i], self.b[j], c, Imm(self.tr), Imm(self.kt))))
        s.loop(self.red.var, self.KD // self.kt, body, False, block, 0, scale=self.kt)
        out = s.stream(1, self.OUT.buf, self.OUT.index, self.pvars)
        for i in range(self.mt):
            for j in range(self.nt):
                disp = i * self.tr * self.c_row + j * ROW_BYTES
                block.append(Instr("tilestored", Prim.TILE_STORE, Mem(out.reg, disp),
                                   (self.c[i][j], self.stride(self.c_row), Imm(self.tr)), DType.F32,
                                   self.out_access(disp, ROW_BYTES, self.tr)))
        self.epilogue(out.reg, block)
        return nest(s, self.loops, block) + [Instr("tilerelease", Prim.TILE_RELEASE, None, ())]

    def vload(self, ld: Load, disp: int, code: list, bcast: bool = False) -> Reg:
        """A vector of a per-output (or, broadcast, a per-kernel) float32 operand of the epilogue."""
        s = self.s
        ix = self.blocked(ld.index)
        stream = s.stream(1, ld.buf, ix, self.pvars)
        r = s.vnew()
        acc = s.access(ld.buf, ix, self.pvars, 1, disp, F32_BYTES if bcast else ROW_BYTES)
        mnem, prim = (s.vec.load_bcast, Prim.LOAD_BCAST) if bcast else (s.vec.load, Prim.LOAD)
        code.append(Instr(mnem, prim, r, (Mem(stream.reg, disp),), DType.F32, acc, lanes=s.lanes))
        return r

    def epilogue(self, out: Reg, code: list) -> None:
        """Each stored 16-output vector finished on AVX-512, in place: dequantized (int8) or biased (bf16)."""
        s, L = self.s, self.s.lanes
        if self.int8:
            rows, (scale, zp) = self.int8[4], self.int8[5]
            sc, z = self.vload(scale, 0, code, bcast=True), self.vload(zp, 0, code, bcast=True)
            zs = s.vnew()
            code.append(Instr(s.vop(Prim.FMUL), Prim.FMUL, zs, (z, sc), lanes=L))
        bias = self.bf16[4] if self.bf16 else None
        if self.bf16 and bias is None:
            return
        for j in range(self.nt):
            col = j * ROW_BYTES
            if self.int8:
                w_scale, w_colsum, b = (self.vload(r, col, code) for r in rows)
                sw, shift = s.vnew(), s.vnew()
                code.append(Instr(s.vop(Prim.FMUL), Prim.FMUL, sw, (sc, w_scale), lanes=L))
                code.append(Instr(s.vop(Prim.FNMA), Prim.FNMA, shift, (zs, w_colsum, b), lanes=L))
            else:
                b = self.vload(bias, col, code)
            for r in range(self.mt * self.tr):
                disp = r * self.c_row + col
                v, y = s.vnew(), s.vnew()
                code.append(Instr(s.vec.load, Prim.LOAD, v, (Mem(out, disp),), DType.F32,
                                  self.out_access(disp, ROW_BYTES), lanes=L))
                if self.int8:
                    f = s.vnew()
                    code.append(Instr(s.vop(Prim.CVT_I32F), Prim.CVT_I32F, f, (v,), lanes=L))
                    code.append(Instr(s.vop(Prim.FMA), Prim.FMA, y, (f, sw, shift), lanes=L))
                else:
                    code.append(Instr(s.vop(Prim.FADD), Prim.FADD, y, (v, b), lanes=L))
                code.append(Instr(s.vec.store, Prim.STORE, Mem(out, disp), (y,), DType.F32,
                                  self.out_access(disp, ROW_BYTES), lanes=L))
