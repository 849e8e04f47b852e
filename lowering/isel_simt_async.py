"""A tensor-core GEMM operand's slices copied from global to shared memory with cp.async (sm_80+), for
lowering/isel_simt_mma.py's pipeline: which thread copies which 16 (or 4) bytes of a slice, and the
instructions that copy one slice into one stage. A copy goes straight to shared memory, no register in between
(NVIDIA Ampere Tuning Guide, sec. 1.4.1.2), and lands when a cp.async.wait_group covers its group (isa/simt_exec.py
holds it back until then)."""

from __future__ import annotations

from dataclasses import dataclass

from isasim.isa.dtype import DType, F32_BYTES
from isasim.isa.errors import UserError
from isasim.isa.program import Addr, Imm, Instr, Item, Lin, Mem, Reg, RegFile, WarpAccess
from isasim.isa.semantics import Prim
from isasim.lowering.kernel import Load
from isasim.lowering.mma_layout import CHUNK, FP16, ROW, STAGES, THREADS, WORD_PAD, WORDS

COPY = {CHUNK: "cp.async.cg.shared.global"}  # by bytes copied


def operand_copy(b, tile: str, load: Load, origin: Reg, origin_terms: tuple, rows: int, tid: Reg) -> "SliceCopy":
    """A slice of A (or of fp16's weight, held [N, K]) is `rows` rows of 8 words along k, k contiguous in global
    memory: a thread copies 16 bytes, half a row (cp.async.cg: copy e = tid + 256 i is row e / 2, half e % 2).
    A slice of B held [K, N] (attention's values) is one mma's k rows of BN columns, and a slice of a packed
    weight (bf16's [K/2, N, 2], int8's [K/4, N, 4]) 8 rows of BN words, one k word of each column; both are
    copied 16 bytes at a time along n, as they lie in global memory. Rows past M are not copied: they feed
    only output rows that are not stored."""
    sel, pro, g = b.sel, b.sel.prologue, b.g
    fmt = g.fmt
    is_a = load is g.a
    isz = b.kernel.buffer(load.buf).dtype.itemsize
    if is_a and fmt is FP16 and isz != 2:  # (models/fp16.py stores every op's output so, and copies inputs)
        raise UserError(f"{b.kernel.name}: the fp16 tensor-core linear reads a float32 tensor (a view of a graph "
                        f"input?), not an fp16 activation: use --precision fp32 for this model on simt")
    ck = load.index.coef(b.kv)
    if is_a or not (g.b_rows or g.b_words):  # the operand's rows (A's m, B's n), k along each
        cv = load.index.coef(b.mv if is_a else b.nv)
        if ck * isz * fmt.per_word // fmt.per_step != F32_BYTES:
            raise ValueError(f"{b.kernel.name}: {load.buf}'s k must be contiguous")
        width, lines, line, row_bytes, origin_bytes = CHUNK, rows, ROW * F32_BYTES, cv * isz, cv * isz
        chunk_bytes, slice_bytes = CHUNK, WORDS * F32_BYTES
        per_row = WORDS * F32_BYTES // width  # copies per row
        guarded = (g.m if is_a else g.n) % rows != 0
    else:  # rows along k of BN columns: B [K, N] (padded by 16 bytes) or packed words (by 8 words): fragment_pointers
        unit = isz if g.b_rows else F32_BYTES  # bytes of one column in a row
        if load.index.coef(b.nv) * isz != unit:
            raise ValueError(f"{b.kernel.name}: {load.buf}'s columns must be {unit} bytes apart")
        width, lines = CHUNK, fmt.k if g.b_rows else WORDS
        line = rows * unit + (CHUNK if g.b_rows else WORD_PAD * F32_BYTES)
        row_bytes, origin_bytes, chunk_bytes, slice_bytes = ck * isz, unit, CHUNK, lines * ck * isz
        per_row = rows * unit // CHUNK
        guarded = False
    if (load.index.offset * isz) % width or row_bytes % width or (is_a and fmt is FP16 and ck != 1):
        raise ValueError(f"{b.kernel.name}: a {width}-byte cp.async of {load.buf} needs its rows {width}-byte "
                         f"aligned and, in fp16, its k contiguous")
    count = lines * per_row
    per = THREADS // per_row  # rows a pass of the block covers
    part = b.op(pro, Prim.IREM, tid, Imm(per_row))
    r = b.op(pro, Prim.IDIV, tid, Imm(per_row))
    ptr = b.op(pro, Prim.IADD, sel.base(load.buf), Imm(load.index.offset * isz))
    b.add(pro, ptr, (origin, origin_bytes), (r, row_bytes), (part, chunk_bytes))
    terms = tuple((d, mo, mu * origin_bytes) for d, mo, mu in origin_terms) + \
        ((per_row, per, row_bytes), (1, per_row, chunk_bytes))
    for v, _ in g.batch:  # a batched matmul: this block's matrix
        c = load.index.coef(v) * isz
        if c:
            b.add(pro, ptr, (sel.coords[v][0], c))
            terms += tuple((d, mo, mu * c) for d, mo, mu in sel.coords[v][1])
    sptr = b.op(pro, Prim.IMOV, Addr(tile, 0))
    b.add(pro, sptr, (r, line), (part, width))
    s_terms = ((per_row, per, line), (1, per_row, width))
    pos = b.op(pro, Prim.IADD, origin, r) if guarded else None  # the operand row this thread copies
    passes = []
    for i in range(-(-count // THREADS)):
        dr = per * i
        guards, ok = [], None
        if count < THREADS:  # fewer copies than threads: the first `count` threads copy
            guards.append((Lin(0, ((1, THREADS, 1),)), count))
            ok = b.op(pro, Prim.ICMP_LT, tid, Imm(count), file=RegFile.PRED)
        if guarded:
            guards.append((Lin(dr, origin_terms + ((per_row, per, 1),)), g.m if is_a else g.n))
            row_ok = b.op(pro, Prim.ICMP_LT, pos, Imm((g.m if is_a else g.n) - dr), file=RegFile.PRED)
            ok = row_ok if ok is None else b.op(pro, Prim.PAND, ok, row_ok, file=RegFile.PRED)
        passes.append((dr, tuple(guards), ok))
    latch = [Instr(sel.mn(Prim.IADD), Prim.IADD, ptr, (ptr, Imm(STAGES * slice_bytes)))]
    return SliceCopy(b, tile, load.buf, ptr, sptr, terms, s_terms, width, lines, line, slice_bytes,
                     load.index.offset * isz, row_bytes, passes, latch)


@dataclass
class SliceCopy:
    """One operand's cp.async of a slice: `issue` writes it for a given slice and stage."""

    builder: object  # the MmaBuilder whose kernel this is (its op and add)
    tile: str
    buf: str
    ptr: Reg  # global: this thread's first copy of slice 0 (moved on by the latch)
    sptr: Reg  # shared: its place in stage 0
    terms: tuple  # the global address's terms of the thread id
    s_terms: tuple
    width: int  # bytes a copy moves
    rows: int  # shared rows a stage holds
    line: int  # shared bytes from one row to the next
    slice_bytes: int  # global bytes from one slice to the next along k
    offset: int  # the operand's first byte
    row_bytes: int  # global bytes from one shared row's data to the next's
    passes: list  # (first row, guards, their predicate) per pass of the block over the slice
    latch: list

    def issue(self, disp: int, stage: int, strides: tuple, guard: tuple | None = None, step: int = 0) -> list[Item]:
        """The copies of the slice `disp` bytes past the pointer into `stage`; `guard` (a predicate, its Lin,
        the limit) skips a slice past the end of K, and `step` is what the loop's latch moves the pointer."""
        b = self.builder
        code: list[Item] = []
        for dr, guards, ok in self.passes:
            pred = ok
            lins = guards
            if guard is not None:
                pred = guard[0] if ok is None else b.op(code, Prim.PAND, guard[0], ok, file=RegFile.PRED)
                lins = guards + ((guard[1], guard[2]),)
            src = Lin(self.offset + dr * self.row_bytes + disp, self.terms, tuple(step for _ in strides))
            sdisp = (stage * self.rows + dr) * self.line
            code.append(Instr(COPY[self.width], Prim.CP_ASYNC, Mem(self.sptr, sdisp),
                              (Mem(self.ptr, dr * self.row_bytes + disp),), DType.I32, mask=pred,
                              warp=WarpAccess(False, self.buf, src, self.width, lins),
                              copy_to=WarpAccess(True, self.tile, Lin(sdisp, self.s_terms, strides), self.width,
                                                 lins)))
        return code
