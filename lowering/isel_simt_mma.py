"""GEMMs on a GPU's tensor cores (--precision fp16, bf16, int8): the linear layers of lowering/ops_fp16.py as
`mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32`, those of lowering/ops_bf16.py as its `.bf16` twin, and
those of lowering/ops_quant.py as `mma.sync.aligned.m16n8k32.row.col.s32.s8.s8.s32` (isa/mma.py has their
fragments and arithmetic; `Format` says what differs), staged through shared memory as CUTLASS's multistage
GEMMs are ("Efficient GEMM in CUDA", CUTLASS docs):

- A block of eight warps owns a 128 x BN tile of the output (BN = 128, 64 or 32, the largest that divides N).
  The warps form a 2 x 4 grid: warp (wm, wn) computes rows 64 wm .. 64 wm + 63 and BN / 4 columns, as
  4 x BN / 32 tiles of 16 x 8, each a chain of mma along k.
- Per step of one mma's k (16; 32 in int8), the block copies its 128-row slice of A and its BN-row slice of
  B into shared memory, eight 32-bit words a row (two fp16 or bf16 neighbours in k a word, four int8); waits
  at bar.sync; then each warp loads its fragments with ld.shared.b32 and multiplies; and waits again before
  the next slice overwrites the tiles.
  - fp16: A is the float32 activation, rounded and packed in pairs by `cvt.rn.f16x2.f32` as it is copied;
    B is the fp16 weight [N, K], each output's k contiguous.
  - bf16: A is the activation that `isasim.round_bf16` rounded (a 32-bit load per pair, no conversion), B the
    weight packed [K/2, N, 2] (models/bf16.py): a warp's loads of one k pair across 32 outputs are contiguous.
  - int8: A is the quantized activation (7-bit, so valid signed bytes), B the weight packed [K/4, N, 4]
    (models/quantize.py); the int32 sums are converted to float32 once, before the epilogue.
- The global loads of slice t + 1 go out in trip t, into the registers the next trip stores from, so their
  latency hides behind this trip's mma (Volkov & Demmel's prefetch, as the float32 GEMM does).
- Shared rows are padded from 8 to 12 words: the eight rows a fragment load reads land on distinct banks.
- Rows past M load 0, add nothing and are not stored. N is a multiple of 32 and K of one mma's k: models/
  fp16.py and bf16.py convert only such layers; an int8 layer that is not one (a classifier's two outputs)
  is left to the selector's byte-by-byte form (`int8_fits`).
- The epilogue is the kernel's store expression (the bias add; int8's dequantization, whose column-only
  factors each thread computes once per column) for each accumulator register.
Not yet: ldmatrix, cp.async and more than one stage in flight (the issue's next steps).
Each output's sum runs k = 0, 1, ..., K-1, from 0, as models/fp16.py's reference does (and models/bf16.py's
for the "mma" dot product); integer sums are exact in any order.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from isasim.isa.dtype import DType, F32_BYTES
from isasim.isa.errors import UserError
from isasim.isa.program import (Addr, BufferSpec, Imm, Instr, Item, Launch, Lin, Loop, Mem, Program, Reg, RegFile,
                                WarpAccess)
from isasim.isa.semantics import Prim
from isasim.isa.targets import Target
from isasim.lowering.isel_simt import SimtSelector, thread_index
from isasim.lowering.isel_simt_gemm import shifted_store
from isasim.lowering.kernel import Kernel, Load, Map, Op, Reduce, Scalar

WARPS_M, WARPS_N = 2, 4
THREADS = 32 * WARPS_M * WARPS_N
MMA_M, MMA_N = 16, 8
BM = 128  # rows of a block's tile
M_TILES = BM // WARPS_M // MMA_M  # 16-row tiles per warp
WORDS = 8  # 32-bit words along k in a slice's row: one mma's k (8 fp16 or bf16 pairs, 8 int8 quads)
ROW = WORDS + 4  # a shared row, padded (see the module docstring)
LOAD_PAIR, PACK = "ld.global.b32", "cvt.rn.f16x2.f32"
LOAD_SHARED_PAIR, STORE_SHARED_PAIR = "ld.shared.b32", "st.shared.b32"


@dataclass(frozen=True)
class Format:
    """What one precision's tensor-core GEMM multiplies: its mma, the k of one mma, and how its kernel's
    reduction steps (fp16: one k at a time, the activation float32; bf16 and int8: a 32-bit word of two or
    four k at a time, both operands already in the format)."""

    name: str
    mma: Prim
    k: int  # one mma's k: WORDS words
    per_word: int  # elements in a 32-bit word
    per_step: int  # elements of k one trip of the kernel's reduction covers
    int_sums: bool  # int32 accumulators (B32 registers), turned into float32 for the epilogue


FP16 = Format("fp16", Prim.MMA_F16, 16, 2, 1, False)
BF16 = Format("bf16", Prim.MMA_BF16, 16, 2, 2, False)
INT8 = Format("int8", Prim.MMA_S8, 32, 4, 4, True)


@dataclass(frozen=True)
class MmaShape:
    m: int
    n: int
    k: int
    a: Load  # fp16: the float32 activation [M, K]; bf16: the rounded one, [M, K]; int8: the quantized one
    b: Load  # fp16: the weight [N, K]; bf16: packed [K/2, N, 2]; int8: packed [K/4, N, 4]
    store: Map
    fmt: Format


def mma_shape(kernel: Kernel) -> MmaShape:
    """The pieces of ops_fp16's, ops_bf16's or ops_quant's linear (its batch loops merged into the rows)."""
    red, store = kernel.phases
    assert isinstance(red, Reduce) and isinstance(store, Map), kernel.name
    up = red.update
    assert isinstance(up, Op), kernel.name
    fmt = {Prim.DPBF16: BF16, Prim.DOT4: INT8}.get(up.prim, FP16)
    if fmt is FP16:
        assert up.prim is Prim.FMA and isinstance(up.args[0], Op) and up.args[0].prim is Prim.ROUND_F16, kernel.name
    if any(e != 1 for _, e in kernel.parallel[:-2]):
        raise ValueError(f"{kernel.name}: a tensor-core linear's batch loops merge into its rows (a contiguous "
                         f"input)")
    (_, m), (_, n) = kernel.parallel[-2:]
    k = red.extent * fmt.per_step
    if n % 32 or k % fmt.k:
        raise UserError(f"{kernel.name}: the {fmt.name} tensor-core GEMM needs N a multiple of 32 and K of "
                        f"{fmt.k}, not N {n}, K {k}: use --precision fp32 for this model on simt")
    a = up.args[0].args[0] if fmt is FP16 else up.args[0]
    return MmaShape(m, n, k, a, up.args[1], store, fmt)


def int8_fits(kernel: Kernel) -> bool:
    """Whether an int8 linear suits the tensor-core GEMM (N a multiple of 32, K of 32); a narrower one (BERT's
    two-label classifier) runs as any other kernel, its bytes multiplied one by one."""
    if kernel.op != "isasim.linear_int8":
        return False
    (_, n), red = kernel.parallel[-1], kernel.phases[0]
    return n % 32 == 0 and red.extent * INT8.per_step % INT8.k == 0


def select_mma(kernel: Kernel, target: Target) -> Program:
    return MmaBuilder(kernel, target, mma_shape(kernel)).build()


class MmaBuilder:
    def __init__(self, kernel: Kernel, target: Target, g: MmaShape):
        self.kernel, self.target, self.g = kernel, target, g
        self.sel = SimtSelector(kernel, target, {})
        self.mv, self.nv = kernel.parallel[-2][0], kernel.parallel[-1][0]
        self.kv = kernel.phases[0].var
        self.bn = next(b for b in (128, 64, 32) if g.n % b == 0)
        self.n_tiles = self.bn // WARPS_N // MMA_N  # 8-column tiles per warp
        self.tiles_m, self.tiles_n = -(-g.m // BM), g.n // self.bn
        # closed forms of the block's first row and column (Lin terms of the thread id)
        self.m0_terms = ((THREADS * self.tiles_n, 0, BM),)
        self.n0_terms = ((THREADS, self.tiles_n, self.bn),)

    def op(self, code: list, prim: Prim, *srcs, file: RegFile = RegFile.GP) -> Reg:
        return self.sel.emit(code, prim, tuple(srcs), file)

    def add(self, code: list, reg: Reg, *terms: tuple[Reg, int]) -> None:
        """reg += sum of register x constant."""
        for r, c in terms:
            if c:
                t = self.op(code, Prim.IMUL, r, Imm(c))
                code.append(Instr(self.sel.mn(Prim.IADD), Prim.IADD, reg, (reg, t)))

    def build(self) -> Program:
        sel, g, pro = self.sel, self.g, self.sel.prologue
        thread_index(sel, THREADS)
        tid, cta = pro[0].dst, pro[1].dst
        lane = self.op(pro, Prim.IREM, tid, Imm(32))
        warp = self.op(pro, Prim.IDIV, tid, Imm(32))
        wm = self.op(pro, Prim.IDIV, warp, Imm(WARPS_N))
        wn = self.op(pro, Prim.IREM, warp, Imm(WARPS_N))
        grp = self.op(pro, Prim.IDIV, lane, Imm(4))  # g: a fragment's row (A, C) or column (B)
        pair = self.op(pro, Prim.IREM, lane, Imm(4))  # t: its word along k (A, B) or column pair (C)
        tn = self.op(pro, Prim.IREM, cta, Imm(self.tiles_n))
        tm = self.op(pro, Prim.IDIV, cta, Imm(self.tiles_n))
        m0 = self.op(pro, Prim.IMUL, tm, Imm(BM))
        n0 = self.op(pro, Prim.IMUL, tn, Imm(self.bn))
        # the thread's first output: row m0 + 64 wm + g, column n0 + (BN / 4) wn + 2t
        wcols = self.bn // WARPS_N
        row = self.op(pro, Prim.IADD, m0, grp)
        self.add(pro, row, (wm, BM // WARPS_M))
        col = self.op(pro, Prim.IADD, n0, self.op(pro, Prim.IMUL, pair, Imm(2)))
        self.add(pro, col, (wn, wcols))
        self.row_terms = self.m0_terms + ((32 * WARPS_N, WARPS_M, BM // WARPS_M), (4, 8, 1))
        sel.coords[self.mv] = (row, self.row_terms)
        sel.coords[self.nv] = (col, self.n0_terms + ((32, WARPS_N, wcols), (1, 4, 2)))
        for v, _ in self.kernel.parallel[:-2]:  # batch loops of one trip: coordinate 0
            sel.coords[v] = (self.op(pro, Prim.IMOV, Imm(0)), ())
        accs = [[[self.zero(pro) for _ in range(4)] for _ in range(self.n_tiles)] for _ in range(M_TILES)]
        code: list[Item] = []
        copy_a = self.copier("As", g.a, m0, self.m0_terms, BM, tid, code)
        copy_b = self.copier("Bs", g.b, n0, self.n0_terms, self.bn, tid, code)
        body: list[Item] = copy_a.stores + copy_b.stores
        body.append(Instr(sel.mn(Prim.BARRIER), Prim.BARRIER, None, ()))
        body += copy_a.prefetch + copy_b.prefetch
        body += self.products(wm, wn, grp, pair, accs)
        body.append(Instr(sel.mn(Prim.BARRIER), Prim.BARRIER, None, ()))
        trips = g.k // g.fmt.k
        counter = sel.new(RegFile.GP)
        code.append(Instr(sel.mn(Prim.IMOV), Prim.IMOV, counter, (Imm(trips),)))
        more = sel.new(RegFile.PRED)
        latch = tuple(copy_a.latch + copy_b.latch) + (
            Instr(sel.mn(Prim.ISUB), Prim.ISUB, counter, (counter, Imm(1))),
            Instr(sel.mn(Prim.ICMP_NE), Prim.ICMP_NE, more, (counter, Imm(0))),
            Instr(sel.mn(Prim.BRANCH_NZ), Prim.BRANCH_NZ, None, (more,)))
        code.append(Loop(counter, trips, tuple(body), latch, False, self.kv))
        code += self.epilogue(accs)
        buffers = tuple(BufferSpec(b.name, b.size, b.dtype, b.is_output) for b in self.kernel.buffers)
        shared = (BufferSpec("As", BM * ROW, DType.F32, False), BufferSpec("Bs", self.bn * ROW, DType.F32, False))
        return Program(self.kernel.name, self.target.name, buffers, tuple(pro) + tuple(code), self.kernel.flops,
                       Launch(self.tiles_m * self.tiles_n, THREADS, shared, (),
                              f"tensor cores: mma.m16n8k{g.fmt.k} {g.fmt.name}, {BM}x{self.bn} tiles through "
                              f"shared memory"))

    def zero(self, code: list) -> Reg:
        """An accumulator register at 0: float32, or int32 in a B32 register."""
        if self.g.fmt.int_sums:
            r = self.sel.new(RegFile.B32)
            code.append(Instr("mov.b32", Prim.IMOV, r, (Imm(0),)))
            return r
        return self.op(code, Prim.FMOV, Imm(0.0), file=RegFile.FP)

    # ---- the cooperative copy of one operand's slice into shared memory ------------------------------
    def copier(self, tile: str, load: Load, origin: Reg, origin_terms: tuple, rows: int, tid: Reg,
               code: list) -> "_Copy":
        """Word e = tid + 256 i of the slice (rows x 8 words of 16-bit pairs or 8-bit quads): row e / 8, word
        e % 8, so a warp reads four rows' consecutive k. fp16's A (float32): two loads and a cvt per word;
        otherwise one 32-bit load of the word."""
        sel, pro, g = self.sel, self.sel.prologue, self.g
        fmt = g.fmt
        is_a = load is g.a
        converts = is_a and fmt is FP16
        isz = self.kernel.buffer(load.buf).dtype.itemsize
        extent = g.m if is_a else g.n
        ck, cv = load.index.coef(self.kv), load.index.coef(self.mv if is_a else self.nv)
        if not is_a and fmt is FP16 and ck != 1:
            raise ValueError(f"{self.kernel.name}: the fp16 weight's k pairs must be contiguous")
        pair = fmt.per_word // fmt.per_step * ck * isz  # bytes from one word (along k) to the next
        word = self.op(pro, Prim.IREM, tid, Imm(WORDS))
        r = self.op(pro, Prim.IDIV, tid, Imm(WORDS))
        pos = self.op(pro, Prim.IADD, origin, r)  # the operand row (m or n) of word 0
        ptr = self.op(pro, Prim.IADD, sel.base(load.buf), Imm(load.index.offset * isz))
        self.add(pro, ptr, (pos, cv * isz), (word, pair))
        terms = tuple((d, mo, mu * cv * isz) for d, mo, mu in origin_terms) + \
            ((WORDS, THREADS // WORDS, cv * isz), (1, WORDS, pair))
        sptr = self.op(pro, Prim.IMOV, Addr(tile, 0))
        self.add(pro, sptr, (r, ROW * F32_BYTES), (word, F32_BYTES))
        s_terms = ((WORDS, THREADS // WORDS, ROW * F32_BYTES), (1, WORDS, F32_BYTES))
        step = WORDS * pair
        kpos = self.op(pro, Prim.IMUL, word, Imm(fmt.per_word))  # the k of the slice being loaded (stops the prefetch)
        pro.append(Instr(sel.mn(Prim.IADD), Prim.IADD, kpos, (kpos, Imm(fmt.k))))
        first: list[Item] = []
        prefetch: list[Item] = []
        stores: list[Item] = []
        per = THREADS // WORDS  # rows a pass of the block covers
        # slice t + 1 in trip t: nothing past the end of K (the last trip)
        more = self.op(prefetch, Prim.ICMP_LT, kpos, Imm(g.k), file=RegFile.PRED)
        k_guard = (Lin(fmt.k, ((1, WORDS, fmt.per_word),), (fmt.k,)), g.k)
        for i in range(rows // per):
            dr = per * i
            guards, row_ok = [], None
            if extent % rows:
                guards.append((Lin(dr, origin_terms + ((WORDS, per, 1),)), extent))
                row_ok = self.op(pro, Prim.ICMP_LT, pos, Imm(extent - dr), file=RegFile.PRED)
            pred = more if row_ok is None else self.op(prefetch, Prim.PAND, more, row_ok, file=RegFile.PRED)
            # fp16's A: the higher k (into the high half of the pair) and the lower; otherwise the pair
            values = [sel.new(RegFile.FP) for _ in range(2)] if converts else [sel.new(RegFile.B32)]
            for part, v in enumerate(values):
                disp = dr * cv * isz + ((1 - part) * ck * isz if converts else 0)
                width = isz if converts else F32_BYTES
                lin = Lin(load.index.offset * isz + disp, terms)
                self.guarded_load(first, v, row_ok, Mem(ptr, disp), WarpAccess(False, load.buf, lin, width,
                                                                               tuple(guards)), converts)
                # no zero first: a row past M keeps the 0 of slice 0, and the last trip's loads are not used
                nxt = Lin(load.index.offset * isz + disp + step, terms, (step,))
                self.guarded_load(prefetch, v, pred, Mem(ptr, disp),
                                  WarpAccess(False, load.buf, nxt, width, tuple(guards) + (k_guard,)), converts,
                                  zero=False)
            packed = values[0]
            if converts:
                packed = sel.new(RegFile.B32)
                stores.append(Instr(PACK, Prim.CVT_F16X2, packed, tuple(values)))
            sdisp = dr * ROW * F32_BYTES
            stores.append(Instr(STORE_SHARED_PAIR, Prim.STORE_SHARED, Mem(sptr, sdisp), (packed,), DType.I32,
                                warp=WarpAccess(True, tile, Lin(sdisp, s_terms, (0,)), F32_BYTES)))
        first.append(Instr(sel.mn(Prim.IADD), Prim.IADD, ptr, (ptr, Imm(step))))
        code.extend(first)
        latch = [Instr(sel.mn(Prim.IADD), Prim.IADD, ptr, (ptr, Imm(step))),
                 Instr(sel.mn(Prim.IADD), Prim.IADD, kpos, (kpos, Imm(fmt.k)))]
        return _Copy(prefetch, stores, latch)

    def guarded_load(self, code: list, value: Reg, pred: Reg | None, mem: Mem, access: WarpAccess, fp: bool,
                     zero: bool = True) -> None:
        """value = the element (fp: float32) or pair (32 bits), or (zero) 0 where the guard is false."""
        if pred is not None and zero:
            prim = Prim.FMOV if fp else Prim.IMOV
            code.append(Instr(self.sel.mn(prim) if fp else "mov.b32", prim, value, (Imm(0.0 if fp else 0),)))
        if fp:
            code.append(Instr(self.target.loads[DType.F32], Prim.LOAD, value, (mem,), DType.F32, mask=pred,
                              warp=access))
        else:
            code.append(Instr(LOAD_PAIR, Prim.LOAD, value, (mem,), DType.I32, mask=pred, warp=access))

    # ---- the warp's fragments from shared memory, and its mma ---------------------------------------
    def products(self, wm: Reg, wn: Reg, grp: Reg, pair: Reg, accs) -> list[Item]:
        """A: for each 16-row tile, rows g and g + 8, words t and t + 4; B: for each 8-column tile, column g,
        words t and t + 4. Then the mma of every (row tile, column tile)."""
        sel, pro = self.sel, self.sel.prologue
        wcols = self.bn // WARPS_N
        a_ptr = self.op(pro, Prim.IMOV, Addr("As", 0))
        self.add(pro, a_ptr, (wm, BM // WARPS_M * ROW * F32_BYTES), (grp, ROW * F32_BYTES), (pair, F32_BYTES))
        b_ptr = self.op(pro, Prim.IMOV, Addr("Bs", 0))
        self.add(pro, b_ptr, (wn, wcols * ROW * F32_BYTES), (grp, ROW * F32_BYTES), (pair, F32_BYTES))
        a_terms = ((32 * WARPS_N, WARPS_M, BM // WARPS_M * ROW * F32_BYTES), (4, 8, ROW * F32_BYTES),
                   (1, 4, F32_BYTES))
        b_terms = ((32, WARPS_N, wcols * ROW * F32_BYTES), (4, 8, ROW * F32_BYTES), (1, 4, F32_BYTES))
        body: list[Item] = []

        def fragment(name: str, ptr: Reg, terms: tuple, disp: int) -> Reg:
            v = sel.new(RegFile.B32)
            body.append(Instr(LOAD_SHARED_PAIR, Prim.LOAD_SHARED, v, (Mem(ptr, disp),), DType.I32,
                              warp=WarpAccess(True, name, Lin(disp, terms, (0,)), F32_BYTES)))
            return v

        a = [[fragment("As", a_ptr, a_terms, ((MMA_M * mt + 8 * (r % 2)) * ROW + 4 * (r // 2)) * F32_BYTES)
              for r in range(4)] for mt in range(M_TILES)]
        b = [[fragment("Bs", b_ptr, b_terms, (MMA_N * j * ROW + 4 * r) * F32_BYTES) for r in range(2)]
             for j in range(self.n_tiles)]
        prim = self.g.fmt.mma
        for mt in range(M_TILES):
            for j in range(self.n_tiles):
                acc = tuple(accs[mt][j])
                body.append(Instr(sel.mn(prim), prim, acc, tuple(a[mt]) + tuple(b[j]) + acc))
        return body

    # ---- the epilogue: the store expression for each accumulator register ------------------------
    def epilogue(self, accs) -> list[Item]:
        sel, g = self.sel, self.g
        row = sel.coords[self.mv][0]
        code: list[Item] = []
        store = g.store
        acc = self.kernel.phases[0].acc
        columns: dict[int, list[Reg]] = {}
        if g.fmt.int_sums:
            # each int32 sum to float32 once (cvt.rn.f32.s32), which the store then reads
            store = replace(store, value=_read_as_float(store.value, acc))
            for tile in (t for row_tiles in accs for t in row_tiles):
                for i, r in enumerate(tile):
                    tile[i] = f = sel.new(RegFile.FP)
                    code.append(Instr("cvt.rn.f32.s32", Prim.CVT_I2F, f, (r,)))
            # the dequantizing factors depend on the column only: each of the thread's 2 x n_tiles columns
            # computes them once, not once per row (its 4 x 2 x 2 rows would load the same table entries)
            parts = _column_parts(store.value, self.mv, acc)
            store = replace(store, value=_named(store.value, parts))
            cse: dict = {}
            for off in sorted({MMA_N * j + i % 2 for j in range(self.n_tiles) for i in range(2)}):
                columns[off] = [sel.expr(shifted_store(Map(None, 1, store.buf, store.index, p), {self.nv: off}).value,
                                         code, cse, 1, ()) for p in parts]
            for k in range(len(parts)):
                sel.scalar_fp[f"_column{k}"] = True
        for mt in range(M_TILES):
            for half in range(2):
                dm = MMA_M * mt + 8 * half
                guard, lins = None, ()
                if g.m % BM:
                    guard = self.op(code, Prim.ICMP_LT, row, Imm(g.m - dm), file=RegFile.PRED)
                    lins = ((Lin(dm, self.row_terms), g.m),)
                for j in range(self.n_tiles):
                    for i in (2 * half, 2 * half + 1):
                        for k, r in enumerate(columns.get(MMA_N * j + i % 2, ())):
                            sel.scalars[f"_column{k}"] = r
                        sel.guard, sel.guard_lins = guard, lins
                        sel.scalars[self.kernel.phases[0].acc] = accs[mt][j][i]
                        sel.scalar_fp[self.kernel.phases[0].acc] = True
                        sel.store(shifted_store(store, {self.mv: dm, self.nv: MMA_N * j + i % 2}), code, {}, 1, ())
        sel.guard, sel.guard_lins = None, ()
        return code


def _read_as_float(e, acc: str):
    """The expression with CVT_I2F(acc) read as acc itself (the epilogue has converted it already)."""
    if isinstance(e, Op):
        if e.prim is Prim.CVT_I2F and e.args == (Scalar(acc),):
            return Scalar(acc)
        return Op(e.prim, tuple(_read_as_float(a, acc) for a in e.args))
    return e


def _uses(e, var: str, acc: str) -> bool:
    """Whether an expression reads the loop variable `var` or the accumulator `acc`."""
    if isinstance(e, Scalar):
        return e.name == acc
    if isinstance(e, Load):
        return e.index.coef(var) != 0 or bool(e.index.dynamic)
    return isinstance(e, Op) and any(_uses(a, var, acc) for a in e.args)


def _column_parts(e, var: str, acc: str) -> list:
    """The largest parts of the store's expression that read neither the row variable nor the accumulator,
    and load something (a constant stays where it is)."""
    if not _uses(e, var, acc):
        return [e] if _loads_any(e) else []
    return [p for a in e.args for p in _column_parts(a, var, acc)] if isinstance(e, Op) else []


def _loads_any(e) -> bool:
    return isinstance(e, Load) or isinstance(e, Op) and any(_loads_any(a) for a in e.args)


def _named(e, parts: list):
    """The expression with each of `parts` read from Scalar "_column<k>"."""
    if e in parts:
        return Scalar(f"_column{parts.index(e)}")
    return Op(e.prim, tuple(_named(a, parts) for a in e.args)) if isinstance(e, Op) else e


@dataclass
class _Copy:
    prefetch: list  # the guarded global loads of the next slice (and their predicates)
    stores: list  # the loaded slice, packed, into the shared tile
    latch: list
