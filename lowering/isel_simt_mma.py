"""GEMMs on a GPU's tensor cores (--precision fp16, bf16, int8): the linear layers of lowering/ops_fp16.py as
`mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32`, those of lowering/ops_bf16.py as its `.bf16` twin, and
those of lowering/ops_quant.py as `mma.sync.aligned.m16n8k32.row.col.s32.s8.s8.s32` (isa/mma.py has their
fragments and arithmetic; lowering/mma_layout.py's `Format` says what differs); in fp16 also attention's two
matmuls, whose operands are fp16 activations (`matmul_shape`). They are staged through shared memory as
CUTLASS's multistage GEMMs are ("Efficient GEMM in CUDA", CUTLASS docs):

- A block of eight warps owns a BM x BN tile of the output (each 128, 64 or 32; `select_mma` keeps the one
  the cost model finds fastest on the GPU, or 128 x the largest BN that divides N); a batched matmul's blocks
  run matrix after matrix (attention's batch and heads).
  The warps form a 2 x 4 grid: warp (wm, wn) computes rows BM / 2 wm .. BM / 2 (wm + 1) - 1 and BN / 4
  columns, as BM / 32 x BN / 32 tiles of 16 x 8, each a chain of mma along k.
- The reduction runs in slices of one mma's k (16; 32 in int8): eight 32-bit words per row of A and B (two
  fp16 or bf16 neighbours in k a word, four int8). The slices pass through shared memory in a 3-stage
  pipeline, as CUTLASS's multistage GEMMs do: `cp.async` copies the slice two ahead straight from global
  memory into its stage (no registers), while the warps multiply the current one. Per slice each thread
  waits for its own copies of the slice (`cp.async.wait_group 1`: the group of the next slice may still be in
  flight), the block meets at bar.sync (everyone's copies have landed, and everyone is done with the stage the
  next copy overwrites), issues the next copy and commits it as a group (an empty group past the end of K, so
  the count stays uniform), loads its fragments with `ldmatrix` and runs its mma. The loop is unrolled by the
  three stages, so each stage's shared offsets are constants; the slices left over run after it. Which thread
  copies what is lowering/isel_simt_async.py's.
  - Every copy moves 16 bytes (`cp.async.cg`): half a row of k where k is contiguous in global memory (the
    activations, fp16's weight [N, K]), four columns of a row of n otherwise: attention's values [K, N], and a
    packed weight (bf16's [K/2, N, 2], int8's [K/4, N, 4], models/bf16.py and models/quantize.py, laid out for
    the CPU targets' dot products), whose rows of words along n shared memory keeps as they lie.
  - A is the fp16 activation (models/fp16.py stores every activation so), bf16's rounded activation, or int8's
    quantized one (7-bit, so valid signed bytes).
- `ldmatrix.x4` gives a warp a 16x16 A fragment (its four 8x8 matrices are the mma's a0..a3) or the B
  fragments of two 8-column tiles; B is held [n][k], the "col" layout, so no transpose is needed, except
  where B is [K, N] in memory (attention's values), which `ldmatrix.trans` transposes as it loads. For int8
  A's bytes are four k per word, and the same instruction loads them. A packed weight's word already holds
  the k a lane's b0 (or b1) needs, for one column, so each is one `ld.shared.b32`.
- Shared rows are padded from 8 to 12 words (48 bytes): the eight 16-byte rows an ldmatrix matrix reads land
  on all 32 banks once, and so do a warp's 16-byte copies.
- Rows past M are not copied (their shared rows keep stale values, which feed only output rows that are not
  stored). N is a multiple of 32 and K of one mma's k: models/fp16.py and bf16.py convert only such layers; an
  int8 layer that is not one (a classifier's two outputs) is left to the selector's byte-by-byte form
  (`int8_fits`).
- The epilogue is the kernel's store expression (the bias add; int8's dequantization) for each accumulator
  register; what depends on the column only is computed once per column the thread owns, before the first
  store, so its loads are in flight together. An fp16 output stores a thread's two neighbouring columns as one
  `cvt.rn.f16x2.f32` pair (`st.global.b32`).
Each output's sum runs k = 0, 1, ..., K-1, from 0, as models/fp16.py's reference does (and models/bf16.py's
for the "mma" dot product); integer sums are exact in any order.
"""

from __future__ import annotations

from dataclasses import replace

from isasim.isa.dtype import DType, F32_BYTES
from isasim.isa.errors import UserError
from isasim.isa.program import (Addr, BufferSpec, Imm, Instr, Item, Launch, Lin, Loop, Mem, Program, Reg, RegFile,
                                WarpAccess)
from isasim.isa.semantics import Prim
from isasim.isa.simt_cost import cost_simt
from isasim.isa.targets import Target
from isasim.lowering.isel_simt import SimtSelector, thread_index
from isasim.lowering.isel_simt_gemm import GemmShape, shifted_store
from isasim.lowering.isel_simt_async import operand_copy
from isasim.lowering.kernel import Kernel, Load, Map, Op, Reduce, Scalar, canonical
from isasim.lowering.mma_layout import (BF16, CHUNK, FP16, INT8, LDMATRIX, MMA_M, MMA_N, ROW, STAGES, THREADS,
                                        TILES, WARPS_M, WARPS_N, WORD_PAD, WORDS, MmaShape)

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


def matmul_shape(kernel: Kernel, g: GemmShape) -> MmaShape | None:
    """A float32 GEMM (lowering/ops_linalg.py: attention's two matmuls) whose operands are fp16 activations,
    as an fp16 tensor-core GEMM, or None where it does not fit one: A's k contiguous, B's k or n contiguous,
    every row, batch and slice start 16-byte aligned (cp.async.cg), N a multiple of 32 and K of 16. Its
    float32 FMAs over k in order equal isasim's mma bit for bit: the product of two fp16 numbers is exact, so
    each FMA rounds once, where the mma rounds each sum."""
    half = all(kernel.buffer(x.buf).dtype is DType.F16 for x in (g.a, g.b))
    if not half or g.n % 32 or g.k % FP16.k:
        return None
    (mv, _), (nv, _) = kernel.parallel[-2:]
    kv = kernel.phases[0].var
    b_rows = g.b.index.coef(kv) != 1
    aligned = [g.a.index.offset, g.b.index.offset, g.a.index.coef(mv), g.b.index.coef(kv if b_rows else nv)]
    aligned += [x.index.coef(v) for x in (g.a, g.b) for v, _ in g.batch]
    if g.a.index.coef(kv) != 1 or (b_rows and g.b.index.coef(nv) != 1) or any(c % 8 for c in aligned):
        return None
    return MmaShape(g.m, g.n, g.k, g.a, g.b, g.store, FP16, g.batch, b_rows)


def select_mma(kernel: Kernel, target: Target, shape: MmaShape | None = None, gpu=None) -> Program:
    """128 x BN tiles (BN the largest of 128, 64, 32 that divides N); given the GPU, whichever block tile the
    cost model finds fastest on it, as cuBLAS's heuristics and CUTLASS's profiler pick one per problem: a
    batch-1 layer's 128 rows make only N / BN blocks of 128-row tiles (6 for bert-base's 768 columns, on 108
    or 132 SMs), where 32 x 32 tiles make 16 times as many, each issuing fewer mma per fragment loaded."""
    g = shape or mma_shape(kernel)
    if gpu is None:
        return MmaBuilder(kernel, target, g).build()
    key = (canonical(kernel), gpu.key())
    if key not in _CHOSEN:  # the same GEMM in every layer is tuned once
        fits = [(bm, bn) for bm in TILES for bn in TILES if g.n % bn == 0]
        built = {t: MmaBuilder(kernel, target, g, *t).build() for t in fits}
        cycles = {t: cost_simt(program, gpu).cycles for t, program in built.items()}
        _CHOSEN[key] = min(fits, key=lambda t: cycles[t])  # (ties: the larger tiles, listed first)
        return built[_CHOSEN[key]]  # (the very program costed: cost_simt remembers it)
    return MmaBuilder(kernel, target, g, *_CHOSEN[key]).build()


_CHOSEN: dict = {}  # (canonical kernel, GPU) -> (BM, BN)


class MmaBuilder:
    def __init__(self, kernel: Kernel, target: Target, g: MmaShape, bm: int = TILES[0], bn: int | None = None):
        self.kernel, self.target, self.g = kernel, target, g
        self.sel = SimtSelector(kernel, target, {})
        self.mv, self.nv = kernel.parallel[-2][0], kernel.parallel[-1][0]
        self.kv = kernel.phases[0].var
        self.bm = bm  # rows of the block's tile
        self.m_tiles = bm // WARPS_M // MMA_M  # 16-row tiles per warp
        self.bn = bn or next(b for b in TILES if g.n % b == 0)
        self.n_tiles = self.bn // WARPS_N // MMA_N  # 8-column tiles per warp
        self.tiles_m, self.tiles_n = -(-g.m // self.bm), g.n // self.bn
        self.batches = 1
        for _, e in g.batch:
            self.batches *= e
        # closed forms of the block's first row and column (Lin terms of the thread id); a batched GEMM's
        # blocks run batch after batch
        self.m0_terms = ((THREADS * self.tiles_n, self.tiles_m if g.batch else 0, self.bm),)
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
        if g.batch:
            tm = self.op(pro, Prim.IREM, tm, Imm(self.tiles_m))
            self.batch_coordinates(cta)
        m0 = self.op(pro, Prim.IMUL, tm, Imm(self.bm))
        n0 = self.op(pro, Prim.IMUL, tn, Imm(self.bn))
        # the thread's first output: row m0 + 64 wm + g, column n0 + (BN / 4) wn + 2t
        wcols = self.bn // WARPS_N
        row = self.op(pro, Prim.IADD, m0, grp)
        self.add(pro, row, (wm, self.bm // WARPS_M))
        col = self.op(pro, Prim.IADD, n0, self.op(pro, Prim.IMUL, pair, Imm(2)))
        self.add(pro, col, (wn, wcols))
        self.row_terms = self.m0_terms + ((32 * WARPS_N, WARPS_M, self.bm // WARPS_M), (4, 8, 1))
        sel.coords[self.mv] = (row, self.row_terms)
        sel.coords[self.nv] = (col, self.n0_terms + ((32, WARPS_N, wcols), (1, 4, 2)))
        for v, _ in self.kernel.parallel[:-2]:  # batch loops of one trip (a linear's): coordinate 0
            if v not in sel.coords:
                sel.coords[v] = (self.op(pro, Prim.IMOV, Imm(0)), ())
        accs = [[[self.zero(pro) for _ in range(4)] for _ in range(self.n_tiles)] for _ in range(self.m_tiles)]
        trips = g.k // g.fmt.k  # slices of one mma's k
        copies = [operand_copy(self, "As", g.a, m0, self.m0_terms, self.bm, tid),
                  operand_copy(self, "Bs", g.b, n0, self.n0_terms, self.bn, tid)]
        self.fragment_pointers(lane, wm, wn, grp, pair)
        commit = Instr(sel.mn(Prim.CP_COMMIT), Prim.CP_COMMIT, None, ())
        code: list[Item] = []
        for slice_ in range(STAGES - 1):  # the first slices, a group each (empty past K), before the loop
            for c in copies if slice_ < trips else ():
                code += c.issue(slice_ * c.slice_bytes, slice_, ())
            code.append(commit)
        issued = self.op(pro, Prim.IMOV, Imm(STAGES - 1))  # the slice the loop's first copy fetches

        def trip(u: int, depth: int, fetch: bool) -> list[Item]:
            """Slice u (mod STAGES): wait until it has landed and every warp is done with the stage the next
            copy overwrites, fetch slice u + STAGES - 1 into that stage, then multiply slice u."""
            body: list[Item] = [Instr(sel.mn(Prim.CP_WAIT), Prim.CP_WAIT, None, (Imm(STAGES - 2),)),
                                Instr(sel.mn(Prim.BARRIER), Prim.BARRIER, None, ())]
            if fetch:
                more = self.op(body, Prim.ICMP_LT, issued, Imm(trips - u), file=RegFile.PRED)
                guard = (more, Lin(u + STAGES - 1, (), (STAGES,)), trips)
                for c in copies:
                    body += c.issue((u + STAGES - 1) * c.slice_bytes, (u + STAGES - 1) % STAGES, (0,), guard,
                                    STAGES * c.slice_bytes)
            body.append(commit)
            return body + self.products(u, accs, (0,) * depth)

        loops, rest = divmod(trips, STAGES)
        if loops:  # STAGES trips a loop trip, each on its own stage (a stage's offsets are constants)
            body = [it for u in range(STAGES) for it in trip(u, 1, True)]
            counter = sel.new(RegFile.GP)
            code.append(Instr(sel.mn(Prim.IMOV), Prim.IMOV, counter, (Imm(loops),)))
            more = sel.new(RegFile.PRED)
            latch = tuple(i for c in copies for i in c.latch) + (
                Instr(sel.mn(Prim.IADD), Prim.IADD, issued, (issued, Imm(STAGES))),
                Instr(sel.mn(Prim.ISUB), Prim.ISUB, counter, (counter, Imm(1))),
                Instr(sel.mn(Prim.ICMP_NE), Prim.ICMP_NE, more, (counter, Imm(0))),
                Instr(sel.mn(Prim.BRANCH_NZ), Prim.BRANCH_NZ, None, (more,)))
            code.append(Loop(counter, loops, tuple(body), latch, False, self.kv))
        for u in range(rest):  # the last slices: everything is fetched already
            code += trip(u, 0, False)
        code += self.epilogue(accs)
        buffers = tuple(BufferSpec(b.name, b.size, b.dtype, b.is_output) for b in self.kernel.buffers)
        shared = (BufferSpec("As", STAGES * self.bm * ROW, DType.F32, False),
                  BufferSpec("Bs", STAGES * self.b_stage // F32_BYTES, DType.F32, False))
        return Program(self.kernel.name, self.target.name, buffers, tuple(pro) + tuple(code), self.kernel.flops,
                       Launch(self.batches * self.tiles_m * self.tiles_n, THREADS, shared, (),
                              f"tensor cores: mma.m16n8k{g.fmt.k} {g.fmt.name}, {self.bm}x{self.bn} tiles, "
                              f"{STAGES}-stage cp.async pipeline, ldmatrix fragments"))

    def batch_coordinates(self, cta: Reg) -> None:
        """Each batch loop's coordinate from the block: blocks cta // (tiles of one matrix), innermost loop
        fastest."""
        pro, inner = self.sel.prologue, self.tiles_m * self.tiles_n
        for i, (v, e) in reversed(list(enumerate(self.g.batch))):
            x = self.op(pro, Prim.IDIV, cta, Imm(inner))
            outermost = i == 0
            c = x if outermost else self.op(pro, Prim.IREM, x, Imm(e))
            self.sel.coords[v] = (c, ((THREADS * inner, 0 if outermost else e, 1),))
            inner *= e

    def zero(self, code: list) -> Reg:
        """An accumulator register at 0: float32, or int32 in a B32 register."""
        if self.g.fmt.int_sums:
            r = self.sel.new(RegFile.B32)
            code.append(Instr("mov.b32", Prim.IMOV, r, (Imm(0),)))
            return r
        return self.op(code, Prim.FMOV, Imm(0.0), file=RegFile.FP)

    # ---- the warp's fragments from shared memory (ldmatrix), and its mma ---------------------------
    def fragment_pointers(self, lane: Reg, wm: Reg, wn: Reg, grp: Reg, pair: Reg) -> None:
        """The row each lane names to ldmatrix. A, per 16-row tile (.x4): lanes 8j .. 8j + 7 name the rows of
        matrix j = rows 8 (j % 2) + 0..7, k half j / 2, so the four registers are the mma's a0..a3. B, per two
        8-column tiles (.x4; .x2 for one): matrix j = the columns of tile j / 2, k half j % 2, so registers
        (0, 1) and (2, 3) are the two tiles' b0, b1 (B is held [n][k] in shared memory, the "col" layout).
        B held [k][n] (attention's values): matrix j = k rows 8 (j % 2) + 0..7 of tile j / 2's columns, read
        with ldmatrix.trans, which hands each lane the transpose: the same registers. Its rows are BN x 2 + 16
        bytes apart, so the eight 16-byte rows of a matrix fall on distinct banks (BN = 32, 64, 128).
        A packed weight's words (B held [k word][n]): a lane's b0 is word t of column g, b1 word t + 4, each one
        ld.shared.b32 (ldmatrix's transpose moves 16-bit elements, not words). Rows are BN + 8 words apart, so
        a warp's 32 words (t = 0..3, g = 0..7) fall on 32 distinct banks."""
        pro = self.sel.prologue
        wcols = self.bn // WARPS_N
        line = ROW * F32_BYTES
        r8 = self.op(pro, Prim.IREM, lane, Imm(8))
        q2 = self.op(pro, Prim.IREM, self.op(pro, Prim.IDIV, lane, Imm(8)), Imm(2))
        hi = self.op(pro, Prim.IDIV, lane, Imm(16))
        self.a_ptr = self.op(pro, Prim.IMOV, Addr("As", 0))
        self.add(pro, self.a_ptr, (wm, self.bm // WARPS_M * line), (r8, line), (q2, 8 * line), (hi, CHUNK))
        self.a_terms = ((32 * WARPS_N, WARPS_M, self.bm // WARPS_M * line), (1, 8, line), (8, 2, 8 * line),
                        (16, 2, CHUNK))
        self.b_ptr = self.op(pro, Prim.IMOV, Addr("Bs", 0))
        if self.g.b_words:
            b_line = (self.bn + WORD_PAD) * F32_BYTES
            self.add(pro, self.b_ptr, (wn, wcols * F32_BYTES), (grp, F32_BYTES), (pair, b_line))
            self.b_terms = ((32, WARPS_N, wcols * F32_BYTES), (4, 8, F32_BYTES), (1, 4, b_line))
            self.b_stage, self.b_pair = WORDS * b_line, b_line * WORDS // 2  # a stage; b0 to b1 (4 words of k on)
        elif self.g.b_rows:
            b_line, half = self.bn * 2 + CHUNK, 2  # (fp16: 2 bytes a column)
            self.add(pro, self.b_ptr, (wn, wcols * half), (r8, b_line), (q2, 8 * b_line), (hi, MMA_N * half))
            self.b_terms = ((32, WARPS_N, wcols * half), (1, 8, b_line), (8, 2, 8 * b_line), (16, 2, MMA_N * half))
            self.b_stage, self.b_pair = FP16.k * b_line, 2 * MMA_N * half  # a stage; two column tiles
        else:
            self.add(pro, self.b_ptr, (wn, wcols * line), (r8, line), (hi, 8 * line), (q2, CHUNK))
            self.b_terms = ((32, WARPS_N, wcols * line), (1, 8, line), (16, 2, 8 * line), (8, 2, CHUNK))
            self.b_stage, self.b_pair = self.bn * line, 2 * MMA_N * line

    def products(self, stage: int, accs, strides: tuple) -> list[Item]:
        """Stage `stage`'s fragments, then the mma of every (row tile, column tile)."""
        sel = self.sel
        line = ROW * F32_BYTES
        body: list[Item] = []

        def matrices(name: str, ptr: Reg, terms: tuple, disp: int, count: int, trans: bool = False
                     ) -> tuple[Reg, ...]:
            regs = tuple(sel.new(RegFile.B32) for _ in range(count))
            guards = ((Lin(0, ((1, 32, 1),)), 8 * count),) if count < 4 else ()  # the lanes that name rows
            prim = Prim.LDMATRIX_T if trans else Prim.LDMATRIX
            body.append(Instr(LDMATRIX[count].replace(".shared", ".trans.shared") if trans else LDMATRIX[count],
                              prim, regs, (Mem(ptr, disp),), DType.I32,
                              warp=WarpAccess(True, name, Lin(disp, terms, strides), CHUNK, guards)))
            return regs

        a = [matrices("As", self.a_ptr, self.a_terms, (stage * self.bm + MMA_M * mt) * line, 4) for mt in range(self.m_tiles)]
        b: list[tuple[Reg, ...]] = []
        for j in range(self.n_tiles) if self.g.b_words else ():  # a packed weight's words: b0, b1 a load each
            regs = tuple(sel.new(RegFile.B32) for _ in range(2))
            for i, r in enumerate(regs):
                disp = stage * self.b_stage + j * MMA_N * F32_BYTES + i * self.b_pair
                body.append(Instr("ld.shared.b32", Prim.LOAD_SHARED, r, (Mem(self.b_ptr, disp),), DType.I32,
                                  warp=WarpAccess(True, "Bs", Lin(disp, self.b_terms, strides), F32_BYTES)))
            b.append(regs)
        for j2 in range(-(-self.n_tiles // 2)) if not self.g.b_words else ():
            count = 4 if 2 * j2 + 1 < self.n_tiles else 2
            regs = matrices("Bs", self.b_ptr, self.b_terms, stage * self.b_stage + j2 * self.b_pair, count,
                            self.g.b_rows)
            b += [regs[:2], regs[2:]] if count == 4 else [regs]
        prim = self.g.fmt.mma
        for mt in range(self.m_tiles):
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
        # what depends on the column only (the bias; int8's dequantizing factors): each of the thread's
        # 2 x n_tiles columns computes it once, not once per row (its 4 x 2 x 2 rows would load the same table
        # entries), and all of them before the first store, so their loads are in flight together
        parts = _column_parts(store.value, self.mv, acc)
        store = replace(store, value=_named(store.value, parts))
        cse: dict = {}
        for off in sorted({MMA_N * j + i % 2 for j in range(self.n_tiles) for i in range(2)}):
            columns[off] = [sel.expr(shifted_store(Map(None, 1, store.buf, store.index, p), {self.nv: off}).value,
                                     code, cse, 1, ()) for p in parts]
        for k in range(len(parts)):
            sel.scalar_fp[f"_column{k}"] = True
        # fp16 outputs: a thread's two neighbouring columns (2t, 2t + 1) in one 32-bit store, as a half2
        aligned = store.index.offset % 2 == 0 and all(c % 2 == 0 for v, c in store.index.terms if v != self.nv)
        pairs = self.kernel.buffer(store.buf).dtype is DType.F16 and store.index.coef(self.nv) == 1 and aligned
        for mt in range(self.m_tiles):
            for half in range(2):
                dm = MMA_M * mt + 8 * half
                guard, lins = None, ()
                if g.m % self.bm:
                    guard = self.op(code, Prim.ICMP_LT, row, Imm(g.m - dm), file=RegFile.PRED)
                    lins = ((Lin(dm, self.row_terms), g.m),)
                for j in range(self.n_tiles):
                    places = []
                    for i in (2 * half, 2 * half + 1):
                        for k, r in enumerate(columns.get(MMA_N * j + i % 2, ())):
                            sel.scalars[f"_column{k}"] = r
                        sel.scalars[acc] = accs[mt][j][i]
                        sel.scalar_fp[acc] = True
                        places.append(shifted_store(store, {self.mv: dm, self.nv: MMA_N * j + i % 2}))
                        sel.guard, sel.guard_lins = guard, lins  # (rows past M: no load, no store)
                        if not pairs:
                            sel.store(places[-1], code, {}, 1, ())
                        else:
                            places[-1] = (places[-1], sel.expr(places[-1].value, code, {}, 1, ()))
                    if pairs:
                        sel.store_pair(*places, code, {}, 1, ())
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
