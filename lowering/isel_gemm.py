"""GEMMs on SIMD targets: register-blocked micro-kernels.

The scalar GEMM keeps one accumulator, so each FMA waits for the last (latency-bound). Here a block of
MR rows x NR columns of the output is computed at once with MR*NR vector accumulators: enough independent
FMA chains to fill the FMA ports, and each loaded vector is reused across the block (Goto & van de Geijn,
"Anatomy of high-performance matrix multiplication", 2008). Which form depends on the operands' layout:

- outer product (B contiguous along n, e.g. attention's P @ V): lanes run along n; per k, NR vectors of B
  are loaded and each of the MR elements of A is broadcast and multiplied into them (broadcast + FMA);
- dot product (both operands contiguous along k, e.g. linear's x @ W^T and Q @ K^T): lanes run along k;
  per step, MR vectors of A and NR of B meet in MR*NR FMAs, and each accumulator is summed horizontally at
  the end of the row (with the AVX-512 opmask or a scalar epilogue for k % lanes).

The block is the largest MR <= 6, NR <= 6 that divides the output and fits the register file (accumulators
plus the operands in flight). Column blocks are grouped into panels of B that fit the target's panel budget,
and the panel loop runs outermost, so each panel is reused from L2 by every row block (BLIS's NC loop). Rows and columns of the block are addressed by displacements from one
pointer per operand, as hand-written micro-kernels do.

Inside a panel, which operand waits in L1 for the other: where B's micro-panel (NR columns x K) fits in three
quarters of the L1, all of A fits in the L2, and both are dense matrices, the column blocks
run outside the row blocks, as BLIS runs its jr loop outside ir: the micro-panel stays in L1 while the row
blocks of A stream past it from L2, and each k step reads MR vectors from L2 instead of NR. Measured on a
Zen 3 (AVX2, the two orders called alternately): MiniLM's 128x384x384 and 128x1536x384 linear layers 13-16%
faster, bert-base's 128x768x768 and 128x3072x768 7% faster. Otherwise (a K too long: 128x384x1536 gained
nothing; A beyond L2; strided views such as attention's heads, whose rows fall into few cache sets) a row
block of A stays in L1 and the column blocks pass it. The caches are those of the core the program is for
(the ISA's smallest described where no core is given): in a 48 KB L1 (Sapphire Rapids, Zen 5) the
128x384x1536 layer's 36 KB micro-panel stays too, and on the Zen 5 host that layer ran 1.18-1.19x (AVX2) and
1.14-1.15x (AVX-512) as fast so, the two orders called alternately (benchmarks/gemm_order.py); on the
Neoverse cores' 64 KB L1 it fits as well (not measured on Arm). The order moves no result: each output's
dot product is the same instructions in the same order.
"""

from __future__ import annotations

from functools import cache

from isasim.isa.machine import load_uarch, uarch_names
from isasim.isa.program import Imm, Instr, Item, Mem, Reg, RegFile
from isasim.isa.semantics import Prim
from isasim.lowering.isel import nest
from isasim.lowering.isel_vector import VectorSelector, reduction_of
from isasim.lowering.kernel import Affine, Kernel, Load, Map, Op, Reduce, Scalar
from isasim.isa.dtype import DType, F32_BYTES

MAX_MR, MAX_NR = 6, 6


@cache
def smallest_caches(isa: str) -> tuple[int, int]:
    """(L1D, L2) bytes of the smallest of each among the cores of `isa` described in isa/uarch/*.toml: a
    program selected for no core in particular is blocked for the smallest (x86-64: 32 KB, and Zen 3's 512
    KB L2)."""
    sizes = [load_uarch(u).sizes() for u in uarch_names(isa)]
    return min(z["l1"] for z in sizes), min(z["l2"] for z in sizes)


def _parts(kernel: Kernel):
    """(reduce, store, a, b, bias) of a GEMM kernel as ops_linalg builds it, else None."""
    if len(kernel.phases) != 2:
        return None
    red, st = kernel.phases
    if not (isinstance(red, Reduce) and isinstance(st, Map) and st.var is None) or reduction_of(red) is not Prim.FMA:
        return None
    a, b = red.update.args[:2]
    loads = [a, b]
    bias = None
    if isinstance(st.value, Op) and st.value.prim is Prim.FADD and st.value.args[0] == Scalar(red.acc):
        bias = st.value.args[1]
        loads.append(bias)
    elif st.value != Scalar(red.acc):
        return None
    if not all(isinstance(x, Load) and not x.index.dynamic and kernel.buffer(x.buf).dtype is DType.F32
               for x in loads):
        return None
    if kernel.buffer(st.buf).dtype is not DType.F32 or st.index.dynamic:
        return None
    return red, st, a, b, bias


def blocked_index(ix: Affine, mr: int, nstep: int, per: int) -> Affine:
    """The index at the block's first row and column: m -> m0 * mr, n -> (nP * per + n0) * nstep."""
    terms = []
    for v, c in ix.terms:
        if v == "m":
            terms.append(("m0", c * mr))
        elif v == "n":
            terms += [("nP", c * nstep * per), ("n0", c * nstep)]
        else:
            terms.append((v, c))
    return Affine(ix.offset, tuple(terms))


def panel_blocks(blocks: int, block_bytes: int, budget: int) -> int:
    """How many column blocks form one panel of B: the most, dividing the count, whose bytes fit `budget`
    (the panel then stays in L2 while every row block of A passes over it: BLIS's NC loop)."""
    fit = max(1, budget // block_bytes)
    return max(d for d in range(1, min(fit, blocks) + 1) if blocks % d == 0)


def select_gemm(sel: VectorSelector, kernel: Kernel, parallel,
                caches: tuple[int, int] | None = None) -> list[Item] | None:
    """The register-blocked GEMM, its loops ordered for `caches` (L1D, L2 bytes of the core it is for; None:
    the ISA's smallest described), or None where the kernel is not a float32 GEMM this shapes."""
    parts = _parts(kernel)
    extents = dict(kernel.parallel)
    if parts is None or "m" not in extents or "n" not in extents:
        return None
    red, st, a, b, bias = parts
    L, k = sel.lanes, red.var
    M, N, K = extents["m"], extents["n"], red.extent
    # Fewer outputs or k than one vector's lanes (LoRA's rank-8 products): AVX-512 masks the missing lanes
    # (loads read them as zero, the store leaves them) instead of leaving the GEMM to the generic loop, which
    # would reduce each output on its own.
    narrow = sel.vec.masked_tails and N < L
    outer = (b.index.coef("n") == 1 and a.index.coef("n") == 0 and st.index.coef("n") == 1
             and (N % L == 0 or narrow) and (bias is None or bias.index.coef("n") in (0, 1)))
    dot = a.index.coef(k) == 1 and b.index.coef(k) == 1 and (K >= L or sel.vec.masked_tails)
    if not (outer or dot):
        return None
    cols = max(N // L, 1) if outer else N
    col_bytes = L * F32_BYTES if outer else b.index.coef("n") * F32_BYTES
    mr, nr = _choose_block(sel, M, cols, outer)
    nstep = nr * L if outer else nr
    blocks = cols // nr
    per = panel_blocks(blocks, F32_BYTES * K * nstep, sel.vec.panel_bytes)
    bvars = tuple((v, e) for v, e in parallel if v not in ("m", "n"))
    dense = a.index.coef("m") == K and dot and not outer and b.index.coef("n") == K
    l1, l2 = caches or smallest_caches(sel.target.isa)
    b_stays = dense and F32_BYTES * K * nstep <= l1 * 3 // 4 and F32_BYTES * M * K <= l2
    order = (("nP", blocks // per), ("n0", per), ("m0", M // mr)) if b_stays else \
        (("nP", blocks // per), ("m0", M // mr), ("n0", per))
    loops = bvars + tuple((v, e) for v, e in order if e > 1)
    sel.trips.update(dict(loops))
    sel.trips[k] = K
    pvars = tuple(v for v, _ in loops)

    def blocked(ix: Affine) -> Affine:
        return blocked_index(ix, mr, nstep, per)

    A, B, OUT = Load(a.buf, blocked(a.index)), Load(b.buf, blocked(b.index)), Map(None, 1, st.buf,
                                                                                 blocked(st.index), st.value)
    BIAS = bias and Load(bias.buf, blocked(bias.index))
    g = MicroKernel(sel, mr, nr, k, K, pvars, A, B, OUT, BIAS, a.index.coef("m") * F32_BYTES, col_bytes)
    if outer and N < L:
        g.col_mask = sel.tail_mask(N)
    code = g.outer_product() if outer else g.dot_product()
    return nest(sel, loops, code)


def _choose_block(sel, M: int, cols: int, outer: bool) -> tuple[int, int]:
    """(MR, NR): the most accumulators that divide the output and fit the registers with the operands."""
    room = len(sel.target.registers.fp) - 1  # one spare: the loop needs no constants, only operands
    best = (1, 1)
    for mr in range(1, MAX_MR + 1):
        for nr in range(1, MAX_NR + 1):
            if M % mr or cols % nr or mr * nr + (nr if outer else mr) + 1 > room:
                continue
            if (mr * nr, -(mr + nr)) > (best[0] * best[1], -sum(best)):
                best = (mr, nr)
    return best


class MicroKernel:
    """One register block of a GEMM: its loads, its multiply-adds (`fma`), its k loop and its stores; the
    int8 micro-kernel (lowering/isel_gemm_int8.py) replaces the multiply-add and the epilogue."""

    def __init__(self, sel: VectorSelector, mr, nr, k, K, pvars, A, B, OUT, BIAS, a_row, col_bytes):
        self.s, self.mr, self.nr, self.k, self.K = sel, mr, nr, k, K
        self.pvars, self.A, self.B, self.OUT, self.BIAS = pvars, A, B, OUT, BIAS
        self.a_row, self.col_bytes = a_row, col_bytes  # bytes between rows of A, between block columns of B
        self.chain = pvars + (k,)
        # the dot product finishes k % lanes with scalar loads of the same elements (AVX2, NEON)
        self.scalar_tail = bool(K % sel.lanes) and not sel.vec.masked_tails
        self.col_mask: Reg | None = None  # the outer product's live lanes where N is under one vector (AVX-512)

    def address(self, index: Affine, row: int, col: int, nbytes: int, bcast: bool = False,
                isz: int = F32_BYTES) -> tuple[Affine, int]:
        """(index of the pointer, displacement) for the element `row` + `col` bytes past the block's corner:
        one pointer per operand and a displacement where the ISA encodes it, else a pointer per row or
        column (AArch64's scaled offsets reach 16 KB for a float; its ld1r takes none). With a scalar k
        epilogue the displacement must suit its scalar loads too, so the vector loop and the epilogue share
        one pointer, which the vector loop advances."""
        if bcast and not self.s.vec.bcast_takes_offset:
            return Affine(index.offset + (row + col) // isz, index.terms), 0
        fits = self.s.target.disp_fits
        also = F32_BYTES if self.scalar_tail else nbytes
        for moved, disp in ((0, row + col), (row, col), (col, row), (row + col, 0)):
            if (fits(disp, nbytes) and fits(disp, also)) or disp == 0:
                return Affine(index.offset + moved // isz, index.terms), disp
        raise AssertionError("displacement 0 always fits")

    def load(self, ld: Load, row: int, col: int, code: list, lanes: int, scale: int, bcast: bool = False,
             mask: Reg | None = None, shift: int = 0, chain=None, scope: int = 0) -> Reg:
        s = self.s
        chain = self.chain if chain is None else chain
        width = F32_BYTES if bcast or lanes == 1 else s.width(mask)  # (int8 loads move 32-bit lanes too)
        isz = s.kernel.buffer(ld.buf).dtype.itemsize
        index, disp = self.address(ld.index, row, col, F32_BYTES * (1 if bcast else lanes), bcast, isz)
        stream = s.stream(scope, ld.buf, index, self.chain if scope == 0 else self.pvars)
        r = s.vnew(lanes=lanes) if lanes > 1 else s.new(RegFile.FP)
        acc = s.access(ld.buf, index, chain, scale, disp + shift, width)
        if bcast:
            mnem, prim = s.vec.load_bcast, Prim.LOAD_BCAST
        else:
            mnem, prim = (s.vec.load if lanes > 1 else s.target.loads[DType.F32]), Prim.LOAD
        code.append(Instr(mnem, prim, r, (Mem(stream.reg, disp),), DType.F32, acc, lanes=lanes, mask=mask))
        return r

    def zeroed(self, code: list) -> list[list[Reg]]:
        s = self.s
        accs = [[s.vnew() for _ in range(self.nr)] for _ in range(self.mr)]
        for row in accs:
            for r in row:
                code.append(Instr(s.vec.fp_zero, Prim.FMOV, r, (Imm(0.0),), lanes=s.lanes))
        return accs

    def fma(self, acc: Reg, x: Reg, y: Reg, code: list, lanes: int) -> None:
        s = self.s
        mnem = s.vop(Prim.FMA) if lanes > 1 else s.mn(Prim.FMA)
        code.append(Instr(mnem, Prim.FMA, acc, (x, y, acc), lanes=lanes))

    def dot_product(self) -> list[Item]:
        s, L, mr, nr = self.s, self.s.lanes, self.mr, self.nr
        code: list[Item] = []
        accs = self.zeroed(code)
        full, rest = divmod(self.K, L)

        def step(out: list, mask: Reg | None, shift: int) -> None:
            tail = mask is not None  # the masked tail runs after the loop
            chain, sc = (self.pvars, 1) if tail else (self.chain, L)
            rows = [self.load(self.A, r * self.a_row, 0, out, L, sc, mask=mask, shift=shift, chain=chain)
                    for r in range(mr)]
            for c in range(nr):
                col = self.load(self.B, 0, c * self.col_bytes, out, L, sc, mask=mask, shift=shift, chain=chain)
                for r in range(mr):
                    self.fma(accs[r][c], rows[r], col, out, L)

        body: list[Item] = []
        step(body, None, 0)
        if full:
            s.loop(self.k, full, body, False, code, 0, scale=L)
        if rest and s.vec.masked_tails:  # masked lanes load as zero and add nothing
            step(code, s.tail_mask(rest), full * L * F32_BYTES)
            s._tail_done(0, self.k, full * L)
        sums = [[s.new(RegFile.FP) for _ in range(nr)] for _ in range(mr)]
        for r in range(mr):
            for c in range(nr):
                s.horizontal(accs[r][c], Prim.FADD, sums[r][c], code)
        if rest and not s.vec.masked_tails:
            body = []
            tail = full * L * F32_BYTES  # where the epilogue's elements start along k (for the cache model)
            rows = [self.load(self.A, r * self.a_row, 0, body, 1, 1, shift=tail) for r in range(mr)]
            for c in range(nr):
                col = self.load(self.B, 0, c * self.col_bytes, body, 1, 1, shift=tail)
                for r in range(mr):
                    self.fma(sums[r][c], rows[r], col, body, 1)
            s.loop(self.k, rest, body, False, code, 0)
        self.finish(sums, code, 1)
        return code

    def outer_product(self) -> list[Item]:
        s, L, mr, nr = self.s, self.s.lanes, self.mr, self.nr
        code: list[Item] = []
        accs = self.zeroed(code)
        body: list[Item] = []
        cols = [self.load(self.B, 0, c * self.col_bytes, body, L, 1, mask=self.col_mask) for c in range(nr)]
        for r in range(mr):
            a = self.load(self.A, r * self.a_row, 0, body, L, 1, bcast=True)
            for c in range(nr):
                self.fma(accs[r][c], a, cols[c], body, L)
        s.loop(self.k, self.K, body, False, code, 0)
        self.finish(accs, code, L)
        return code

    def finish(self, values: list[list[Reg]], code: list, lanes: int) -> None:
        """Add the bias (if any) and store the block."""
        s = self.s
        out_ix = self.OUT.index

        def offsets(ix: Affine, r: int, c: int) -> tuple[int, int]:
            col = c * lanes * F32_BYTES if lanes > 1 else c * ix.coef("n0") // self.nr * F32_BYTES
            return r * ix.coef("m0") // self.mr * F32_BYTES, col

        for r in range(self.mr):
            for c in range(self.nr):
                v = values[r][c]
                if self.BIAS is not None:
                    bi = self.BIAS.index
                    bcast = lanes > 1 and bi.coef("n0") == 0  # one bias per row, in every lane
                    row, col = offsets(bi, r, 0 if bcast else c)
                    b = self.load(self.BIAS, row, col, code, lanes, 1, bcast=bcast, chain=self.pvars, scope=1,
                                  mask=None if bcast else self.col_mask)
                    mnem = s.vop(Prim.FADD) if lanes > 1 else s.mn(Prim.FADD)
                    code.append(Instr(mnem, Prim.FADD, v, (v, b), lanes=lanes))
                index, disp = self.address(out_ix, *offsets(out_ix, r, c), lanes * F32_BYTES)
                stream = s.stream(1, self.OUT.buf, index, self.pvars)
                mask = self.col_mask if lanes > 1 else None
                acc = s.access(self.OUT.buf, index, self.pvars, 1, disp, s.width(mask) if lanes > 1 else F32_BYTES)
                mnem = s.vec.store if lanes > 1 else s.target.stores[DType.F32]
                code.append(Instr(mnem, Prim.STORE, Mem(stream.reg, disp), (v,), DType.F32, acc, lanes=lanes,
                                  mask=mask))
