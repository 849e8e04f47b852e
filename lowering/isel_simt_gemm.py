"""GEMMs on the GPU SIMT target: output tiles staged through shared memory, a register tile per thread.

The classic SIMT SGEMM (Volkov & Demmel, SC 2008; CUTLASS's SIMT path, "Efficient GEMM in CUDA"):
- a block of 16x16 threads owns a 64x64 tile of the output; each thread accumulates a 4x4 register tile,
  rows ty + 16r and columns tx + 16c, so a warp's stores cover 16 consecutive columns (coalesced); when
  64x64 tiles would leave SMs idle, 32x32 tiles with 2x2 per thread may be faster, and where shared memory's
  bandwidth decides, 128x128 tiles with 8x8 per thread (half the shared bytes per FMA, read as two .v4
  loads; select_gemm asks the cost model);
- per step of 16 along k, the block's threads copy the 64x16 slice of A and the 16x64 slice of B into shared
  memory (four elements each, consecutive threads on the operand's contiguous dimension, so each warp's
  loads are coalesced), wait at bar.sync, then run 16 k-steps of two vector shared loads (`ld.shared.v4.f32`,
  `.v2` for 2x2 tiles: the thread's rows of A and columns of B for that k) and 16 FMAs from registers, and
  wait again before the next slice overwrites the tiles;
- the tiles are stored k-major; within a row, element v sits at slot (v % 16) x 4 + v / 16 (x 2 for 2x2),
  so one thread's four values are adjacent words, and rows are padded by 4 words, which keeps each row
  16-byte aligned for the vector loads. A warp's load of B then reads 16 distinct 16-byte groups, its load of
  A two groups broadcast to 16 threads each, with no bank conflict: what bounds them is the path that returns
  128 bytes a clock to the registers (isa/simt_memory.py), 4 wavefronts for B's .v4 and 2 for A's, whose
  neighbouring threads share an address (CUTLASS's SIMT SGEMM reads its fragments as 128-bit vectors too);
- edges (M, N or K not a multiple of the tile) are guarded: a copy past the edge stores 0, which adds nothing.
Each output's sum runs k = 0, 1, ..., K-1 through one fused multiply-add chain, as on the CPU targets.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from isasim.isa.program import (Addr, BufferSpec, Imm, Instr, Item, Launch, Lin, Loop, Mem, Program, Reg, RegFile,
                                WarpAccess)
from isasim.isa.semantics import Prim
from isasim.isa.simt_cost import cost_simt
from isasim.isa.targets import Target
from isasim.lowering.isel_simt import BLOCK, SimtSelector, thread_index
from isasim.lowering.kernel import (Affine, Kernel, Load, Map, Op, Reduce, Scalar, canonical, reindexed,
                                    reindexed_map)
from isasim.isa.dtype import DType, F32_BYTES

SIDE = 16  # threads along each edge of the block (16 x 16 = BLOCK)
STEP = 16  # k per shared-memory slice
PAD = 4  # words added to each shared row (see the module docstring)
VECTOR = {4: "ld.shared.v4.f32", 2: "ld.shared.v2.f32"}  # a thread's register-tile row (or column), 4 words a load
REGISTER_TILES = (4, 2, 8)  # outputs per thread along each edge: 64x64 tiles, 32x32 where those are too few,
#                             128x128 where the shared loads per FMA decide (ties keep the first)
MIN_EDGE = 32  # smaller GEMMs (the pooler's single row) run a warp per output instead


@dataclass(frozen=True)
class GemmShape:
    batch: tuple[tuple[str, int], ...]
    m: int
    n: int
    k: int
    a: Load
    b: Load
    store: Map


def merged_rows(kernel: Kernel) -> Kernel:
    """A batched GEMM whose batch loops only extend its rows, as one GEMM of batch x rows rows: a linear layer
    over [batch, seq, hidden] is one GEMM of batch x seq rows (as cuBLAS sees it), which keeps its tiles full
    when seq alone is short. A batch loop merges into the rows when every index reads it as the next rows
    (its coefficient is rows x the rows' coefficient, zero for the shared weights); a batched matmul whose
    second operand changes with the batch (attention) keeps its batch loops, and so does a loop of one trip."""
    while len(kernel.parallel) >= 3 and len(kernel.phases) == 2 and isinstance(kernel.phases[0], Reduce) \
            and isinstance(kernel.phases[1], Map):
        (bv, batch), (mv, m), (nv, n) = kernel.parallel[-3:]
        red, store = kernel.phases
        indices = [e.index for e in _loads(red.update) + _loads(store.value)] + [store.index]
        if batch == 1 or any(a.dynamic or a.coef(bv) != m * a.coef(mv) for a in indices):
            break

        def ix(a: Affine) -> Affine:
            return Affine(a.offset, tuple((v, c) for v, c in a.terms if v != bv), a.dynamic)

        phases = (Reduce(red.var, red.extent, red.acc, reindexed(red.init, ix), reindexed(red.update, ix),
                         red.store), reindexed_map(store, ix))
        kernel = replace(kernel, parallel=kernel.parallel[:-3] + ((mv, batch * m), (nv, n)), phases=phases)
    return kernel


def _loads(e) -> list[Load]:
    if isinstance(e, Load):
        return [e]
    return [x for a in e.args for x in _loads(a)] if isinstance(e, Op) else []


def gemm_shape(kernel: Kernel) -> GemmShape | None:
    """The pieces of a GEMM kernel (lowering/ops_linalg.py), or None for any other kernel or a small one."""
    if len(kernel.phases) != 2 or len(kernel.parallel) < 2:
        return None
    red, store = kernel.phases
    if not (isinstance(red, Reduce) and isinstance(store, Map) and store.var is None):
        return None
    up = red.update
    if not (isinstance(up, Op) and up.prim is Prim.FMA and isinstance(up.args[0], Load)
            and isinstance(up.args[1], Load) and up.args[2] == Scalar(red.acc)):
        return None
    (mv, m), (nv, n) = kernel.parallel[-2:]
    a, b = up.args[0], up.args[1]
    if a.index.dynamic or b.index.dynamic or a.index.coef(nv) or b.index.coef(mv) or min(m, n) < MIN_EDGE:
        return None
    return GemmShape(kernel.parallel[:-2], m, n, red.extent, a, b, store)


def select_gemm(kernel: Kernel, target: Target, g: GemmShape, gpu=None) -> Program:
    """64x64 tiles; given the GPU, whichever register tile the cost model finds fastest on it (as cuBLAS's
    heuristics and Triton's autotuner pick tiles per problem: 64x64 tiles may leave SMs idle on small
    problems, 32x32 ones issue twice the shared loads per FMA, 128x128 ones half as many but hold 64
    accumulators a thread)."""
    if gpu is None:
        return GemmBuilder(kernel, target, g, REGISTER_TILES[0]).build()
    key = (canonical(kernel), gpu.key())
    if key not in _CHOSEN:  # the same GEMM in every layer is tuned once
        built = {per: GemmBuilder(kernel, target, g, per).build() for per in REGISTER_TILES}
        cycles = {per: cost_simt(program, gpu).cycles for per, program in built.items()}
        _CHOSEN[key] = min(REGISTER_TILES, key=lambda per: cycles[per])
        return built[_CHOSEN[key]]  # (the very program costed: cost_simt remembers it, so it is not costed twice)
    return GemmBuilder(kernel, target, g, _CHOSEN[key]).build()


_CHOSEN: dict = {}  # (canonical kernel, GPU) -> register tile


class GemmBuilder:
    def __init__(self, kernel: Kernel, target: Target, g: GemmShape, per: int):
        self.kernel, self.target, self.g = kernel, target, g
        self.per = per
        self.tile = SIDE * per
        self.row = self.tile + PAD
        self.sel = SimtSelector(kernel, target, {})
        self.mv, self.nv = kernel.parallel[-2][0], kernel.parallel[-1][0]
        self.red: Reduce = kernel.phases[0]
        self.tiles_m, self.tiles_n = -(-g.m // self.tile), -(-g.n // self.tile)
        self.batch_points = 1
        for _, e in g.batch:
            self.batch_points *= e
        self.grid = self.batch_points * self.tiles_m * self.tiles_n

    # ---- small helpers ----------------------------------------------------------------------------
    def op(self, code: list, prim: Prim, *srcs, file: RegFile = RegFile.GP) -> Reg:
        return self.sel.emit(code, prim, tuple(srcs), file)

    def isz(self, buf: str) -> int:
        return self.kernel.buffer(buf).dtype.itemsize

    def build(self) -> Program:
        sel, g, pro = self.sel, self.g, self.sel.prologue
        gid = thread_index(sel, BLOCK)
        tid = pro[0].dst
        cta = pro[1].dst
        tx = self.op(pro, Prim.IREM, tid, Imm(SIDE))
        ty = self.op(pro, Prim.IDIV, tid, Imm(SIDE))
        tn = self.op(pro, Prim.IREM, cta, Imm(self.tiles_n))
        rest = self.op(pro, Prim.IDIV, cta, Imm(self.tiles_n))
        tm = self.op(pro, Prim.IREM, rest, Imm(self.tiles_m)) if g.batch else rest
        # coordinates of the thread's first output (row ty, column tx of its tile) and of its batch
        per_block = BLOCK * self.tiles_n
        m0 = self.op(pro, Prim.IMUL, tm, Imm(self.tile))
        row = self.op(pro, Prim.IADD, m0, ty)
        n0 = self.op(pro, Prim.IMUL, tn, Imm(self.tile))
        col = self.op(pro, Prim.IADD, n0, tx)
        sel.coords[self.mv] = (row, ((per_block, self.tiles_m if g.batch else 0, self.tile), (SIDE, SIDE, 1)))
        sel.coords[self.nv] = (col, ((BLOCK, self.tiles_n, self.tile), (1, SIDE, 1)))
        self.m0, self.n0 = (m0, ((per_block, self.tiles_m if g.batch else 0, self.tile),)), \
            (n0, ((BLOCK, self.tiles_n, self.tile),))
        if g.batch:
            b = self.op(pro, Prim.IDIV, cta, Imm(self.tiles_n * self.tiles_m))
            inner = 1
            for i, (var, extent) in reversed(list(enumerate(g.batch))):
                x = b if inner == 1 else self.op(pro, Prim.IDIV, b, Imm(inner))
                c = x if i == 0 else self.op(pro, Prim.IREM, x, Imm(extent))
                sel.coords[var] = (c, ((BLOCK * self.tiles_n * self.tiles_m * inner, 0 if i == 0 else extent, 1),))
                inner *= extent
        del gid
        accs = [[self.op(pro, Prim.FMOV, Imm(0.0), file=RegFile.FP) for _ in range(self.per)] for _ in range(self.per)]
        code: list[Item] = []
        copy_a = self.copier("As", g.a, self.mv, g.m, tid, code)
        copy_b = self.copier("Bs", g.b, self.nv, g.n, tid, code)
        # per trip: the loaded slice into shared memory; wait; prefetch the next slice into the same registers
        # (its loads' latency hides behind this slice's FMAs: Volkov & Demmel's double buffering); compute; wait
        body: list[Item] = copy_a.stores + copy_b.stores
        body.append(Instr(sel.mn(Prim.BARRIER), Prim.BARRIER, None, ()))
        body += copy_a.body + copy_b.body
        body += self.products(ty, tx, accs, code)
        body.append(Instr(sel.mn(Prim.BARRIER), Prim.BARRIER, None, ()))
        counter = sel.new(RegFile.GP)
        code.append(Instr(sel.mn(Prim.IMOV), Prim.IMOV, counter, (Imm(-(-g.k // STEP)),)))
        more = sel.new(RegFile.PRED)
        latch = tuple(copy_a.latch + copy_b.latch) + (
            Instr(sel.mn(Prim.ISUB), Prim.ISUB, counter, (counter, Imm(1))),
            Instr(sel.mn(Prim.ICMP_NE), Prim.ICMP_NE, more, (counter, Imm(0))),
            Instr(sel.mn(Prim.BRANCH_NZ), Prim.BRANCH_NZ, None, (more,)))
        code.append(Loop(counter, -(-g.k // STEP), tuple(body), latch, False, self.red.var))
        code += self.epilogue(accs)
        buffers = tuple(BufferSpec(b.name, b.size, b.dtype, b.is_output) for b in self.kernel.buffers)
        shared = (BufferSpec("As", STEP * self.row, DType.F32, False), BufferSpec("Bs", STEP * self.row, DType.F32, False))
        return Program(self.kernel.name, self.target.name, buffers, tuple(pro) + tuple(code), self.kernel.flops,
                       Launch(self.grid, BLOCK, shared, (),
                              f"{self.tile}x{self.tile} shared-memory tiles, {self.per}x{self.per} per thread"))

    # ---- the cooperative copy of one operand's slice into shared memory ------------------------------
    def copier(self, tile: str, load: Load, var: str, extent: int, tid: Reg, code: list) -> "_Copy":
        """Copy code for one operand: four elements per thread per k step, consecutive threads along the
        operand's contiguous dimension (k, or the output dimension `var`)."""
        sel, pro, isz = self.sel, self.sel.prologue, self.isz(load.buf)
        kv = self.red.var
        ck, cv = load.index.coef(kv), load.index.coef(var)
        k_fast = abs(ck) == 1 or cv == 0
        # element e = tid + 256 i of the 16 x 64 slice: (kk, vv)
        if k_fast:
            kk, vv = self.op(pro, Prim.IREM, tid, Imm(STEP)), self.op(pro, Prim.IDIV, tid, Imm(STEP))
            k_terms, v_terms, di_k, di_v = ((1, STEP, 1),), ((STEP, SIDE, 1),), 0, BLOCK // STEP
        else:
            vv, kk = self.op(pro, Prim.IREM, tid, Imm(self.tile)), self.op(pro, Prim.IDIV, tid, Imm(self.tile))
            v_terms, k_terms, di_v, di_k = ((1, self.tile, 1),), ((self.tile, BLOCK // self.tile, 1),), 0, BLOCK // self.tile
        origin, origin_terms = self.m0 if var == self.mv else self.n0
        # the global pointer: the operand's element (origin + vv, kk) of this thread's batch
        ptr = self.op(pro, Prim.IADD, sel.base(load.buf), Imm(load.index.offset * isz))
        terms = []
        for v in dict.fromkeys(x for x, _ in load.index.terms):
            c = load.index.coef(v)
            if v in (kv, var) or not c:
                continue
            reg, lin = sel.coords[v]
            t = self.op(pro, Prim.IMUL, reg, Imm(c * isz))
            pro.append(Instr(sel.mn(Prim.IADD), Prim.IADD, ptr, (ptr, t)))
            terms += [(d, mo, mu * c * isz) for d, mo, mu in lin]
        pos = self.op(pro, Prim.IADD, origin, vv)
        for reg, coef in ((pos, cv), (kk, ck)):
            if coef:
                t = self.op(pro, Prim.IMUL, reg, Imm(coef * isz))
                pro.append(Instr(sel.mn(Prim.IADD), Prim.IADD, ptr, (ptr, t)))
        terms += [(d, mo, mu * cv * isz) for d, mo, mu in origin_terms + v_terms]
        terms += [(d, mo, mu * ck * isz) for d, mo, mu in k_terms]
        # the shared address this thread writes: tile[kk][slot(vv)], slot(v) = (v % 16) x per + v / 16, so that
        # the per rows (or columns) v, v + 16, ... of one thread's register tile sit side by side
        sptr = self.op(pro, Prim.IMOV, Addr(tile, 0))
        t = self.op(pro, Prim.IMUL, kk, Imm(self.row * F32_BYTES))
        pro.append(Instr(sel.mn(Prim.IADD), Prim.IADD, sptr, (sptr, t)))
        t = self.op(pro, Prim.IMUL, self.op(pro, Prim.IREM, vv, Imm(SIDE)), Imm(self.per * F32_BYTES))
        pro.append(Instr(sel.mn(Prim.IADD), Prim.IADD, sptr, (sptr, t)))
        if not k_fast:  # (k_fast: vv < 16)
            t = self.op(pro, Prim.IMUL, self.op(pro, Prim.IDIV, vv, Imm(SIDE)), Imm(F32_BYTES))
            pro.append(Instr(sel.mn(Prim.IADD), Prim.IADD, sptr, (sptr, t)))
        slot_terms = ((STEP, SIDE, self.per * F32_BYTES),) if k_fast else \
            ((1, SIDE, self.per * F32_BYTES), (SIDE, self.per, F32_BYTES))
        s_terms = tuple((d, mo, mu * self.row * F32_BYTES) for d, mo, mu in k_terms) + slot_terms
        first: list[Item] = []  # slice 0, before the loop
        body: list[Item] = []  # slice t + 1, in trip t
        stores: list[Instr] = []
        step = STEP * ck * isz
        # the position along k of the slice being loaded, which stops the prefetch at the matrix's end
        kpos = self.op(pro, Prim.IADD, kk, Imm(STEP))
        latch = [Instr(sel.mn(Prim.IADD), Prim.IADD, ptr, (ptr, Imm(step))),
                 Instr(sel.mn(Prim.IADD), Prim.IADD, kpos, (kpos, Imm(STEP)))]
        for i in range(self.per):
            dk, dv = di_k * i, di_v * i
            rows: list = []
            row_pred = None
            if extent % self.tile:
                rows.append((Lin(dv, tuple(origin_terms + v_terms)), extent))
                row_pred = self.op(pro, Prim.ICMP_LT, pos, Imm(extent - dv), file=RegFile.PRED)
            half = self.kernel.buffer(load.buf).dtype is DType.F16  # an fp16 activation: bits, converted below
            value = sel.new(RegFile.B32 if half else RegFile.FP)
            disp = (dv * cv + dk * ck) * isz
            # slice 0: guarded along k only when K is shorter than one slice
            guards, pred = list(rows), row_pred
            if self.g.k < STEP:
                guards.append((Lin(dk, k_terms), self.g.k))
                kp = self.op(pro, Prim.ICMP_LT, kk, Imm(self.g.k - dk), file=RegFile.PRED)
                pred = kp if pred is None else self.op(pro, Prim.PAND, kp, pred, file=RegFile.PRED)
            self.guarded_load(first, value, pred, Mem(ptr, disp),
                              WarpAccess(False, load.buf, Lin(load.index.offset * isz + disp, tuple(terms)), isz,
                                         tuple(guards)))
            # slice t + 1 in trip t: past the end of K (the last trip, or a K tail) nothing is loaded
            kp = self.op(body, Prim.ICMP_LT, kpos, Imm(self.g.k - dk), file=RegFile.PRED)
            pred = kp if row_pred is None else self.op(body, Prim.PAND, kp, row_pred, file=RegFile.PRED)
            self.guarded_load(body, value, pred, Mem(ptr, disp),
                              WarpAccess(False, load.buf, Lin(load.index.offset * isz + disp + step, tuple(terms),
                                                              (step,)),
                                         isz, tuple(rows) + ((Lin(dk + STEP, k_terms, (STEP,)), self.g.k),)))
            sdisp = (dk * self.row + dv // SIDE) * F32_BYTES  # (slot(v + 16 i) = slot(v) + i)
            if half:
                bits, value = value, sel.new(RegFile.FP)
                stores.append(Instr(sel.mn(Prim.CVT_H2F), Prim.CVT_H2F, value, (bits,)))
            stores.append(Instr(sel.mn(Prim.STORE_SHARED), Prim.STORE_SHARED, Mem(sptr, sdisp), (value,), DType.F32,
                                warp=WarpAccess(True, tile, Lin(sdisp, s_terms, (0,)), F32_BYTES)))
        first.append(Instr(sel.mn(Prim.IADD), Prim.IADD, ptr, (ptr, Imm(step))))
        code.extend(first)
        return _Copy(body, stores, latch)

    def guarded_load(self, code: list, value: Reg, pred: Reg | None, mem: Mem, access: WarpAccess) -> None:
        """value = the element (an fp16 one's bits, in a B32 register), or 0 where the guard is false (outside
        the matrix the tile holds 0; fp16's 0 is all bits clear)."""
        dtype = self.kernel.buffer(access.buf).dtype
        if pred is not None:
            zero = (Instr("mov.b32", Prim.IMOV, value, (Imm(0),)) if value.file is RegFile.B32 else
                    Instr(self.sel.mn(Prim.FMOV), Prim.FMOV, value, (Imm(0.0),)))
            code.append(zero)
        code.append(Instr(self.target.loads[dtype], Prim.LOAD, value, (mem,), dtype, mask=pred, warp=access))

    # ---- the register tile's k steps -----------------------------------------------------------------
    def products(self, ty: Reg, tx: Reg, accs, code: list) -> list[Item]:
        sel, pro = self.sel, self.sel.prologue
        width = self.per * F32_BYTES  # a thread's per values of one k, side by side (see `copier`)
        a_ptr = self.op(pro, Prim.IMOV, Addr("As", 0))
        t = self.op(pro, Prim.IMUL, ty, Imm(width))
        pro.append(Instr(sel.mn(Prim.IADD), Prim.IADD, a_ptr, (a_ptr, t)))
        b_ptr = self.op(pro, Prim.IMOV, Addr("Bs", 0))
        t = self.op(pro, Prim.IMUL, tx, Imm(width))
        pro.append(Instr(sel.mn(Prim.IADD), Prim.IADD, b_ptr, (b_ptr, t)))
        loads: list[list[Instr]] = []
        operands = []
        for kk in range(STEP):
            step, regs = [], {}
            for name, ptr, terms in (("As", a_ptr, ((SIDE, SIDE, width),)), ("Bs", b_ptr, ((1, SIDE, width),))):
                for first in range(0, self.per, 4):  # (8 values: two loads of 4)
                    vec = tuple(sel.new(RegFile.FP) for _ in range(min(4, self.per - first)))
                    disp = (kk * self.row + first) * F32_BYTES
                    step.append(Instr(VECTOR[len(vec)], Prim.LOAD_SHARED_V, vec, (Mem(ptr, disp),), DType.F32,
                                      warp=WarpAccess(True, name, Lin(disp, terms, (0,)), len(vec) * F32_BYTES,
                                                      regs=len(vec))))
                    for i, r in enumerate(vec):
                        regs[name, first + i] = r
            loads.append(step)
            operands.append(regs)
        # software-pipelined: step kk + 1's shared loads go out before step kk's FMAs, so their latency hides
        # behind the 16 FMAs (Volkov & Demmel's register double buffering)
        body: list[Item] = list(loads[0])
        for kk in range(STEP):
            if kk + 1 < STEP:
                body += loads[kk + 1]
            for r in range(self.per):
                for c in range(self.per):
                    acc = accs[r][c]
                    body.append(Instr(sel.mn(Prim.FMA), Prim.FMA, acc,
                                      (operands[kk]["As", r], operands[kk]["Bs", c], acc)))
        return body

    # ---- the epilogue: the store expression (bias add) for each of the 16 outputs ------------------
    def epilogue(self, accs) -> list[Item]:
        sel, g = self.sel, self.g
        code: list[Item] = []
        row, row_terms = sel.coords[self.mv]
        col, col_terms = sel.coords[self.nv]
        for r in range(self.per):
            for c in range(self.per):
                dm, dn = SIDE * r, SIDE * c
                guards, pred = [], None
                if g.m % self.tile:
                    guards.append((Lin(dm, row_terms), g.m))
                    pred = self.op(code, Prim.ICMP_LT, row, Imm(g.m - dm), file=RegFile.PRED)
                if g.n % self.tile:
                    guards.append((Lin(dn, col_terms), g.n))
                    pc = self.op(code, Prim.ICMP_LT, col, Imm(g.n - dn), file=RegFile.PRED)
                    pred = pc if pred is None else self.op(code, Prim.PAND, pc, pred, file=RegFile.PRED)
                sel.scalars[self.red.acc] = accs[r][c]
                sel.scalar_fp[self.red.acc] = True
                sel.guard, sel.guard_lins = pred, tuple(guards)
                shifted = shifted_store(g.store, {self.mv: dm, self.nv: dn})
                sel.store(shifted, code, {}, 1, ())
        sel.guard, sel.guard_lins = None, ()
        return code


@dataclass
class _Copy:
    body: list  # the guarded global loads of the next slice (and their predicates)
    stores: list  # the loaded slice into the shared tile
    latch: list


def shifted_store(store: Map, by: dict[str, int]) -> Map:
    """The store (and every load in its value) at coordinates moved by `by` elements per variable."""
    def ix(a: Affine) -> Affine:
        return Affine(a.offset + sum(a.coef(v) * d for v, d in by.items()), a.terms, a.dynamic)

    return reindexed_map(store, ix)
