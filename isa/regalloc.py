"""Register allocation: virtual registers become the target's physical registers, with what that costs.

Linear scan (Poletto & Sarkar, 1999) over the program laid out in order; a value used inside a loop but
defined before it stays live to the loop's end. Before the scan:
- two-address legalisation (x86): an ALU op overwrites its first source and vfmadd231/213 one of its three;
  where the overwritten value is still needed, an explicit copy (mov / vmovaps) is inserted — and counted;
- rematerialisation: when more float constants are live than there are registers, the least-used ones are
  reloaded from the constant pool at each use instead of being held (the loads are counted).
Predicates live in the flags (AArch64, x86 integer compares) or in an xmm mask (x86 float compares); a
flags value must reach its reader with no flag-writing instruction in between, which is checked.
Entry and exit glue (saving callee-saved registers used, `ret`) belongs to the emitted function, not here.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

from isasim.isa.program import Addr, Imm, Instr, Item, Mem, Program, Reg, RegFile
from isasim.isa.semantics import Prim

FLAGS = Reg(RegFile.PRED, 0)
TIED_ALU = (Prim.IADD, Prim.ISUB, Prim.IAND, Prim.ISHL, Prim.IMUL)
FMA_LIKE = (Prim.FMA, Prim.FNMA)
INT_COMPARES = (Prim.ICMP_NE, Prim.ICMP_GE)
FLOAT_COMPARES = (Prim.FCMP_LT, Prim.FCMP_NE)


class RegisterPressure(Exception):
    pass


def _regs(ins: Instr) -> tuple[list[Reg], list[Reg]]:
    """(registers read, registers written)."""
    used = [s.base if isinstance(s, Mem) else s for s in ins.srcs]
    if isinstance(ins.dst, Mem):
        used.append(ins.dst.base)
    if ins.mask is not None:
        used.append(ins.mask)
        if isinstance(ins.dst, Reg) and ins.prim is not Prim.LOAD:
            used.append(ins.dst)  # merge masking reads the lanes it keeps
    wrote = [ins.dst] if isinstance(ins.dst, Reg) else []
    return [r for r in used if isinstance(r, Reg)], wrote


@dataclass
class _Layout:
    """The program flattened: instructions by position, and each loop's [first, last] position."""

    instrs: list[Instr] = field(default_factory=list)
    loops: list[tuple[int, int, Reg]] = field(default_factory=list)

    @classmethod
    def of(cls, items: tuple[Item, ...]) -> "_Layout":
        lay = cls()
        lay.add(items)
        return lay

    def add(self, items: tuple[Item, ...]) -> None:
        for it in items:
            if isinstance(it, Instr):
                self.instrs.append(it)
            else:
                start = len(self.instrs)
                self.add(it.body)
                self.instrs.extend(it.latch)
                self.loops.append((start, len(self.instrs) - 1, it.counter))

    def intervals(self) -> dict[Reg, list[int]]:
        """[first position, last position] each virtual register must hold its value."""
        iv: dict[Reg, list[int]] = {}
        for pos, ins in enumerate(self.instrs):
            used, wrote = _regs(ins)
            for r in used + wrote:
                if r in iv:
                    iv[r][1] = pos
                else:
                    iv[r] = [pos, pos]
        for start, end, counter in self.loops:
            for r, (a, b) in iv.items():
                if a < start <= b or r == counter and a < start:  # live into the loop: held to its end
                    iv[r][1] = max(b, end)
        return iv


def _rebuild(items: tuple[Item, ...], before: dict[int, list[Instr]], replace_at: dict[int, Instr | None],
             pos: list[int]) -> tuple[Item, ...]:
    """The program with instructions inserted before, replaced at, or deleted from given positions."""
    out: list[Item] = []

    def one(ins: Instr, sink: list) -> None:
        p = pos[0]
        pos[0] += 1
        sink.extend(before.get(p, ()))
        new = replace_at.get(p, ins)
        if new is not None:
            sink.append(new)

    for it in items:
        if isinstance(it, Instr):
            one(it, out)
        else:
            body = _rebuild(it.body, before, replace_at, pos)
            latch: list[Instr] = []
            for ins in it.latch:
                one(ins, latch)
            out.append(replace(it, body=body, latch=tuple(latch)))
    return tuple(out)


class _Fresh:
    def __init__(self, program: Program):
        lay = _Layout.of(program.body)
        self.n = max((r.n for ins in lay.instrs for r in sum(_regs(ins), [])), default=0)

    def __call__(self, file: RegFile, lanes: int = 1) -> Reg:
        self.n += 1
        return Reg(file, self.n, lanes)


def _move(target, file: RegFile, dst: Reg, src: Reg) -> Instr:
    if file is RegFile.FP and dst.lanes > 1:
        return Instr(target.vector.move, Prim.FMOV, dst, (src,), lanes=dst.lanes)
    if file is RegFile.FP:
        return Instr(target.fp_move, Prim.FMOV, dst, (src,))
    return Instr(target.gp_move, Prim.IMOV, dst, (src,))


def _tied(ins: Instr, target) -> list[int]:
    """The sources one of which a destructive instruction must overwrite, in order of preference."""
    vec = target.vector
    if ins.prim in (Prim.DOT4, Prim.SDOT4):
        return [2]  # vpdpbusd and sdot accumulate into their destination
    if ins.lanes > 1 and vec is not None and not target.registers.two_address:
        if ins.prim in FMA_LIKE:
            return [2]  # fmla/fmls accumulate into their destination
        if ins.prim is Prim.SELECT and vec.select_overwrites_mask:
            return [0]  # bsl overwrites its mask
        return []
    if not target.registers.two_address:
        return []
    if ins.prim in TIED_ALU and not (ins.prim is Prim.IMUL and isinstance(ins.srcs[1], Imm)):
        return [0]
    if ins.prim in FMA_LIKE:
        return [2, 0, 1]  # vfmadd231 overwrites the addend, vfmadd213 a factor
    if ins.prim is Prim.SELECT and ins.dst.file is RegFile.GP:
        return [2]  # cmov overwrites the value taken when the condition is false
    if ins.prim is Prim.CVT_I2F and len(ins.srcs) == 2:
        return [1]  # vcvtsi2ss merges into its destination
    return []


def _two_address(program: Program, target, fresh: _Fresh) -> Program:
    """Make every destructive instruction's destination one of its dying sources, copying if needed."""
    lay = _Layout.of(program.body)
    iv = lay.intervals()
    before: dict[int, list[Instr]] = {}
    replace_at: dict[int, Instr] = {}
    for pos, ins in enumerate(lay.instrs):
        if not isinstance(ins.dst, Reg):
            continue
        candidates = _tied(ins, target)
        if not candidates:
            continue
        srcs = ins.srcs
        if any(srcs[i] == ins.dst for i in candidates):
            continue
        if any(isinstance(srcs[i], Reg) and iv[srcs[i]][1] == pos for i in candidates):
            continue  # a dying source: the allocator gives the destination its register
        i = candidates[0]
        copy = fresh(srcs[i].file, srcs[i].lanes)
        before[pos] = [_move(target, srcs[i].file, copy, srcs[i])]
        replace_at[pos] = replace(ins, srcs=srcs[:i] + (copy,) + srcs[i + 1:])
    if not before:
        return program
    return replace(program, body=_rebuild(program.body, before, replace_at, [0]))


def _pressure(iv: dict[Reg, list[int]], file: RegFile) -> int:
    events = []
    for r, (a, b) in iv.items():
        if r.file is file:
            events += [(a, 1), (b, -1)]
    live = peak = 0
    for _, d in sorted(events, key=lambda e: (e[0], e[1])):
        live += d
        peak = max(peak, live)
    return peak


def _rematerialise(program: Program, file: RegFile, budget: int, fresh: _Fresh) -> Program:
    """Reload the least-used constants at each use until the file's pressure fits its registers."""
    reloaded: set[Reg] = set()
    while True:
        lay = _Layout.of(program.body)
        iv = lay.intervals()
        if _pressure(iv, file) <= budget:
            return program
        uses: dict[Reg, list[int]] = {}
        defs: dict[Reg, int] = {}
        writes: dict[Reg, int] = {}
        for pos, ins in enumerate(lay.instrs):
            used, wrote = _regs(ins)
            for r in used:
                uses.setdefault(r, []).append(pos)
            for r in wrote:
                defs[r] = pos
                writes[r] = writes.get(r, 0) + 1
        consts = [r for r, p in defs.items() if r.file is file and isinstance(lay.instrs[p].srcs[0], Imm)
                  and lay.instrs[p].prim in (Prim.FMOV, Prim.IMOV) and r in uses and writes[r] == 1
                  and r not in reloaded]  # a reload right before its use: nothing left to gain
        if not consts:
            raise RegisterPressure(f"{program.name}: needs more than {budget} {file.value} registers")
        victim = min(consts, key=lambda r: (len(uses[r]), -(iv[r][1] - iv[r][0])))
        load = lay.instrs[defs[victim]]
        before: dict[int, list[Instr]] = {}
        replace_at: dict[int, Instr | None] = {defs[victim]: None}
        for pos in uses[victim]:
            tmp = fresh(file, victim.lanes)
            reloaded.add(tmp)
            before[pos] = [replace(load, dst=tmp)]
            ins = lay.instrs[pos]
            replace_at[pos] = replace(ins, srcs=tuple(tmp if s == victim else s for s in ins.srcs))
        program = replace(program, body=_rebuild(program.body, before, replace_at, [0]))


def _flag_writers(target) -> tuple[Prim, ...]:
    ps = INT_COMPARES + (Prim.DEC_FLAGS,)
    if target.registers.fp_compare_to_flags:
        ps += FLOAT_COMPARES
    if target.registers.two_address:  # x86 integer ALU ops set the flags too
        ps += TIED_ALU
    return ps


def _flags_values(lay: _Layout, target) -> set[Reg]:
    """Predicates that live in the flags register rather than in an allocatable register."""
    in_flags = INT_COMPARES + (FLOAT_COMPARES if target.registers.fp_compare_to_flags else ())
    return {ins.dst for ins in lay.instrs if ins.prim in in_flags and isinstance(ins.dst, Reg)
            and ins.dst.file is RegFile.PRED and ins.lanes == 1}


def _check_flags(lay: _Layout, iv: dict[Reg, list[int]], flags: set[Reg], target, name: str) -> None:
    writers = _flag_writers(target)
    for r in flags:
        a, b = iv[r]
        for pos in range(a + 1, b + 1):
            ins = lay.instrs[pos]
            if ins.prim in writers and ins.lanes == 1 and ins.dst != r:
                raise RegisterPressure(f"{name}: {ins} overwrites the flags between a compare and its reader")


def _scan(lay: _Layout, iv: dict[Reg, list[int]], flags: set[Reg], target, buffers: tuple[str, ...],
          name: str) -> dict[Reg, Reg]:
    regs = target.registers
    names = {RegFile.GP: regs.gp, RegFile.FP: regs.fp, RegFile.MASK: regs.mask}
    # argument registers hold buffer addresses until the last instruction that reads one
    last_addr = max((p for p, ins in enumerate(lay.instrs) if any(isinstance(s, Addr) for s in ins.srcs)),
                    default=-1)
    if len(buffers) > len(regs.args):
        raise RegisterPressure(f"{name}: {len(buffers)} buffers, but the ABI passes {len(regs.args)} in registers")
    reserved = set(regs.args[:len(buffers)])
    free = {f: [n for n in ns if n not in reserved] for f, ns in names.items()}
    # hints: a destructive instruction's destination wants its dying source's register
    tie: dict[Reg, list[Reg]] = {}
    for pos, ins in enumerate(lay.instrs):
        if isinstance(ins.dst, Reg):
            order = [ins.srcs[i] for i in _tied(ins, target)] + list(ins.srcs)  # the tied operand first
            tie.setdefault(ins.dst, []).extend(s for s in order if isinstance(s, Reg) and iv[s][1] == pos)
    assign: dict[Reg, str] = {}
    active: list[tuple[int, Reg]] = []
    released = False
    # tile registers come named (tmm0-7) by the AMX selector, which keeps its eight tiles itself
    for r in sorted((r for r in iv if r not in flags and r.file is not RegFile.TILE),
                    key=lambda r: (iv[r][0], iv[r][1])):
        start = iv[r][0]
        if not released and start > last_addr:
            for f in free:
                free[f] = free[f] + [n for n in names[f] if n in reserved]
            released = True
        for end, other in sorted(active, key=lambda e: e[0]):
            if end <= start:
                active.remove((end, other))
                free[other.file].insert(0, assign[other])
        pool = free[r.file]
        if not pool:
            raise RegisterPressure(f"{name}: out of {r.file.value} registers at instruction {lay.instrs[start]}")
        want = [assign[s] for s in tie.get(r, []) if s in assign and assign[s] in pool]
        reg = want[0] if want else pool[0]
        pool.remove(reg)
        assign[r] = reg
        active.append((iv[r][1], r))
    mapping = {r: FLAGS for r in flags}
    for r, n in assign.items():
        mapping[r] = Reg(r.file, names[r.file].index(n), r.lanes)
    return mapping


def _rename(items: tuple[Item, ...], m: dict[Reg, Reg]) -> tuple[Item, ...]:
    """Every register replaced by its image under m (registers m does not name stay)."""
    def op(o):
        if isinstance(o, Reg):
            return m.get(o, o)
        if isinstance(o, Mem):
            return Mem(m.get(o.base, o.base), o.disp)
        return o

    out: list[Item] = []
    for it in items:
        if isinstance(it, Instr):
            out.append(replace(it, dst=op(it.dst) if it.dst is not None else None,
                               srcs=tuple(op(s) for s in it.srcs), mask=it.mask and m.get(it.mask, it.mask)))
        else:
            out.append(replace(it, counter=m.get(it.counter, it.counter), body=_rename(it.body, m),
                               latch=tuple(_rename(it.latch, m))))
    return tuple(out)


def allocate(program: Program, target) -> Program:
    """The program on the target's physical registers (Reg.n indexes target.registers.gp / .fp)."""
    fresh = _Fresh(program)
    budget = len(target.registers.fp)
    program = _rematerialise(program, RegFile.FP, budget, fresh)
    if target.registers.two_address or target.vector is not None:
        program = _two_address(program, target, fresh)
        program = _rematerialise(program, RegFile.FP, budget, fresh)  # copies can raise the pressure
    lay = _Layout.of(program.body)
    flags = _flags_values(lay, target)
    # a predicate outside the flags is an x86 float compare's xmm mask: allocate it as a float register
    masks = sorted({r for ins in lay.instrs for r in sum(_regs(ins), []) if r.file is RegFile.PRED} - flags,
                   key=lambda r: r.n)
    if masks:
        program = replace(program, body=_rename(program.body, {r: fresh(RegFile.FP, r.lanes) for r in masks}))
        lay = _Layout.of(program.body)
    iv = lay.intervals()
    _check_flags(lay, iv, flags, target, program.name)
    mapping = _scan(lay, iv, flags, target, tuple(b.name for b in program.buffers), program.name)
    moves = frozenset({target.fp_move, target.gp_move} | ({target.vector.move} if target.vector else set()))
    return replace(program, body=_drop_self_moves(_rename(program.body, mapping), moves))


def _drop_self_moves(items: tuple[Item, ...], moves: frozenset[str]) -> tuple[Item, ...]:
    """A copy whose source and destination got the same register is no instruction at all (a zero-extending
    movzx onto itself is one, so only the target's plain moves are dropped)."""
    def keep(ins: Instr) -> bool:
        return not (ins.mnemonic in moves and ins.srcs == (ins.dst,))

    out: list[Item] = []
    for it in items:
        if isinstance(it, Instr):
            if keep(it):
                out.append(it)
        else:
            out.append(replace(it, body=_drop_self_moves(it.body, moves),
                               latch=tuple(i for i in it.latch if keep(i))))
    return tuple(out)
