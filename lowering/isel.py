"""Instruction selection: a loop-nest Kernel becomes a target Program.

Per target only the mnemonics differ (isa/targets.py); the code shape is shared:
- float constants are hoisted to the kernel's prologue (a constant-pool load, or a zero idiom);
- every distinct memory stream gets a pointer register, set once in the prologue and advanced in the latch of
  each enclosing loop by a net delta (the loop's own stride minus what its inner loop already advanced), as
  compilers strength-reduce address arithmetic;
- each loop counts down: `mov counter, trip` before it, `sub counter, 1; jnz` (`subs; b.ne`) in its latch;
- parallel loops of extent 1 are dropped;
- registers are then allocated (isa/regalloc.py), so every consumer sees the code a machine would run.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from isasim.isa.errors import UserError
from isasim.isa.program import Access, Addr, BufferSpec, Imm, Instr, Item, Loop, Mem, Program, Reg, RegFile
from isasim.isa.regalloc import FLOAT_COMPARES, allocate
from isasim.isa.semantics import Prim
from isasim.isa.targets import Target
from isasim.isa.dtype import DType
from isasim.lowering.kernel import Affine, Const, Expr, Index, Kernel, Let, Load, Map, Op, Reduce, Scalar, is_fp


@dataclass
class Stream:
    reg: Reg
    chain: tuple[str, ...]  # enclosing loop variables, outermost first
    strides: dict[str, int]  # bytes per iteration of each loop variable
    trips: dict[str, int]  # trip count of each loop variable
    scope: int  # the phase it belongs to
    done: dict[str, int] = field(default_factory=dict)  # bytes a full run of a phase loop advances, when
    #                                                     that is not trips * stride (a masked vector tail)


@dataclass
class Selector:
    kernel: Kernel
    target: Target
    trips: dict[str, int]
    nregs: int = 0
    prologue: list[Instr] = field(default_factory=list)
    consts: dict[tuple, Reg] = field(default_factory=dict)
    streams: dict[tuple, Stream] = field(default_factory=dict)
    scalars: dict[str, Reg] = field(default_factory=dict)
    scalar_fp: dict[str, bool] = field(default_factory=dict)
    counters: dict[str, Reg] = field(default_factory=dict)
    latched: set[int] = field(default_factory=set)  # phases whose loop latches are built
    tail_start: dict[str, int] = field(default_factory=dict)  # a scalar epilogue's first element, per variable

    def new(self, file: RegFile) -> Reg:
        self.nregs += 1
        return Reg(file, self.nregs)

    def counter(self, var: str) -> Reg:
        if var not in self.counters:
            self.counters[var] = self.new(RegFile.GP)
        return self.counters[var]

    def mn(self, prim: Prim) -> str:
        return self.target.mnemonics[prim]

    # ---- constants and pointers -------------------------------------------------------------------
    def imov(self, r: Reg, value: int) -> Instr:
        """An integer into a register: one mov, or (AArch64, a value no single movz/movn makes) a load from
        the literal pool, so one Program instruction stays one machine instruction."""
        mnem = self.mn(Prim.IMOV) if self.target.mov_imm_fits(value) else self.target.loads[DType.I64]
        return Instr(mnem, Prim.IMOV, r, (Imm(value),))

    def const(self, c: Const) -> Reg:
        key = (repr(float(c.value)) if c.fp else int(c.value), c.fp)  # repr keeps -0.0 apart from 0.0
        if key not in self.consts:
            if c.fp:
                r = self.new(RegFile.FP)
                mnem = self.target.fp_zero if key[0] == "0.0" else self.target.fp_const
                self.prologue.append(Instr(mnem, Prim.FMOV, r, (Imm(float(c.value)),)))
            else:
                r = self.new(RegFile.GP)
                self.prologue.append(self.imov(r, int(c.value)))
            self.consts[key] = r
        return self.consts[key]

    def stream(self, scope: int, buf: str, index: Affine, chain: tuple[str, ...]) -> Stream:
        static = Affine(index.offset, index.terms)
        key = (scope, buf, static, chain)
        if key not in self.streams:
            if scope in self.latched:
                raise AssertionError(f"{self.kernel.name}: a pointer made after its phase loop's latch would "
                                     f"never be advanced by it ({buf})")
            isz = self.kernel.buffer(buf).dtype.itemsize
            r = self.new(RegFile.GP)
            off = index.offset * isz
            if self.target.imm_fits(off):
                self.prologue.append(Instr(self.target.pointer_init, Prim.IMOV, r, (Addr(buf, off),)))
            else:  # an offset add cannot encode (AArch64 imm12): the buffer's base plus a register
                self.prologue.append(Instr(self.target.pointer_init, Prim.IMOV, r, (Addr(buf, 0),)))
                self.prologue.append(Instr(self.mn(Prim.IADD), Prim.IADD, r,
                                           (r, self.const(Const(off, fp=False)))))
            self.streams[key] = Stream(r, chain, {v: index.coef(v) * isz for v in chain},
                                        {v: self.trips[v] for v in chain}, scope)
        return self.streams[key]

    def latch(self, var: str, counter: Reg, scope: int | None, scale: int = 1) -> tuple[Instr, ...]:
        """Pointer updates and loop control; a phase loop (scope given) advances only its own streams, by
        `scale` elements per trip (a vector loop's lanes)."""
        out = []
        for s in self.streams.values():
            if var not in s.chain or (scope is not None and s.scope != scope):
                continue
            i = s.chain.index(var)
            delta = s.strides[var] * scale
            if i + 1 < len(s.chain):
                nxt = s.chain[i + 1]
                delta -= s.done.get(nxt, s.trips[nxt] * s.strides[nxt])
            if delta:
                step = Imm(delta) if self.target.imm_fits(delta) else self.const(Const(delta, fp=False))
                out.append(Instr(self.mn(Prim.IADD), Prim.IADD, s.reg, (s.reg, step)))
        out.append(Instr(self.mn(Prim.DEC_FLAGS), Prim.DEC_FLAGS, counter, (counter, Imm(1))))
        out.append(Instr(self.mn(Prim.BRANCH_NZ), Prim.BRANCH_NZ, None, (counter,)))
        return tuple(out)

    # ---- expressions ------------------------------------------------------------------------------
    def expr(self, e: Expr, code: list[Instr], cse: dict, scope: int, chain: tuple[str, ...],
             dst: Reg | None = None) -> Reg:
        if dst is None and e in cse:
            return cse[e]
        if isinstance(e, Const):
            return self.const(e)
        if isinstance(e, Scalar):
            return self.scalars[e.name]
        if isinstance(e, Index):
            if e.var not in self.trips:  # a loop of extent 1 was dropped: its index is always 0
                return self.const(Const(0, fp=False))
            # counters count down, so the iteration number is trip - counter
            r = self.new(RegFile.GP)
            code.append(Instr(self.mn(Prim.ISUB), Prim.ISUB, r,
                              (self.const(Const(self.trips[e.var], fp=False)), self.counter(e.var))))
            cse[e] = r
            return r
        if isinstance(e, Load):
            r = self.load(e, code, cse, scope, chain, dst)
        else:
            r = self.operation(e, code, cse, scope, chain, dst)
        if dst is None:
            cse[e] = r
        return r

    def located(self, buf_name: str, index: Affine, code, cse, scope, chain) -> tuple[Reg, Access]:
        """The register holding the element's address, and the access the cache model sees. A dynamic
        index (a gather, or an embedding gradient's scatter) is loaded, scaled and added to the pointer."""
        buf = self.kernel.buffer(buf_name)
        s = self.stream(scope, buf_name, index, chain)
        strides = [s.strides[v] for v in chain]
        base: Reg = s.reg
        for dyn, coef in index.dynamic:
            idx = self.expr(dyn, code, cse, scope, chain)
            scale = self.const(Const(coef * buf.dtype.itemsize, fp=False))
            t = self.new(RegFile.GP)
            code.append(Instr(self.mn(Prim.IMUL), Prim.IMUL, t, (idx, scale)))
            code.append(Instr(self.mn(Prim.IADD), Prim.IADD, t, (t, base)))
            base = t
            # The cache model sees a gather as a walk over distinct rows along the loops its index varies with.
            if isinstance(dyn, Load):
                for j, v in enumerate(chain):
                    if dyn.index.coef(v):
                        strides[j] += coef * buf.dtype.itemsize
        return base, Access(buf_name, self.first_byte(index, chain, buf.dtype.itemsize), tuple(strides),
                            buf.dtype.itemsize)

    def load(self, e: Load, code, cse, scope, chain, dst) -> Reg:
        buf = self.kernel.buffer(e.buf)
        base, acc = self.located(e.buf, e.index, code, cse, scope, chain)
        r = dst or self.new(RegFile.FP if buf.dtype.name == "F32" else RegFile.GP)
        code.append(Instr(self.target.loads[buf.dtype], Prim.LOAD, r, (Mem(base),), buf.dtype, acc))
        return r

    def operation(self, e: Op, code, cse, scope, chain, dst) -> Reg:
        t = self.target
        if e.prim is Prim.DOT4:
            return self.dot4(e, code, cse, scope, chain, dst)
        if e.prim in (Prim.DPBF16, Prim.CVT_BF16):
            raise UserError(f"{self.kernel.name}: bf16 runs on the vector bf16 instructions only (avx512 with "
                            f"AVX512-BF16, neon with BF16, amx), in whole register blocks; this kernel has no scalar "
                            f"form")
        if e.prim is Prim.SELECT:
            # values first, the predicate last: nothing may come between a compare and the select reading its
            # flags (AArch64 fcmp/fcsel, x86 cmp/cmov)
            a, b = (self.expr(x, code, cse, scope, chain) for x in e.args[1:])
            srcs: tuple = (self.expr(e.args[0], code, cse, scope, chain), a, b)
        elif e.prim in t.imm_forms and isinstance(e.args[1], Const) and t.imm_fits(int(e.args[1].value)):
            srcs = (self.expr(e.args[0], code, cse, scope, chain), Imm(int(e.args[1].value)))
        else:
            srcs = tuple(self.expr(a, code, cse, scope, chain) for a in e.args)
        if t.fp_sign_masks and e.prim in (Prim.FABS, Prim.FNEG):
            # x86 has no fabs/fneg: and/xor with a constant that keeps or flips the sign bit
            srcs += (self.const_bits(0x7FFFFFFF if e.prim is Prim.FABS else 0x80000000),)
        fp = is_fp(e, self.kernel, self.scalar_fp)
        file = RegFile.FP if fp else (RegFile.GP if fp is False else RegFile.PRED)
        if file is RegFile.PRED and t.vector and t.vector.compare_to_mask and e.prim in FLOAT_COMPARES:
            file = RegFile.MASK  # AVX-512: float compares write an opmask register
        r = dst or self.new(file)
        if e.prim is Prim.CVT_I2F and t.cvt_merges:
            zero = self.new(RegFile.FP)  # the dependency-breaking zero idiom, merged into by the conversion
            code.append(Instr(t.fp_zero, Prim.FMOV, zero, (Imm(0.0),)))
            srcs += (zero,)
        mnem = t.fp_int_select[bool(fp)] if e.prim is Prim.SELECT else self.mn(e.prim)
        code.append(Instr(mnem, e.prim, r, srcs))
        if e.prim is Prim.SETCC and t.setcc_zero_extend:
            code.append(Instr(t.setcc_zero_extend, Prim.IMOV, r, (r,)))
        return r

    def dot4(self, e: Op, code, cse, scope, chain, dst) -> Reg:
        """Four bytes of each operand (unsigned, then signed) multiplied and added into the accumulator, one
        at a time: a scalar core has no dot-product instruction (lowering/isel_gemm_int8.py has the vector
        ones)."""
        a, b, acc = e.args
        total = self.expr(acc, code, cse, scope, chain)
        r = dst or self.new(RegFile.GP)
        bases = [self.located(x.buf, x.index, code, cse, scope, chain) for x in (a, b)]
        for j in range(4):
            ra, rb = self.new(RegFile.GP), self.new(RegFile.GP)
            for reg, (base, acc_), dtype in zip((ra, rb), bases, (DType.U8, DType.I8)):
                where = Access(acc_.buf, acc_.base + j, acc_.strides, 1)
                code.append(Instr(self.target.loads[dtype], Prim.LOAD, reg, (Mem(base, j),), dtype, where))
            code.append(Instr(self.mn(Prim.IMUL), Prim.IMUL, ra, (ra, rb)))
            code.append(Instr(self.mn(Prim.IADD), Prim.IADD, r, (total if j == 0 else r, ra)))
        return r

    def const_bits(self, bits: int) -> Reg:
        """A float register holding a bit pattern (a sign mask), loaded from the constant pool."""
        key = ("bits", bits)
        if key not in self.consts:
            r = self.new(RegFile.FP)
            self.prologue.append(Instr(self.target.fp_const, Prim.FMOV, r, (Imm(bits),)))
            self.consts[key] = r
        return self.consts[key]

    def first_byte(self, index: Affine, chain: tuple[str, ...], isz: int) -> int:
        """Where an access starts, for the cache model: a scalar epilogue starts past the vector loop."""
        start = self.tail_start.get(chain[-1], 0) if chain else 0
        return (index.offset + start * index.coef(chain[-1] if chain else "")) * isz

    # ---- phases and loops -------------------------------------------------------------------------
    def loop(self, var: str, trip: int, body: list[Item], parallel: bool, code: list[Item],
             scope: int | None = None, scale: int = 1) -> None:
        counter = self.counter(var)
        code.append(self.imov(counter, trip))
        code.append(Loop(counter, trip, tuple(body), self.latch(var, counter, scope, scale), parallel, var))
        if scope is not None:
            self.latched.add(scope)

    def phases(self, outer: tuple[str, ...]) -> list[Item]:
        code: list[Item] = []
        point_cse: dict = {}
        for scope, ph in enumerate(self.kernel.phases):
            if isinstance(ph, Reduce):
                self.trips[ph.var] = ph.extent
                self.reduce_phase(scope, ph, outer, code)
            elif isinstance(ph, Let):
                self.scalar_fp[ph.name] = bool(is_fp(ph.value, self.kernel, self.scalar_fp))
                self.scalars[ph.name] = self.expr(ph.value, code, point_cse, scope, outer)
            elif ph.var is None:
                self.store(ph, code, point_cse, scope, outer)
            else:
                self.trips[ph.var] = ph.extent
                self.map_phase(scope, ph, outer, code)
        return code

    def reduce_phase(self, scope: int, ph: Reduce, outer: tuple[str, ...], code: list[Item]) -> None:
        acc = self.accumulator(ph.init, code, scope, outer)
        self.scalars[ph.acc] = acc
        self.scalar_fp[ph.acc] = bool(is_fp(ph.init, self.kernel, self.scalar_fp))
        self.loop(ph.var, ph.extent, self.reduce_body(scope, ph, outer, acc), False, code, scope)

    def reduce_body(self, scope: int, ph: Reduce, outer: tuple[str, ...], acc: Reg) -> list[Item]:
        body: list[Item] = []
        cse: dict = {}
        if ph.store is not None:  # evaluate the stored value first so the update can reuse it
            self.store(ph.store, body, cse, scope, outer + (ph.var,))
        self.expr(ph.update, body, cse, scope, outer + (ph.var,), dst=acc)
        return body

    def map_phase(self, scope: int, ph: Map, outer: tuple[str, ...], code: list[Item]) -> None:
        body: list[Item] = []
        self.store(ph, body, {}, scope, outer + (ph.var,))
        # A map that reads its output elsewhere than where it writes (an embedding gradient's scatter-add,
        # whose rows repeat) carries values from one iteration to the next: its iterations run in order.
        self.loop(ph.var, ph.extent, body, not _carries(ph.value, ph), code, scope)

    def accumulator(self, init: Expr, code: list[Item], scope: int, chain: tuple[str, ...]) -> Reg:
        """A fresh register holding the initial value: the loop writes it, so it shares no register."""
        fp = bool(is_fp(init, self.kernel, self.scalar_fp))
        r = self.new(RegFile.FP if fp else RegFile.GP)
        if isinstance(init, Const):
            if not fp:
                code.append(self.imov(r, int(init.value)))
            else:
                mnem = self.target.fp_zero if repr(float(init.value)) == "0.0" else self.target.fp_const
                code.append(Instr(mnem, Prim.FMOV, r, (Imm(float(init.value)),)))
            return r
        return self.expr(init, code, {}, scope, chain, dst=r)

    def store(self, ph: Map, code: list[Instr], cse: dict, scope: int, chain: tuple[str, ...]) -> None:
        val = self.expr(ph.value, code, cse, scope, chain)
        buf = self.kernel.buffer(ph.buf)
        base, acc = self.located(ph.buf, ph.index, code, cse, scope, chain)
        code.append(Instr(self.target.stores[buf.dtype], Prim.STORE, Mem(base), (val,), buf.dtype, acc))


def _carries(e: Expr, ph: Map) -> bool:
    """Whether e reads ph's output at an element other than the one ph writes (or one chosen by data)."""
    if isinstance(e, Load):
        return e.buf == ph.buf and (e.index != ph.index or bool(e.index.dynamic))
    return isinstance(e, Op) and any(_carries(a, ph) for a in e.args)


def nest(sel: Selector, parallel: tuple[tuple[str, int], ...], inner: list[Item]) -> list[Item]:
    """`inner` wrapped in the parallel loops, outermost first."""
    for var, extent in reversed(parallel):
        wrapped: list[Item] = []
        sel.loop(var, extent, inner, True, wrapped)
        inner = wrapped
    return inner


def finish(sel: Selector, kernel: Kernel, target: Target, code: list[Item]) -> Program:
    buffers = tuple(BufferSpec(b.name, b.size, b.dtype, b.is_output) for b in kernel.buffers)
    program = Program(kernel.name, target.name, buffers, tuple(sel.prologue) + tuple(code), kernel.flops)
    return allocate(program, target)
