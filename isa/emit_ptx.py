"""PTX text for a SIMT program: one `.entry` per kernel, that ptxas accepts (PTX ISA 8.0).

Each Program instruction becomes one PTX instruction, with these spellings of IR shapes PTX does not have:
buffer pointers arrive as `.param .u64` and are converted to global addresses (ld.param + cvta.to.global);
a special register is read into a 32-bit register and widened; SELECT's predicate goes last (selp); a
negated FMA negates its first factor (SASS's FFMA folds that in); the low 32 bits of an integer become a
float through a 32-bit temporary. Registers stay virtual: %f (f32), %rd (64-bit), %p (predicates).
"""

from __future__ import annotations

import struct

from isasim.isa.gpu import Gpu
from isasim.isa.program import Addr, Imm, Instr, Item, Loop, Mem, Program, Reg, RegFile
from isasim.isa.semantics import Prim

PTX_VERSION = "8.0"
_PREFIX = {RegFile.FP: "%f", RegFile.GP: "%rd", RegFile.PRED: "%p", RegFile.B32: "%h"}


def symbol(name: str) -> str:
    return "".join(c if c.isalnum() or c == "_" else "_" for c in name)


def _reg(r: Reg) -> str:
    return f"{_PREFIX[r.file]}{r.n}"


def _float(v: float) -> str:
    return "0f" + struct.pack(">f", v).hex().upper()


class _Writer:
    def __init__(self, prog: Program):
        self.prog = prog
        self.lines: list[str] = []
        self.labels = 0
        self.shared = {b.name for b in prog.launch.shared}

    def op(self, o) -> str:
        if isinstance(o, Reg):
            return _reg(o)
        if isinstance(o, Imm):
            return _float(o.value) if isinstance(o.value, float) else str(int(o.value))
        if isinstance(o, Mem):
            return f"[{_reg(o.base)}{f'+{o.disp}' if o.disp else ''}]"  # PTX writes a negative one [%rd1+-4]
        raise TypeError(o)

    def put(self, text: str, guard: Reg | None = None) -> None:
        self.lines.append(f"\t{'@' + _reg(guard) + ' ' if guard is not None else ''}{text};")

    def scoped(self, temp: str, first: str, last: str, guard: Reg | None) -> None:
        """Two instructions through a temporary declared in a scope of its own."""
        at = f"@{_reg(guard)} " if guard is not None else ""
        self.lines.append(f"\t{{ .reg {temp} %t; {first}; {at}{last}; }}")

    def items(self, items: tuple[Item, ...]) -> None:
        for it in items:
            if isinstance(it, Loop):
                self.labels += 1
                label = f"$L{self.labels}"
                self.lines.append(f"{label}:")
                self.items(it.body)
                for ins in it.latch:
                    self.instr(ins, label)
            else:
                self.instr(it, None)

    def instr(self, ins: Instr, loop_label: str | None) -> None:
        p, g, mn = ins.prim, ins.mask, ins.mnemonic
        d = self.op(ins.dst) if isinstance(ins.dst, (Reg, Mem)) else ""  # (mma's several: below)
        s = [self.op(x) for x in ins.srcs if not isinstance(x, Addr) and p is not Prim.SREG]
        if p is Prim.IMOV and isinstance(ins.srcs[0], Addr):
            a = ins.srcs[0]
            if a.buf in self.shared:
                self.put(f"mov.u64 {d}, {a.buf}")
            else:
                self.put(f"ld.param.u64 {d}, [{symbol(a.buf)}]")
                self.put(f"cvta.to.global.u64 {d}, {d}")
            if a.offset:
                self.put(f"add.s64 {d}, {d}, {a.offset}")
        elif p is Prim.SREG:
            self.put(f"mov.u32 %r1, %{ins.srcs[0].value}.x")
            self.put(f"cvt.u64.u32 {d}, %r1")
        elif p is Prim.BRANCH_NZ:
            self.put(f"bra {loop_label}", ins.srcs[0])
        elif p is Prim.EXIT_IF:
            self.put("bra $Lexit", ins.srcs[0])
        elif p in (Prim.MMA_F16, Prim.MMA_BF16, Prim.MMA_S8):  # {d0..d3}, {a0..a3}, {b0, b1}, {c0..c3}
            groups = [ins.dst, ins.srcs[:4], ins.srcs[4:6], ins.srcs[6:]]
            self.put(f"{mn} " + ", ".join("{" + ", ".join(self.op(r) for r in grp) + "}" for grp in groups))
        elif p in (Prim.LDMATRIX, Prim.LDMATRIX_T, Prim.LOAD_SHARED_V):
            self.put(f"{mn} {{" + ", ".join(self.op(r) for r in ins.dst) + f"}}, {s[0]}")
        elif p is Prim.CP_ASYNC:
            self.put(f"{mn} {d}, {s[0]}, {ins.warp.width}", g)
        elif p in (Prim.CP_COMMIT, Prim.CP_WAIT):
            self.put(" ".join([mn] + s))
        elif p is Prim.BARRIER:
            self.put("bar.sync 0")
        elif p is Prim.SHFL_XOR:
            self.put(f"shfl.sync.bfly.b32 {d}, {s[0]}, {s[1]}, 31, -1")
        elif p is Prim.SELECT:
            self.put(f"{mn} {d}, {s[1]}, {s[2]}, {s[0]}", g)
        elif p is Prim.SETCC:
            self.put(f"selp.s64 {d}, 1, 0, {s[0]}", g)
        elif p is Prim.FNMA:
            self.scoped(".f32", f"neg.f32 %t, {s[0]}", f"fma.rn.f32 {d}, %t, {s[1]}, {s[2]}", g)
        elif p in (Prim.IDIV, Prim.IREM):
            self.divide(ins, d, s[0], int(ins.srcs[1].value))
        elif p is Prim.BITS_I2F:
            self.scoped(".b32", f"cvt.u32.u64 %t, {s[0]}", f"mov.b32 {d}, %t", g)
        elif p in (Prim.STORE, Prim.STORE_SHARED):
            self.put(f"{mn} {d}, {s[0]}", g)
        else:
            self.put(f"{mn} {', '.join([d] + s)}", g)

    def divide(self, ins: Instr, d: str, x: str, divisor: int) -> None:
        """Unsigned division (or remainder) of a thread index by a constant, as NVVM emits it for CUDA C's
        `i / 768`: a multiply by a magic number and a shift (Granlund & Montgomery, PLDI 1994), never ptxas's
        division routine."""
        magic, shift = magic_number(divisor)
        q = "%t"
        lines = [f"cvt.u32.u64 %w, {x}"]
        if magic == 1:
            lines.append(f"shr.u32 %w, %w, {shift}")
            lines.append(f"cvt.u64.u32 {q}, %w")
        else:
            lines.append(f"mul.wide.u32 {q}, %w, {magic}")
            lines.append(f"shr.u64 {q}, {q}, {shift}")
        if ins.prim is Prim.IREM:
            lines.append(f"mul.lo.s64 {q}, {q}, {divisor}")
            lines.append(f"sub.s64 {d}, {x}, {q}")
        else:
            lines.append(f"mov.u64 {d}, {q}")
        self.lines.append("\t{ .reg .b32 %w; .reg .b64 %t; " + "; ".join(lines) + "; }")

    def text(self, target: str, shared_align: int) -> str:
        prog = self.prog
        self.items(prog.body)
        regs = {f: 0 for f in _PREFIX}
        for line in self.lines:
            for f, pre in _PREFIX.items():
                for tok in line.replace(",", " ").replace("[", " ").replace("]", " ").replace("+", " ") \
                        .replace("{", " ").replace("}", " ").split():
                    tok = tok.rstrip(";").lstrip("@")
                    if tok.startswith(pre) and tok[len(pre):].isdigit():
                        regs[f] = max(regs[f], int(tok[len(pre):]))
        params = ",\n".join(f"\t.param .u64 {symbol(b.name)}" for b in prog.buffers)
        head = [f".version {PTX_VERSION}", f".target {target}", ".address_size 64", "",
                f"// {self.prog.launch.strategy}: grid {self.prog.launch.grid} x block {self.prog.launch.block}",
                f".visible .entry {symbol(prog.name)}(", params, ")", f".maxntid {self.prog.launch.block}, 1, 1", "{",
                f"\t.reg .pred %p<{regs[RegFile.PRED] + 1}>;", f"\t.reg .f32 %f<{regs[RegFile.FP] + 1}>;",
                f"\t.reg .b64 %rd<{regs[RegFile.GP] + 1}>;", "\t.reg .b32 %r<2>;"]
        if regs[RegFile.B32]:
            head.append(f"\t.reg .b32 %h<{regs[RegFile.B32] + 1}>;")
        head += [f"\t.shared .align {shared_align} .b8 {b.name}[{b.size * b.dtype.itemsize}];"
                 for b in self.prog.launch.shared]
        return "\n".join(head + self.lines + ["$Lexit:", "\tret;", "}", ""])


INDEX_BITS = 31  # dividends are below 2^31: isel_simt.py asserts it of element indices; GEMMs divide only ids


def magic_number(d: int) -> tuple[int, int]:
    """(m, s) with floor(n * m / 2^s) == floor(n / d) for every 0 <= n < 2^31; m == 1 for powers of two.
    With l = ceil(log2 d) and m = ceil(2^(31 + l) / d) < 2^32 the error term stays below 1 / d over 31-bit
    numerators (Granlund & Montgomery 1994, Theorem 4.2; Hacker's Delight, 10-9)."""
    if d <= 0:
        raise ValueError(f"division by {d}")
    if d & (d - 1) == 0:
        return 1, d.bit_length() - 1
    lg = (d - 1).bit_length()
    return -(-(1 << (INDEX_BITS + lg)) // d), INDEX_BITS + lg


def instruction_text(prog: Program, ins: Instr, loop_label: str = "$Lloop") -> str:
    """One instruction as emit_ptx writes it, on one line (what `isasim explain` lists)."""
    writer = _Writer(prog)
    writer.instr(ins, loop_label)
    return " ".join(line.strip() for line in writer.lines)


def emit_ptx(prog: Program, gpu: Gpu) -> str:
    """The kernel as a PTX module for the GPU's architecture (sm_80, sm_90); each shared array starts on a
    row of banks, where the executor and the cost model place it (isa/simt_exec.py)."""
    return _Writer(prog).text(gpu.ptx_target, gpu.shared_banks * gpu.shared_bank_bytes)
