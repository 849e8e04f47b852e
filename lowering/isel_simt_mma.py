"""fp16 and bf16 GEMMs on a GPU's tensor cores (--precision fp16, bf16): the linear layers of
lowering/ops_fp16.py as `mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32`, and those of lowering/ops_bf16.py
as its `.bf16` twin (isa/mma.py has their fragments and arithmetic), staged through shared memory as
CUTLASS's multistage GEMMs are ("Efficient GEMM in CUDA", CUTLASS docs):

- A block of eight warps owns a 128 x BN tile of the output (BN = 128, 64 or 32, the largest that divides N).
  The warps form a 2 x 4 grid: warp (wm, wn) computes rows 64 wm .. 64 wm + 63 and BN / 4 columns, as
  4 x BN / 32 tiles of 16 x 8, each a chain of mma along k.
- Per step of 16 along k, the block copies its 128 x 16 slice of A and its BN x 16 slice of B into shared
  memory, a 32-bit word per pair of neighbours in k; waits at bar.sync; then each warp loads its fragments
  with ld.shared.b32 and multiplies; and waits again before the next slice overwrites the tiles.
- The global loads of slice t + 1 go out in trip t, into the registers the next trip stores from, so their
  latency hides behind this trip's mma (Volkov & Demmel's prefetch, as the float32 GEMM does).
- Shared rows are padded from 8 to 12 words: the eight rows a fragment load reads land on distinct banks.
  - fp16: A is the float32 activation, rounded and packed in pairs by `cvt.rn.f16x2.f32` as it is copied;
    B is the fp16 weight [N, K], each output's k contiguous.
  - bf16: A is the activation that `isasim.round_bf16` rounded (a 32-bit load per pair, no conversion), B the
    weight packed [K/2, N, 2] (models/bf16.py): a warp's loads of one k pair across 32 outputs are contiguous.
- Rows past M load 0, add nothing and are not stored; K is a multiple of 16 and N of 32 (models/fp16.py
  converts only such layers; a bf16 layer whose N is not is refused in one line).
- The epilogue is the kernel's store expression (the bias add) for each accumulator register.
Not yet: ldmatrix, cp.async and more than one stage in flight (the issue's next steps).
Each output's sum runs k = 0, 1, ..., K-1, from 0, as models/fp16.py's reference does (and models/bf16.py's
for the "mma" dot product).
"""

from __future__ import annotations

from dataclasses import dataclass

from isasim.isa.dtype import DType, F32_BYTES
from isasim.isa.errors import UserError
from isasim.isa.program import (Addr, BufferSpec, Imm, Instr, Item, Launch, Lin, Loop, Mem, Program, Reg, RegFile,
                                WarpAccess)
from isasim.isa.semantics import Prim
from isasim.isa.targets import Target
from isasim.lowering.isel_simt import SimtSelector, thread_index
from isasim.lowering.isel_simt_gemm import shifted_store
from isasim.lowering.kernel import Kernel, Load, Map, Op, Reduce

WARPS_M, WARPS_N = 2, 4
THREADS = 32 * WARPS_M * WARPS_N
MMA_M, MMA_N, MMA_K = 16, 8, 16
BM = 128  # rows of a block's tile
M_TILES = BM // WARPS_M // MMA_M  # 16-row tiles per warp
WORDS = MMA_K // 2  # 32-bit words (fp16 pairs) along k in a slice's row
ROW = WORDS + 4  # a shared row, padded (see the module docstring)
HALF = DType.F16.itemsize  # bytes of an fp16 or a bf16
LOAD_PAIR, PACK = "ld.global.b32", "cvt.rn.f16x2.f32"
LOAD_SHARED_PAIR, STORE_SHARED_PAIR = "ld.shared.b32", "st.shared.b32"


@dataclass(frozen=True)
class MmaShape:
    m: int
    n: int
    k: int
    a: Load  # fp16: the float32 activation [M, K]; bf16: the rounded one, [M, K] bf16
    b: Load  # fp16: the weight [N, K]; bf16: the weight packed [K/2, N, 2]
    store: Map
    bf16: bool  # the kernel's reduction runs over k pairs (Prim.DPBF16), each load naming a pair's first element


def mma_shape(kernel: Kernel) -> MmaShape:
    """The pieces of ops_fp16's or ops_bf16's linear (its batch loops merged into the rows)."""
    red, store = kernel.phases
    assert isinstance(red, Reduce) and isinstance(store, Map), kernel.name
    up = red.update
    bf16 = isinstance(up, Op) and up.prim is Prim.DPBF16
    assert bf16 or isinstance(up, Op) and up.prim is Prim.FMA and isinstance(up.args[0], Op) \
        and up.args[0].prim is Prim.ROUND_F16, kernel.name
    if any(e != 1 for _, e in kernel.parallel[:-2]):
        raise ValueError(f"{kernel.name}: a tensor-core linear's batch loops merge into its rows (a contiguous "
                         f"input)")
    (_, m), (_, n) = kernel.parallel[-2:]
    k = 2 * red.extent if bf16 else red.extent
    if n % 32 or k % MMA_K:
        raise UserError(f"{kernel.name}: the tensor-core GEMM needs N a multiple of 32 and K of {MMA_K}, not "
                        f"N {n}, K {k}: use --precision fp32 for this model on simt")
    return MmaShape(m, n, k, up.args[0] if bf16 else up.args[0].args[0], up.args[1], store, bf16)


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
        accs = [[[self.op(pro, Prim.FMOV, Imm(0.0), file=RegFile.FP) for _ in range(4)] for _ in range(self.n_tiles)]
                for _ in range(M_TILES)]
        code: list[Item] = []
        copy_a = self.copier("As", g.a, m0, self.m0_terms, BM, tid, code)
        copy_b = self.copier("Bs", g.b, n0, self.n0_terms, self.bn, tid, code)
        body: list[Item] = copy_a.stores + copy_b.stores
        body.append(Instr(sel.mn(Prim.BARRIER), Prim.BARRIER, None, ()))
        body += copy_a.prefetch + copy_b.prefetch
        body += self.products(wm, wn, grp, pair, accs)
        body.append(Instr(sel.mn(Prim.BARRIER), Prim.BARRIER, None, ()))
        trips = g.k // MMA_K
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
        kind = "bf16" if g.bf16 else "fp16"
        return Program(self.kernel.name, self.target.name, buffers, tuple(pro) + tuple(code), self.kernel.flops,
                       Launch(self.tiles_m * self.tiles_n, THREADS, shared, (),
                              f"tensor cores: mma.m16n8k16 {kind}, {BM}x{self.bn} tiles through shared memory"))

    # ---- the cooperative copy of one operand's slice into shared memory ------------------------------
    def copier(self, tile: str, load: Load, origin: Reg, origin_terms: tuple, rows: int, tid: Reg,
               code: list) -> "_Copy":
        """Word e = tid + 256 i of the slice (rows x 8 words of 16-bit pairs): row e / 8, word e % 8, so a
        warp reads four rows' consecutive k. fp16's A (float32): two loads and a cvt per word; otherwise one
        32-bit load of the pair."""
        sel, pro, g = self.sel, self.sel.prologue, self.g
        is_a = load is g.a
        converts = is_a and not g.bf16
        isz = F32_BYTES if converts else HALF
        extent = g.m if is_a else g.n
        ck, cv = load.index.coef(self.kv), load.index.coef(self.mv if is_a else self.nv)
        if not is_a and not g.bf16 and ck != 1:
            raise ValueError(f"{self.kernel.name}: the fp16 weight's k pairs must be contiguous")
        pair = (ck if g.bf16 else 2 * ck) * isz  # bytes from one k pair to the next (bf16: the loop runs over pairs)
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
        kpos = self.op(pro, Prim.IMUL, word, Imm(2))  # the k of the slice being loaded, which stops the prefetch
        pro.append(Instr(sel.mn(Prim.IADD), Prim.IADD, kpos, (kpos, Imm(MMA_K))))
        first: list[Item] = []
        prefetch: list[Item] = []
        stores: list[Item] = []
        per = THREADS // WORDS  # rows a pass of the block covers
        # slice t + 1 in trip t: nothing past the end of K (the last trip)
        more = self.op(prefetch, Prim.ICMP_LT, kpos, Imm(g.k), file=RegFile.PRED)
        k_guard = (Lin(MMA_K, ((1, WORDS, 2),), (MMA_K,)), g.k)
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
                width = isz if converts else 2 * HALF
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
                 Instr(sel.mn(Prim.IADD), Prim.IADD, kpos, (kpos, Imm(MMA_K)))]
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
        prim = Prim.MMA_BF16 if self.g.bf16 else Prim.MMA_F16
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
        for mt in range(M_TILES):
            for half in range(2):
                dm = MMA_M * mt + 8 * half
                guard, lins = None, ()
                if g.m % BM:
                    guard = self.op(code, Prim.ICMP_LT, row, Imm(g.m - dm), file=RegFile.PRED)
                    lins = ((Lin(dm, self.row_terms), g.m),)
                for j in range(self.n_tiles):
                    for i in (2 * half, 2 * half + 1):
                        sel.guard, sel.guard_lins = guard, lins
                        sel.scalars[self.kernel.phases[0].acc] = accs[mt][j][i]
                        sel.scalar_fp[self.kernel.phases[0].acc] = True
                        sel.store(shifted_store(g.store, {self.mv: dm, self.nv: MMA_N * j + i % 2}), code, {}, 1, ())
        sel.guard, sel.guard_lins = None, ()
        return code


@dataclass
class _Copy:
    prefetch: list  # the guarded global loads of the next slice (and their predicates)
    stores: list  # the loaded slice, packed, into the shared tile
    latch: list
