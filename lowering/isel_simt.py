"""Instruction selection for the GPU SIMT target: a loop-nest Kernel becomes one thread's PTX instruction
stream and a launch geometry. Each op gets the mapping CUDA libraries use for it:

- GEMMs: lowering/isel_simt_gemm.py (shared-memory tiles, per-thread register tiles);
- row kernels (softmax, layer norm): one warp per row; lanes stride the row (coalesced), and the partial
  results meet in a butterfly of shfl.sync.bfly, the CUDA warp-reduction idiom (CUDA Programming Guide,
  "Warp Shuffle Functions"), which leaves the total in every lane;
- everything else: one thread per output element, consecutive threads on consecutive innermost elements.

The expression code is the scalar selector's (lowering/isel.py): only where a value lives changes. A parallel
loop becomes a coordinate computed once from the thread's global id, so every pointer starts at the thread's
own element; loops inside a thread keep the scalar code's pointer increments.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field, replace

import numpy as np

from isasim.isa.program import (Addr, BufferSpec, Imm, Instr, Item, Launch, Lin, Loop, Mem, Program, Reg, RegFile,
                                WarpAccess)
from isasim.isa.semantics import Prim
from isasim.isa.targets import Target
from isasim.lowering.isel import Selector, Stream
from isasim.isa.dtype import DType
from isasim.lowering.kernel import Affine, Const, Index, Kernel, Let, Load, Map, Op, Reduce, Scalar, is_fp

BLOCK = 256  # threads per block: 8 warps, a common default that fills an SM with 8 resident blocks
_COMBINE = {Prim.FADD: Prim.FADD, Prim.FMA: Prim.FADD, Prim.FMAX: Prim.FMAX}  # update -> how partials combine
# Every lane starts its partial result at the reduction's init and the butterfly combines all 32, so the init
# must be the combine's neutral element (0 + 0 = 0, max(-inf, x) = x); any other init keeps a thread per row.
_NEUTRAL = {Prim.FADD: 0.0, Prim.FMAX: float("-inf")}
UNROLL = (4, 2, 1)  # a lane loop's unrolling: the largest that divides its trip count


def _vars(terms) -> list[str]:
    return list(dict.fromkeys(v for v, _ in terms))


@dataclass
class SimtSelector(Selector):
    coords: dict[str, tuple[Reg, tuple]] = field(default_factory=dict)  # var -> (register, Lin terms of it)
    bases: dict[str, Reg] = field(default_factory=dict)
    lane: Reg | None = None  # warp-per-row: the thread's lane, which walks the row's variable
    lane_var: str | None = None
    guard: Reg | None = None  # the predicate guarding the current loop body's memory accesses and update
    guard_lins: tuple = ()
    positions: dict[str, Reg] = field(default_factory=dict)  # a lane loop's element index (lane + 32 * trip)
    origins: dict[tuple, int] = field(default_factory=dict)  # a pointer's element offset, per stream key
    lane_step: int = 0  # in a lane loop: the elements its trip advances (a warp x its unrolling)
    point_code: list | None = None  # where a point's coordinates and pointers go (default: the prologue)
    grid_stride: tuple = ()  # inside a grid-stride loop: (threads in the grid, elements in all)

    @property
    def warp(self) -> int:
        return self.target.simt.warp_size

    # ---- where values live ------------------------------------------------------------------------
    def base(self, buf: str) -> Reg:
        if buf not in self.bases:
            r = self.new(RegFile.GP)
            self.prologue.append(Instr(self.target.pointer_init, Prim.IMOV, r, (Addr(buf, 0),)))
            self.bases[buf] = r
        return self.bases[buf]

    def emit(self, code: list, prim: Prim, srcs: tuple, file: RegFile = RegFile.GP) -> Reg:
        r = self.new(file)
        code.append(Instr(self.mn(prim), prim, r, srcs))
        return r

    def stream(self, scope: int, buf: str, index: Affine, chain: tuple[str, ...]) -> Stream:
        """One pointer per buffer and walk: accesses that differ only by a constant offset share it and
        reach their element through the load's displacement (`[%rd + 16]`)."""
        key = (scope, buf, index.terms, chain)
        if key not in self.streams:
            isz = self.kernel.buffer(buf).dtype.itemsize
            base = self.base(buf)
            code = self.prologue if self.point_code is None else self.point_code
            r = self.emit(code, Prim.IADD, (base, Imm(index.offset * isz)))
            for v in _vars(index.terms):
                c = index.coef(v)
                if v in self.coords and c:
                    t = self.emit(code, Prim.IMUL, (self.coords[v][0], Imm(c * isz)))
                    code.append(Instr(self.mn(Prim.IADD), Prim.IADD, r, (r, t)))
            if self.lane_var in chain and index.coef(self.lane_var):
                t = self.emit(code, Prim.IMUL, (self.lane, Imm(index.coef(self.lane_var) * isz)))
                code.append(Instr(self.mn(Prim.IADD), Prim.IADD, r, (r, t)))
            self.streams[key] = Stream(r, chain, {v: index.coef(v) * isz for v in chain},
                                        {v: self.trips[v] for v in chain}, scope)
            self.origins[key] = index.offset
        return self.streams[key]

    def address(self, scope: int, buf: str, index: Affine, chain: tuple[str, ...]) -> Mem:
        s = self.stream(scope, buf, index, chain)
        origin = self.origins[(scope, buf, index.terms, chain)]
        return Mem(s.reg, (index.offset - origin) * self.kernel.buffer(buf).dtype.itemsize)

    def access(self, buf: str, index: Affine, chain: tuple[str, ...]) -> WarpAccess:
        """The address each thread forms, as a closed form (isa/program.py `Lin`) of its id and loop trips."""
        isz = self.kernel.buffer(buf).dtype.itemsize
        terms = []
        for v in _vars(index.terms):
            if v in self.coords and index.coef(v):
                terms += [(div, mod, mult * index.coef(v) * isz) for div, mod, mult in self.coords[v][1]]
        if self.lane_var in chain and index.coef(self.lane_var):
            terms.append((1, self.warp, index.coef(self.lane_var) * isz))
        for dyn, c in index.dynamic:  # a gather: as if each index row were distinct (see WarpAccess)
            if isinstance(dyn, Load):
                for v in _vars(dyn.index.terms):
                    if v in self.coords and dyn.index.coef(v):
                        terms += [(div, mod, mult * dyn.index.coef(v) * c * isz)
                                  for div, mod, mult in self.coords[v][1]]
        strides = tuple(index.coef(v) * isz * (self.lane_step if v == self.lane_var else 1) for v in chain)
        guards = self.guard_lins
        if self.grid_stride:  # the grid-stride loop encloses everything: element gid + trip * threads
            threads, points = self.grid_stride
            steps = (threads,) + (0,) * len(chain)
            return WarpAccess(False, buf, Lin(index.offset * isz, tuple(terms), (0,) + strides, steps), isz,
                              guards + ((Lin(0, ((1, 0, 1),), (0,) * len(steps), steps), points),))
        return WarpAccess(False, buf, Lin(index.offset * isz, tuple(terms), strides), isz, guards)

    def _address_of(self, scope: int, buf: str, index: Affine, code, cse, chain) -> Mem:
        m = self.address(scope, buf, index, chain)
        for dyn, coef in index.dynamic:  # a gather (or scatter): the loaded index, scaled, added to the pointer
            idx = self.expr(dyn, code, cse, scope, chain)
            t = self.emit(code, Prim.IMUL, (idx, Imm(coef * self.kernel.buffer(buf).dtype.itemsize)))
            code.append(Instr(self.mn(Prim.IADD), Prim.IADD, t, (t, m.base)))
            m = Mem(t, m.disp)
        return m

    def load(self, e: Load, code, cse, scope, chain, dst) -> Reg:
        buf = self.kernel.buffer(e.buf)
        m = self._address_of(scope, e.buf, e.index, code, cse, chain)
        if buf.dtype is DType.F16:  # an fp16 activation: its 16 bits, then float32 (exact)
            bits = self.new(RegFile.B32)
            code.append(Instr(self.target.loads[buf.dtype], Prim.LOAD, bits, (m,), buf.dtype, None, mask=self.guard,
                              warp=self.access(e.buf, e.index, chain)))
            r = dst or self.new(RegFile.FP)
            code.append(Instr(self.mn(Prim.CVT_H2F), Prim.CVT_H2F, r, (bits,)))
            return r
        r = dst or self.new(RegFile.FP if buf.dtype is DType.F32 else RegFile.GP)
        code.append(Instr(self.target.loads[buf.dtype], Prim.LOAD, r, (m,), buf.dtype, None, mask=self.guard,
                          warp=self.access(e.buf, e.index, chain)))
        return r

    def store(self, ph: Map, code, cse, scope, chain) -> None:
        val = self.expr(ph.value, code, cse, scope, chain)
        buf = self.kernel.buffer(ph.buf)
        mem = self._address_of(scope, ph.buf, ph.index, code, cse, chain)
        access = self.access(ph.buf, ph.index, chain)
        if val.file is RegFile.B32:  # a packed pair of 16-bit values (Prim.CVT_BF16X2): one 32-bit store
            code.append(Instr("st.global.b32", Prim.STORE, mem, (val,), DType.I32, None, mask=self.guard,
                              warp=replace(access, width=2 * buf.dtype.itemsize)))
            return
        if buf.dtype is DType.F16:  # an fp16 activation: the float32 value rounded to nearest even
            bits = self.new(RegFile.B32)
            code.append(Instr(self.mn(Prim.CVT_F2H), Prim.CVT_F2H, bits, (val,)))
            val = bits
        code.append(Instr(self.target.stores[buf.dtype], Prim.STORE, mem, (val,), buf.dtype, None, mask=self.guard,
                          warp=access))

    def store_pair(self, lo: tuple[Map, Reg], hi: tuple[Map, Reg], code, cse, scope, chain) -> None:
        """Two fp16 elements side by side (`hi` one element past `lo`), their float32 values already computed,
        as one 32-bit store: cvt.rn.f16x2.f32 rounds both and packs them, `lo` in the low half (memory order)."""
        (ph, a), (_, b) = lo, hi
        packed = self.new(RegFile.B32)
        code.append(Instr(self.mn(Prim.CVT_F16X2), Prim.CVT_F16X2, packed, (b, a)))
        mem = self._address_of(scope, ph.buf, ph.index, code, cse, chain)
        access = self.access(ph.buf, ph.index, chain)
        code.append(Instr("st.global.b32", Prim.STORE, mem, (packed,), DType.I32, None, mask=self.guard,
                          warp=replace(access, width=2 * access.width)))

    def dot4(self, e: Op, code, cse, scope, chain, dst) -> Reg:
        """Four bytes of each operand multiplied and added into the accumulator one at a time, each byte loaded
        as any element is (a linear layer too narrow for the tensor cores: BERT's classifier)."""
        a, b, acc = e.args
        total = self.expr(acc, code, cse, scope, chain)
        r = dst or self.new(RegFile.GP)
        for j in range(4):
            ra, rb = (self.expr(Load(x.buf, Affine(x.index.offset + j, x.index.terms)), code, cse, scope, chain)
                      for x in (a, b))
            p = self.emit(code, Prim.IMUL, (ra, rb))
            code.append(Instr(self.mn(Prim.IADD), Prim.IADD, r, (total if j == 0 else r, p)))
        return r

    def halves(self, e: Op, code, cse, scope, chain) -> Reg:
        """Prim.PACK_H2 (lowering/isel_simt_pairs.py): two fp16 elements, low then high, in one 32-bit register."""
        lo, hi = e.args
        r = self.new(RegFile.B32)
        if isinstance(lo, Const):  # a constant in both halves
            bits = int(np.float16(lo.value).view(np.uint16))
            code.append(Instr("mov.b32", Prim.IMOV, r, (Imm(bits << 16 | bits),)))
            return r
        m = self._address_of(scope, lo.buf, lo.index, code, cse, chain)
        access = self.access(lo.buf, lo.index, chain)
        if lo == hi:  # one element in both halves: its 16 bits, then prmt's bytes 1:0 of it twice
            bits = self.new(RegFile.B32)
            code.append(Instr(self.target.loads[DType.F16], Prim.LOAD, bits, (m,), DType.F16, None, mask=self.guard,
                              warp=access))
            code.append(Instr(self.mn(Prim.PRMT), Prim.PRMT, r, (bits, bits, Imm(0x1010))))
            return r
        assert hi.index == Affine(lo.index.offset + 1, lo.index.terms), self.kernel.name  # neighbours
        code.append(Instr("ld.global.b32", Prim.LOAD, r, (m,), DType.I32, None, mask=self.guard,
                          warp=replace(access, width=2 * access.width)))
        return r

    def operation(self, e: Op, code, cse, scope, chain, dst) -> Reg:
        if e.prim is Prim.PACK_H2:
            return self.halves(e, code, cse, scope, chain)
        if e.prim in (Prim.HADD2, Prim.HSUB2, Prim.HMUL2):  # paired fp16 arithmetic (isel_simt_pairs.py)
            srcs = tuple(self.expr(a, code, cse, scope, chain) for a in e.args)
            r = dst or self.new(RegFile.B32)
            code.append(Instr(self.mn(e.prim), e.prim, r, srcs))
            return r
        if e.prim in (Prim.CVT_BF16X2, Prim.CVT_F16X2):  # two float32 into one 32-bit register
            # (lowering/isel_simt_pairs.py). The two elements' instructions are interleaved, as ptxas schedules
            # two independent chains: each computed apart (each reuses only what was computed before both).
            for shared in _loads_in(e.args[0]) & _loads_in(e.args[1]):  # (an element both read: a broadcast)
                self.expr(shared, code, cse, scope, chain)
            halves = [[] for _ in e.args]
            srcs = tuple(self.expr(a, part, dict(cse), scope, chain) for a, part in zip(e.args, halves))
            for pair in itertools.zip_longest(*halves):
                code.extend(i for i in pair if i is not None)
            r = dst or self.new(RegFile.B32)
            code.append(Instr(self.mn(e.prim), e.prim, r, srcs))
            return r
        return super().operation(e, code, cse, scope, chain, dst)

    def expr(self, e, code, cse, scope, chain, dst=None) -> Reg:
        if isinstance(e, Index) and (e.var in self.coords or e.var in self.positions):
            r = self.coords[e.var][0] if e.var in self.coords else self.positions[e.var]
            if dst is None:
                return r
            code.append(Instr(self.mn(Prim.IMOV), Prim.IMOV, dst, (r,)))
            return dst
        return super().expr(e, code, cse, scope, chain, dst)

    def latch(self, var: str, counter: Reg, scope: int | None, scale: int = 1) -> tuple[Instr, ...]:
        """The scalar latch's pointer steps, then PTX's loop control: sub, setp, predicated bra."""
        steps = [i for i in super().latch(var, counter, scope, scale) if i.prim is Prim.IADD]
        if var in self.positions:
            p = self.positions[var]
            steps.append(Instr(self.mn(Prim.IADD), Prim.IADD, p, (p, Imm(self.lane_step))))
        more = self.new(RegFile.PRED)
        return tuple(steps) + (Instr(self.mn(Prim.ISUB), Prim.ISUB, counter, (counter, Imm(1))),
                               Instr(self.mn(Prim.ICMP_NE), Prim.ICMP_NE, more, (counter, Imm(0))),
                               Instr(self.mn(Prim.BRANCH_NZ), Prim.BRANCH_NZ, None, (more,)))

    # ---- warp per row -----------------------------------------------------------------------------
    def lane_loop(self, var: str, extent: int, scope: int, parallel: bool, code: list[Item], fill) -> None:
        """for (j = lane; j < extent; j += 32): `fill(body, shift)`, as a counted loop of ceil(extent / 32)
        trips unrolled UNROLL times (NVVM unrolls such loops too): each trip's loads go out first, so a warp
        has several in flight instead of waiting out the memory latency of each. Where the row is not a
        multiple of 32, accesses are guarded by j < extent. Each lane still sees its elements in order."""
        trip = -(-extent // self.warp)
        unroll = next(u for u in UNROLL if trip % u == 0)
        self.trips[var] = trip // unroll
        self.lane_step = self.warp * unroll
        pos = None
        if extent % self.warp:
            pos = self.new(RegFile.GP)
            code.append(Instr(self.mn(Prim.IMOV), Prim.IMOV, pos, (self.lane,)))
            self.positions[var] = pos
        guards: list[Item] = []
        loads: list[Item] = []
        rest: list[Item] = []
        for u in range(unroll):
            if pos is not None:
                self.guard = self.new(RegFile.PRED)
                guards.append(Instr(self.mn(Prim.ICMP_LT), Prim.ICMP_LT, self.guard,
                                    (pos, Imm(extent - self.warp * u))))
                self.guard_lins = ((Lin(self.warp * u, ((1, self.warp, 1),), (self.lane_step,)), extent),)
            part: list[Item] = []
            fill(part, self.warp * u)
            for ins in part:
                (loads if isinstance(ins, Instr) and ins.prim is Prim.LOAD else rest).append(ins)
        self.loop(var, trip // unroll, guards + loads + rest, parallel, code, scope, scale=self.lane_step)
        self.positions.pop(var, None)
        self.guard, self.guard_lins, self.lane_step = None, (), 0

    def reduce_phase(self, scope: int, ph: Reduce, outer, code: list[Item]) -> None:
        if self.lane is None:
            return super().reduce_phase(scope, ph, outer, code)
        acc = self.accumulator(ph.init, code, scope, outer)
        self.scalars[ph.acc] = acc
        self.scalar_fp[ph.acc] = True

        def fill(body: list[Item], shift: int) -> None:
            body.extend(self.reduce_body(scope, _shifted(ph, ph.var, shift), outer, acc))
            if self.guard is not None:  # lanes past the row's end keep their partial result
                last = max(i for i, ins in enumerate(body) if isinstance(ins, Instr) and ins.dst == acc)
                body[last] = replace(body[last], mask=self.guard)

        self.lane_loop(ph.var, ph.extent, scope, False, code, fill)
        combine = _COMBINE[ph.update.prim]
        offset = self.warp // 2
        while offset:  # butterfly: after log2(warp) steps every lane holds the whole row's result
            other = self.emit(code, Prim.SHFL_XOR, (acc, Imm(offset)), RegFile.FP)
            code.append(Instr(self.mn(combine), combine, acc, (acc, other)))
            offset //= 2

    def map_phase(self, scope: int, ph: Map, outer, code: list[Item]) -> None:
        if self.lane is None:
            return super().map_phase(scope, ph, outer, code)
        self.lane_loop(ph.var, ph.extent, scope, True, code,
                       lambda body, shift: self.store(_shifted(ph, ph.var, shift), body, {}, scope,
                                                      outer + (ph.var,)))

    def point_store(self, ph: Map, code: list, cse: dict, scope: int) -> None:
        """A once-per-row store (layer norm's mean and rstd) from lane 0 only."""
        first = self.emit(code, Prim.ICMP_LT, (self.lane, Imm(1)), RegFile.PRED)
        self.guard, self.guard_lins = first, ((Lin(0, ((1, self.warp, 1),)), 1),)
        self.store(ph, code, cse, scope, ())
        self.guard, self.guard_lins = None, ()

    def phases(self, outer: tuple[str, ...]) -> list[Item]:
        if self.lane is None:
            return super().phases(outer)
        code: list[Item] = []
        point_cse: dict = {}
        for scope, ph in enumerate(self.kernel.phases):
            if isinstance(ph, Reduce):
                self.reduce_phase(scope, ph, outer, code)
            elif isinstance(ph, Let):  # every lane computes the row's scalars (they hold the same totals)
                self.scalar_fp[ph.name] = bool(is_fp(ph.value, self.kernel, self.scalar_fp))
                self.scalars[ph.name] = self.expr(ph.value, code, point_cse, scope, outer)
            elif ph.var is None:
                self.point_store(ph, code, point_cse, scope)
            else:
                self.map_phase(scope, ph, outer, code)
        return code


def _shift_expr(e, var: str, by: int):
    if isinstance(e, Load):
        i = e.index
        return Load(e.buf, Affine(i.offset + i.coef(var) * by, i.terms, i.dynamic))
    if isinstance(e, Op):
        return Op(e.prim, tuple(_shift_expr(a, var, by) for a in e.args))
    return e


def _shifted(ph, var: str, by: int):
    """A phase (Reduce or Map) working on element var + by instead of var."""
    if not by:
        return ph
    if isinstance(ph, Reduce):
        return replace(ph, update=_shift_expr(ph.update, var, by), store=ph.store and _shifted(ph.store, var, by))
    i = ph.index
    return replace(ph, index=Affine(i.offset + i.coef(var) * by, i.terms, i.dynamic),
                   value=_shift_expr(ph.value, var, by))


def _loads_in(e) -> set:
    """Every Load in an expression."""
    if isinstance(e, Load):
        return {e}
    return set().union(*(_loads_in(a) for a in e.args)) if isinstance(e, Op) else set()


def _uses_index(e) -> bool:
    return isinstance(e, Index) or (isinstance(e, Op) and any(_uses_index(a) for a in e.args))


def _gathers(e) -> bool:
    """Whether e loads through an index read from memory (an embedding's row lookup)."""
    if isinstance(e, Load):
        return bool(e.index.dynamic)
    return isinstance(e, Op) and any(_gathers(a) for a in e.args)


def _points_only(kernel: Kernel) -> Kernel:
    """An elementwise kernel's row loop becomes one more parallel dimension: a thread per element."""
    maps = [p for p in kernel.phases if isinstance(p, Map)]
    if len(maps) != len(kernel.phases) or len({(m.var, m.extent) for m in maps}) != 1 or maps[0].var is None:
        return kernel
    var, extent = maps[0].var, maps[0].extent
    phases = tuple(Map(None, 1, m.buf, m.index, m.value) for m in maps)
    return replace(kernel, parallel=kernel.parallel + ((var, extent),), phases=phases)


def _row_kernel(kernel: Kernel) -> bool:
    """Softmax and layer norm: reductions and maps all along one variable, reductions that combine."""
    loops = {p.var for p in kernel.phases if isinstance(p, (Reduce, Map)) and p.var is not None}
    reduces = [p for p in kernel.phases if isinstance(p, Reduce)]
    exprs = [e for p in kernel.phases for e in ((p.init, p.update) if isinstance(p, Reduce) else (p.value,))]
    if any(_uses_index(e) for e in exprs):  # an element's index is a loop count on the thread mapping only
        return False
    if any(_gathers(e) for e in exprs) or any(isinstance(p, Map) and p.index.dynamic for p in kernel.phases):
        return False  # the warp's address model follows affine rows; a gather keeps a thread per point
    return bool(reduces) and len(loops) == 1 and all(
        isinstance(r.update, Op) and r.update.prim in _COMBINE and Scalar(r.acc) in r.update.args
        and r.init == Const(_NEUTRAL[_COMBINE[r.update.prim]]) for r in reduces)


def _decompose(sel: SimtSelector, index: Reg, unit: int, parallel, code: list) -> None:
    """Each parallel variable's coordinate from `index` (= gid // unit), innermost fastest."""
    inner = 1
    for i, (var, extent) in reversed(list(enumerate(parallel))):
        x = index if inner == 1 else sel.emit(code, Prim.IDIV, (index, Imm(inner)))
        outermost = i == 0
        c = x if outermost else sel.emit(code, Prim.IREM, (x, Imm(extent)))
        sel.coords[var] = (c, ((unit * inner, 0 if outermost else extent, 1),))
        inner *= extent


def _grid_stride(sel: SimtSelector, gid: Reg, threads: int, points: int, parallel) -> list[Item]:
    """for (i = gid; i < points; i += threads) { the element's coordinates, pointers and phases }: the CUDA
    grid-stride loop, for grids larger than the GPU holds at once; the last trip is guarded."""
    trips = -(-points // threads)
    idx = sel.emit(sel.prologue, Prim.IMOV, (gid,))
    body: list[Item] = []
    if points % threads:
        sel.guard = sel.emit(body, Prim.ICMP_LT, (idx, Imm(points)), RegFile.PRED)
    sel.point_code = body
    sel.grid_stride = (threads, points)
    _decompose(sel, idx, 1, parallel, body)
    body += sel.phases(())
    sel.point_code, sel.guard = None, None
    counter = sel.new(RegFile.GP)
    more = sel.new(RegFile.PRED)
    latch = (Instr(sel.mn(Prim.IADD), Prim.IADD, idx, (idx, Imm(threads))),
             Instr(sel.mn(Prim.ISUB), Prim.ISUB, counter, (counter, Imm(1))),
             Instr(sel.mn(Prim.ICMP_NE), Prim.ICMP_NE, more, (counter, Imm(0))),
             Instr(sel.mn(Prim.BRANCH_NZ), Prim.BRANCH_NZ, None, (more,)))
    return [Instr(sel.mn(Prim.IMOV), Prim.IMOV, counter, (Imm(trips),)), Loop(counter, trips, tuple(body), latch,
                                                                           True, "grid")]


def thread_index(sel: Selector, block: int) -> Reg:
    """gid = ctaid.x * ntid.x + tid.x"""
    tid = sel.new(RegFile.GP)
    cta = sel.new(RegFile.GP)
    sel.prologue.append(Instr(sel.mn(Prim.SREG), Prim.SREG, tid, (Imm("tid"),)))
    sel.prologue.append(Instr(sel.mn(Prim.SREG), Prim.SREG, cta, (Imm("ctaid"),)))
    g = sel.new(RegFile.GP)
    sel.prologue.append(Instr(sel.mn(Prim.IMUL), Prim.IMUL, g, (cta, Imm(block))))
    sel.prologue.append(Instr(sel.mn(Prim.IADD), Prim.IADD, g, (g, tid)))
    return g


def select_points(kernel: Kernel, target: Target, max_grid: int | None) -> Program:
    """A non-GEMM kernel as a thread per output element (a warp per row for row reductions), with at most
    `max_grid` blocks (None: one thread per point; beyond max_grid, threads loop over a grid-stride loop)."""
    kernel = _points_only(kernel)
    parallel = tuple((v, e) for v, e in kernel.parallel if e > 1)
    rows = kernel.points
    sel = SimtSelector(kernel, target, {})
    warp = _row_kernel(kernel)
    unit = target.simt.warp_size if warp else 1
    threads = rows * unit
    # Coordinates come from magic-number divisions (isa/emit_ptx.py), exact for dividends below 2^31; a
    # grid-stride index runs up to twice the points.
    assert threads <= 2 ** 30, f"{kernel.name}: {threads} threads; SIMT index arithmetic needs at most 2^30"
    block = min(BLOCK, -(-threads // target.simt.warp_size) * target.simt.warp_size)
    grid = -(-threads // block)
    if not warp and max_grid is not None:
        grid = min(grid, max_grid)
    gid = thread_index(sel, block)
    if not warp and grid * block < threads:
        code = _grid_stride(sel, gid, grid * block, rows, parallel)
        live: tuple = ()
    else:
        if warp:
            row = sel.emit(sel.prologue, Prim.IDIV, (gid, Imm(unit)))
            sel.lane = sel.emit(sel.prologue, Prim.IREM, (gid, Imm(unit)))
            sel.lane_var = next(p.var for p in kernel.phases if isinstance(p, Reduce))
        else:
            row = gid
        live = ()
        if grid * block != threads:
            leave = sel.emit(sel.prologue, Prim.ICMP_GE, (row, Imm(rows)), RegFile.PRED)
            sel.prologue.append(Instr(sel.mn(Prim.EXIT_IF), Prim.EXIT_IF, None, (leave,)))
            live = ((Lin(0, ((unit, 0, 1),)), rows),)
        _decompose(sel, row, unit, parallel, sel.prologue)
        code = sel.phases(())
    buffers = tuple(BufferSpec(b.name, b.size, b.dtype, b.is_output) for b in kernel.buffers)
    strategy = "warp per row, shuffle reduction" if warp else \
        "thread per element" + (", grid-stride loop" if sel.grid_stride else "")
    return Program(kernel.name, target.name, buffers, tuple(sel.prologue) + tuple(code), kernel.flops,
                   Launch(grid, block, (), live, strategy))
