"""Instruction selection for SIMD targets (AVX2, AVX-512, NEON).

The scalar selector's code shape (lowering/isel.py), with each phase loop vectorised along its own variable
where its body allows, and GEMMs as register-blocked micro-kernels (lowering/isel_gemm.py).

A phase vectorises when every load walks its variable contiguously or not at all (then it is one broadcast,
hoisted out of the loop), its output is float32 and stored contiguously, and its expression uses only
lane-wise operations: float arithmetic, compare and select, and the integer steps of exp's 2^n, which run on
32-bit lanes of the same register. Other phases — the attention mask's integer arithmetic, gathers,
transposing copies — stay scalar on the target's scalar instructions, as a compiler's vectoriser leaves them.

A reduction keeps a vector of partial results and finishes with a horizontal reduction: halves on x86
(vextract + add), neighbouring pairs on AArch64 (faddp). The last, partial vector: AVX-512 runs it under an
opmask (loads zero the lanes past the end, the accumulator's update merges only the live lanes); AVX2 and
NEON finish with a scalar epilogue loop.
"""

from __future__ import annotations

from isasim.isa.errors import UserError
from isasim.isa.program import Access, Imm, Instr, Item, Mem, Reg, RegFile
from isasim.isa.semantics import Prim
from isasim.lowering.isel import Selector
from isasim.lowering.kernel import Const, Expr, Index, Load, Map, Op, Reduce, Scalar
from isasim.isa.dtype import DType, F32_BYTES

# Reductions a vector accumulator can split into lanes: update primitive -> (identity, horizontal combine)
_REDUCTIONS = {Prim.FADD: (0.0, Prim.FADD), Prim.FMA: (0.0, Prim.FADD), Prim.FMAX: (float("-inf"), Prim.FMAX)}
_LANEWISE_FP = frozenset({Prim.FADD, Prim.FSUB, Prim.FMUL, Prim.FDIV, Prim.FSQRT, Prim.FMAX, Prim.FMIN,
                          Prim.FMA, Prim.FNMA, Prim.FROUND, Prim.FABS, Prim.FNEG})


def reduction_of(ph: Reduce) -> Prim | None:
    """The update's primitive when it folds one new term into the accumulator, else None."""
    u = ph.update
    acc = Scalar(ph.acc)
    if not isinstance(u, Op) or u.prim not in _REDUCTIONS:
        return None
    if u.prim is Prim.FMA:
        ok = u.args[2] == acc and acc not in (u.args[0], u.args[1])
    else:
        ok = acc in u.args and u.args.count(acc) == 1
    others = [a for a in u.args if a != acc]
    if not ok or any(_mentions(a, acc) for a in others):
        return None
    if not (isinstance(ph.init, Const) and ph.init.fp and float(ph.init.value) == _REDUCTIONS[u.prim][0]):
        return None
    return u.prim


def _mentions(e: Expr, target: Expr) -> bool:
    if e == target:
        return True
    return isinstance(e, Op) and any(_mentions(a, target) for a in e.args)


class VectorSelector(Selector):
    @property
    def vec(self):
        return self.target.vector

    @property
    def lanes(self) -> int:
        return self.target.vector.lanes

    def vnew(self, file: RegFile = RegFile.FP, lanes: int | None = None) -> Reg:
        self.nregs += 1
        return Reg(file, self.nregs, lanes or self.lanes)

    def vop(self, prim: Prim, lanes: int | None = None) -> str:
        return self.vec.key(self.vec.ops[prim], lanes or self.lanes)

    # ---- what vectorises --------------------------------------------------------------------------
    def lane_expr(self, e: Expr, var: str, vscalars: frozenset[str] = frozenset()) -> bool:
        """Whether e (a float32 value) can be computed lane-wise along loop variable var."""
        if isinstance(e, Load):
            return (self.kernel.buffer(e.buf).dtype is DType.F32 and not e.index.dynamic
                    and e.index.coef(var) in (0, 1))
        if isinstance(e, Const):
            return e.fp
        if isinstance(e, Scalar):
            return e.name in vscalars or self.scalar_fp.get(e.name, False)
        if isinstance(e, Index):
            return False
        if e.prim in _LANEWISE_FP:
            return all(self.lane_expr(a, var, vscalars) for a in e.args)
        if e.prim is Prim.SELECT:
            p = e.args[0]
            return (isinstance(p, Op) and p.prim is Prim.FCMP_LT
                    and all(self.lane_expr(a, var, vscalars) for a in p.args + e.args[1:]))
        if e.prim is Prim.BITS_I2F:
            return self._int_chain(e.args[0], var, vscalars)
        return False

    def _int_chain(self, e: Expr, var: str, vscalars) -> bool:
        """exp's 2^n: shl(add(cvt(n), 127), 23) on 32-bit integer lanes."""
        if not isinstance(e, Op):
            return False
        if e.prim is Prim.CVT_F2I:
            return self.lane_expr(e.args[0], var, vscalars)
        if e.prim in (Prim.IADD, Prim.ISHL):
            c = e.args[1]
            return isinstance(c, Const) and not c.fp and self._int_chain(e.args[0], var, vscalars)
        return False

    def lane_store(self, ph: Map) -> bool:
        return (self.kernel.buffer(ph.buf).dtype is DType.F32 and not ph.index.dynamic
                and ph.index.coef(ph.var) == 1 and ph.extent >= self.lanes)

    # ---- vector values ----------------------------------------------------------------------------
    def vconst(self, value: float | int) -> Reg:
        """A constant in every lane — a float, or an int taken as a 32-bit pattern — set in the prologue."""
        key = ("vec", value if isinstance(value, int) else repr(float(value)))
        if key not in self.consts:
            r = self.vnew()
            zero = key[1] == "0.0"
            mnem = self.vec.fp_zero if zero else self.vec.fp_const
            imm = Imm(value if isinstance(value, int) else float(value))
            self.prologue.append(Instr(mnem, Prim.FMOV, r, (imm,), lanes=self.lanes))
            self.consts[key] = r
        return self.consts[key]

    def tail_mask(self, active: int) -> Reg:
        """An opmask with the low `active` lanes set (AVX-512 tails), made once in the prologue."""
        key = ("mask", active)
        if key not in self.consts:
            bits = self.new(RegFile.GP)
            self.prologue.append(self.imov(bits, (1 << active) - 1))
            k = self.vnew(RegFile.MASK)
            self.prologue.append(Instr(self.vec.mask_from_gp, Prim.MASK_BITS, k, (bits,), lanes=self.lanes))
            self.consts[key] = k
            self.consts[("active", k)] = active
        return self.consts[key]

    def width(self, mask: Reg | None) -> int:
        """Bytes a vector access moves: its live lanes (a masked lane touches no memory)."""
        return F32_BYTES * (self.consts[("active", mask)] if mask is not None else self.lanes)

    def access(self, buf: str, index, chain: tuple[str, ...], scale: int, shift: int, width: int) -> Access:
        """What the cache model sees: `chain` names exactly the loops around the instruction; the innermost
        advances `scale` elements per trip."""
        isz = self.kernel.buffer(buf).dtype.itemsize
        strides = tuple(index.coef(v) * isz * (scale if i == len(chain) - 1 else 1) for i, v in enumerate(chain))
        return Access(buf, index.offset * isz + shift, strides, width)

    def _vaccess(self, buf: str, index, chain: tuple[str, ...], shift: int | None, width: int) -> Access:
        """In the vector loop (shift None), or in the masked tail after it, `shift` bytes along."""
        if shift is None:
            return self.access(buf, index, chain, self.lanes, 0, width)
        return self.access(buf, index, chain[:-1], 1, shift, width)

    def vexpr(self, e: Expr, code: list[Item], cse: dict, scope: int, chain: tuple[str, ...],
              hoist: list[Item], vscalars: dict[str, Reg], mask: Reg | None = None, dst: Reg | None = None,
              shift: int | None = None) -> Reg:
        """e computed in every lane; loop-invariant broadcasts go to `hoist`, before the loop."""
        if dst is None and e in cse:
            return cse[e]
        var = chain[-1]
        L = self.lanes
        if isinstance(e, Const):
            return self.vconst(float(e.value) if e.fp else int(e.value))
        if isinstance(e, Scalar):
            if e.name in vscalars:
                return vscalars[e.name]
            if ("bcast", e.name) not in cse:
                r = self.vnew()
                hoist.append(Instr(self.vec.bcast, Prim.BCAST, r, (self.scalars[e.name],), lanes=L))
                cse[("bcast", e.name)] = r
            return cse[("bcast", e.name)]
        if isinstance(e, Load):
            s = self.stream(scope, e.buf, e.index, chain)
            isz = self.kernel.buffer(e.buf).dtype.itemsize
            if e.index.coef(var) == 0:  # the same element on every trip: one broadcast before the loop
                key = ("bcast", e)
                if key not in cse:
                    r = self.vnew()
                    acc = self.access(e.buf, e.index, chain[:-1], 1, 0, isz)
                    hoist.append(Instr(self.vec.load_bcast, Prim.LOAD_BCAST, r, (Mem(s.reg),), DType.F32, acc,
                                       lanes=L))
                    cse[key] = r
                return cse[key]
            r = dst or self.vnew()
            acc = self._vaccess(e.buf, e.index, chain, shift, self.width(mask))
            code.append(Instr(self.vec.load, Prim.LOAD, r, (Mem(s.reg),), DType.F32, acc, lanes=L, mask=mask))
        else:
            r = self.vop_expr(e, code, cse, scope, chain, hoist, vscalars, mask, dst, shift)
        if dst is None:
            cse[e] = r
        return r

    def vop_expr(self, e: Op, code, cse, scope, chain, hoist, vscalars, mask, dst, shift) -> Reg:
        L = self.lanes

        def sub(x: Expr) -> Reg:
            return self.vexpr(x, code, cse, scope, chain, hoist, vscalars, mask, None, shift)

        if e.prim is Prim.BITS_I2F:  # integer lanes already are the float's bits: no instruction
            return sub(e.args[0])
        if e.prim is Prim.CVT_F2I:
            prim, srcs = Prim.CVT_F2I32, (sub(e.args[0]),)
        elif e.prim is Prim.IADD:
            prim, srcs = Prim.IADD32, (sub(e.args[0]), self.vconst(int(e.args[1].value)))
        elif e.prim is Prim.ISHL:
            prim, srcs = Prim.ISHL32, (sub(e.args[0]), Imm(int(e.args[1].value)))
        elif e.prim is Prim.SELECT:
            a, b = sub(e.args[1]), sub(e.args[2])
            p = e.args[0]
            pred = self.vcompare(p, code, sub)
            if self.vec.select_overwrites_mask:  # bsl writes over its mask, which is used nowhere else
                code.append(Instr(self.vec.select, Prim.SELECT, pred, (pred, a, b), lanes=L))
                return pred
            r = dst or self.vnew()
            code.append(Instr(self.vec.select, Prim.SELECT, r, (pred, a, b), lanes=L))
            return r
        else:
            prim, srcs = e.prim, tuple(sub(a) for a in e.args)
            if self.target.fp_sign_masks and prim in (Prim.FABS, Prim.FNEG):
                srcs += (self.vconst(0x7FFFFFFF if prim is Prim.FABS else 0x80000000),)
        r = dst or self.vnew()
        top = mask if dst is not None else None  # only the accumulator's update is predicated
        code.append(Instr(self.vop(prim), prim, r, srcs, lanes=L, mask=top))
        return r

    def vcompare(self, p: Op, code: list[Item], sub) -> Reg:
        a, b = sub(p.args[0]), sub(p.args[1])
        r = self.vnew(RegFile.MASK if self.vec.compare_to_mask else RegFile.FP)
        code.append(Instr(self.vop(Prim.FCMP_LT), Prim.FCMP_LT, r, (a, b), lanes=self.lanes))
        return r

    def vstore(self, ph: Map, value: Reg, code: list[Item], scope: int, chain: tuple[str, ...],
               mask: Reg | None = None, shift: int | None = None) -> None:
        s = self.stream(scope, ph.buf, ph.index, chain)
        acc = self._vaccess(ph.buf, ph.index, chain, shift, self.width(mask))
        code.append(Instr(self.vec.store, Prim.STORE, Mem(s.reg), (value,), DType.F32, acc, lanes=self.lanes,
                          mask=mask))

    # ---- phases -----------------------------------------------------------------------------------
    def _tail_done(self, scope: int, var: str, full: int) -> None:
        """A masked tail leaves the pointers where the last full vector left them."""
        for s in self.streams.values():
            if s.scope == scope and var in s.chain:
                s.done[var] = full * s.strides[var]

    def map_phase(self, scope: int, ph: Map, outer: tuple[str, ...], code: list[Item]) -> None:
        if self.byte_lanes(ph):
            return self.byte_map(scope, ph, outer, code)
        if self.kernel.buffer(ph.buf).dtype is DType.BF16:
            return self.bf16_map(scope, ph, outer, code)
        if not (self.lane_store(ph) and self.lane_expr(ph.value, ph.var)):
            return super().map_phase(scope, ph, outer, code)
        L, chain = self.lanes, outer + (ph.var,)
        full, rest = divmod(ph.extent, L)
        body: list[Item] = []
        cse: dict = {}
        self.vstore(ph, self.vexpr(ph.value, body, cse, scope, chain, code, {}), body, scope, chain)
        self.loop(ph.var, full, body, True, code, scope, scale=L)
        if not rest:
            return
        if self.vec.masked_tails:
            k = self.tail_mask(rest)
            tail_cse = {key: r for key, r in cse.items() if isinstance(key, tuple)}  # keep the broadcasts
            v = self.vexpr(ph.value, code, tail_cse, scope, chain, code, {}, mask=k, shift=full * L * F32_BYTES)
            self.vstore(ph, v, code, scope, chain, mask=k, shift=full * L * F32_BYTES)
            self._tail_done(scope, ph.var, full * L)
        else:
            self._scalar_tail(scope, ph, chain, full * L, rest, code)

    def _scalar_tail(self, scope: int, ph: Map, chain: tuple[str, ...], start: int, rest: int,
                     code: list[Item]) -> None:
        """The last `rest` elements of a map, from `start`, one at a time on the scalar instructions."""
        body: list[Item] = []
        self.tail_start[ph.var] = start
        self.store(ph, body, {}, scope, chain)
        del self.tail_start[ph.var]
        self.loop(ph.var, rest, body, True, code, scope)

    def byte_lanes(self, ph: Map) -> bool:
        """A store of float lanes converted to integers into bytes (the quantize op): vectorised where the
        target can narrow int32 lanes to bytes."""
        v = ph.value
        return (self.vec.byte_store is not None and self.kernel.buffer(ph.buf).dtype is DType.U8
                and not ph.index.dynamic and ph.index.coef(ph.var) == 1 and ph.extent >= self.lanes
                and isinstance(v, Op) and v.prim is Prim.CVT_F2I and self.lane_expr(v.args[0], ph.var))

    def byte_map(self, scope: int, ph: Map, outer: tuple[str, ...], code: list[Item]) -> None:
        """Full vectors: the float lanes, truncated to int32 (vcvttps2dq / fcvtzs) and narrowed to bytes as the
        target does (VectorISA.byte_store); the rest element by element."""
        L, chain = self.lanes, outer + (ph.var,)
        full, rest = divmod(ph.extent, L)
        body: list[Item] = []
        f = self.vexpr(ph.value.args[0], body, {}, scope, chain, code, {})
        i = self.vnew()
        body.append(Instr(self.vop(Prim.CVT_F2I32), Prim.CVT_F2I32, i, (f,), lanes=L))
        s = self.stream(scope, ph.buf, ph.index, chain)
        where = self._vaccess(ph.buf, ph.index, chain, None, L)
        how = self.vec.byte_store
        if how == "vpmovdb":  # narrows each lane to its low byte as it stores
            body.append(Instr(self.vec.key("vpmovdb_store", L), Prim.STORE, Mem(s.reg), (i,), DType.U8, where,
                              lanes=L))
        elif how == "packus":  # 8 lanes: words within each 128-bit half, the halves' low qwords together, bytes
            w, q, b = self.vnew(), self.vnew(), self.vnew(lanes=4)
            body.append(Instr(self.vop(Prim.PACKUSDW), Prim.PACKUSDW, w, (i, i), lanes=L))
            body.append(Instr(self.vop(Prim.PERMQ), Prim.PERMQ, q, (w, Imm(0b1000)), lanes=L))
            body.append(Instr(self.vop(Prim.PACKUSWB, 4), Prim.PACKUSWB, b, (q, q), lanes=4))
            body.append(Instr("vmovq_store", Prim.STORE, Mem(s.reg), (b,), DType.F32, where, lanes=2))
        else:  # "xtn": 4 lanes to halves, halves to bytes, the low 32 bits stored
            h, b = self.vnew(), self.vnew()
            body.append(Instr("xtn_4h", Prim.XTN, h, (i, Imm(32)), lanes=L))
            body.append(Instr("xtn_8b", Prim.XTN, b, (h, Imm(16)), lanes=L))
            body.append(Instr(self.target.stores[DType.F32], Prim.STORE, Mem(s.reg), (b,), DType.F32, where))
        self.loop(ph.var, full, body, True, code, scope, scale=L)
        if rest:
            self._scalar_tail(scope, ph, chain, full * L, rest, code)

    def bf16_map(self, scope: int, ph: Map, outer: tuple[str, ...], code: list[Item]) -> None:
        """Float lanes rounded to bf16 (vcvtneps2bf16 ymm, zmm / bfcvtn v.4h, v.4s) and stored as half as many
        bytes (vmovups ymm / str d). Only whole vectors: models/bf16.py converts only tensors whose last
        dimension is a multiple of 16."""
        v, L, chain = ph.value, self.lanes, outer + (ph.var,)
        if not (self.vec.bf16_dot and isinstance(v, Op) and v.prim is Prim.CVT_BF16 and ph.extent % L == 0
                and not ph.index.dynamic and ph.index.coef(ph.var) == 1 and self.lane_expr(v.args[0], ph.var)):
            raise UserError(f"{self.kernel.name}: {self.target.name} cannot round this map to bf16 in whole "
                            f"vectors; bf16 runs on avx512 and neon, on rows of a multiple of 16 elements")
        body: list[Item] = []
        f = self.vexpr(v.args[0], body, {}, scope, chain, code, {})
        r = self.vnew()
        flush = Imm(0 if self.vec.bf16_dot == "bfdot" else 1)  # Intel's conversion flushes denormals
        body.append(Instr(self.vop(Prim.CVT_BF16), Prim.CVT_BF16, r, (f, flush), lanes=L))
        s = self.stream(scope, ph.buf, ph.index, chain)
        where = self._vaccess(ph.buf, ph.index, chain, None, 2 * L)
        store = "str_d" if self.vec.bf16_dot == "bfdot" else self.vec.key("vmovups_store", L // 2)
        body.append(Instr(store, Prim.STORE, Mem(s.reg), (r,), DType.BF16, where, lanes=L))
        self.loop(ph.var, ph.extent // L, body, True, code, scope, scale=L)

    def reduce_phase(self, scope: int, ph: Reduce, outer: tuple[str, ...], code: list[Item]) -> None:
        kind = reduction_of(ph)
        chain = outer + (ph.var,)
        ok = (kind is not None and ph.extent >= self.lanes
              and self.lane_expr(ph.update, ph.var, frozenset({ph.acc}))
              and (ph.store is None or (self.lane_store(ph.store) and self.lane_expr(ph.store.value, ph.var))))
        if not ok:
            return super().reduce_phase(scope, ph, outer, code)
        L = self.lanes
        full, rest = divmod(ph.extent, L)
        identity, combine = _REDUCTIONS[kind]
        vacc = self.vnew()
        mnem = self.vec.fp_zero if identity == 0.0 else self.vec.fp_const
        code.append(Instr(mnem, Prim.FMOV, vacc, (Imm(identity),), lanes=L))
        vs = {ph.acc: vacc}

        def body_into(out: list[Item], cse: dict, mask: Reg | None, shift: int) -> None:
            if ph.store is not None:  # the stored value first, so the update reuses it
                v = self.vexpr(ph.store.value, out, cse, scope, chain, code, vs, mask, None, shift)
                self.vstore(ph.store, v, out, scope, chain, mask, shift)
            self.vexpr(ph.update, out, cse, scope, chain, code, vs, mask, vacc, shift)

        body: list[Item] = []
        cse: dict = {}
        body_into(body, cse, None, None)
        self.loop(ph.var, full, body, False, code, scope, scale=L)
        if rest and self.vec.masked_tails:
            tail_cse = {key: r for key, r in cse.items() if isinstance(key, tuple)}
            body_into(code, tail_cse, self.tail_mask(rest), full * L * F32_BYTES)
            self._tail_done(scope, ph.var, full * L)
        acc = self.new(RegFile.FP)
        self.horizontal(vacc, combine, acc, code)
        self.scalars[ph.acc] = acc
        self.scalar_fp[ph.acc] = True
        if rest and not self.vec.masked_tails:
            self.tail_start[ph.var] = full * L
            body = self.reduce_body(scope, ph, outer, acc)
            del self.tail_start[ph.var]
            self.loop(ph.var, rest, body, False, code, scope)

    def horizontal(self, v: Reg, combine: Prim, dst: Reg, code: list[Item]) -> None:
        """Fold a vector's lanes into the scalar dst: halves on x86, neighbouring pairs on AArch64."""
        width = v.lanes
        while width > 1:
            half = width // 2
            out = dst if half == 1 else self.vnew(lanes=half)
            if self.vec.pairwise:
                pair = Prim.FADDP if combine is Prim.FADD else Prim.FMAXP
                code.append(Instr(self.vec.pairwise[(pair, half)], pair, out, (v,), lanes=half))
            else:
                hi = self.vnew(lanes=half) if half > 1 else self.new(RegFile.FP)
                code.append(Instr(self.vec.extract_hi[half], Prim.EXTRACT_HI, hi, (v,), lanes=half))
                mnem = self.mn(combine) if half == 1 else self.vop(combine, half)
                code.append(Instr(mnem, combine, out, (v, hi), lanes=half))
            v, width = out, half
