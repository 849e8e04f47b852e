"""Assembly text for a register-allocated Program: GNU as syntax, one callable function per kernel.

The function takes its buffers' base addresses as arguments, in Program.buffers order (System V AMD64 /
AAPCS64). Every Program instruction becomes exactly one machine instruction, so what runs natively is what
was counted; only the entry/exit glue (saving callee-saved registers it uses, `ret`) is added. The loop that
runs most often is wrapped in llvm-mca region markers so its prediction can be compared with llvm-mca's.
"""

from __future__ import annotations

import struct
from typing import Callable

from isasim.isa import emit_vector
from isasim.isa.program import Addr, Imm, Instr, Item, Loop, Mem, Program, Reg, RegFile
from isasim.isa.regalloc import FLAGS
from isasim.isa.semantics import Prim
from isasim.isa.targets import Target
from isasim.isa.dtype import DType

TILE_PRIMS = frozenset({Prim.TILE_CONFIG, Prim.TILE_RELEASE, Prim.TILE_ZERO, Prim.TILE_LOAD, Prim.TILE_STORE,
                        Prim.TDPBUSD, Prim.TDPBF16PS})
_X86_32 = {"rax": "eax", "rcx": "ecx", "rdx": "edx", "rbx": "ebx", "rsi": "esi", "rdi": "edi", "rbp": "ebp"}
_X86_8 = {"rax": "al", "rcx": "cl", "rdx": "dl", "rbx": "bl", "rsi": "sil", "rdi": "dil", "rbp": "bpl"}
_X86_CC = {Prim.ICMP_NE: "ne", Prim.ICMP_GE: "ge"}
_A64_CC = {Prim.ICMP_NE: "ne", Prim.ICMP_GE: "ge", Prim.FCMP_NE: "ne", Prim.FCMP_LT: "mi"}


class EmitError(Exception):
    pass


def hottest_loop(items: tuple[Item, ...], trips: int = 1, best: tuple[int, Loop | None] = (0, None)):
    for it in items:
        if isinstance(it, Loop):
            n = trips * it.trip
            if not any(isinstance(x, Loop) for x in it.body) and n > best[0]:
                best = (n, it)
            best = hottest_loop(it.body, n, best)
    return best


def symbol(name: str) -> str:
    return "isasim_" + "".join(c if c.isalnum() else "_" for c in name)


class _Emitter:
    comment = "#"

    def __init__(self, program: Program, target: Target):
        self.p, self.t = program, target
        self.lines: list[str] = []
        self.pool: dict[int, str] = {}
        self.vpool: dict[int, str] = {}
        self.labels = 0
        self.blobs: list[str] = []  # data the instructions address (AMX's tile configuration)
        self.args = {b.name: target.registers.args[i] for i, b in enumerate(program.buffers)}
        self.last_compare: Prim | None = None
        self.hot = hottest_loop(program.body)[1]

    def error(self, msg: str) -> EmitError:
        return EmitError(f"{self.p.name}: {msg}")

    def bits(self, value) -> int:
        return value if isinstance(value, int) else struct.unpack("<I", struct.pack("<f", value))[0]

    def const_vector(self, value) -> str:
        """A 16-byte constant-pool entry holding value in every lane (AArch64 ldr q)."""
        bits = self.bits(value)
        if bits not in self.vpool:
            self.vpool[bits] = f".LV{len(self.vpool)}_{self.sym}"
        return self.vpool[bits]

    def reg(self, r: Reg) -> str:
        regs = self.t.registers
        if r.file is RegFile.TILE:
            return f"tmm{r.n}"
        return regs.fp[r.n] if r.file is RegFile.FP else regs.gp[r.n]

    def const(self, value) -> str:
        bits = value if isinstance(value, int) else struct.unpack("<I", struct.pack("<f", value))[0]
        if bits not in self.pool:
            self.pool[bits] = f".LC{len(self.pool)}_{self.sym}"
        return self.pool[bits]

    def fp_move(self, i: Instr, zero: Callable[[], str], const: Callable[[], str], copy: Callable[[], str]) -> str:
        """A float move in one of its three forms: the target's zero idiom, a load from the constant pool, or a
        register copy (each given as a function, so that a pool entry is made only for the form used)."""
        if not isinstance(i.srcs[0], Imm):
            return copy()
        zeros = {self.t.fp_zero} | ({self.t.vector.fp_zero} if self.t.vector else set())
        return zero() if i.mnemonic in zeros else const()

    def used(self) -> list[str]:
        names: set[str] = set()

        def walk(items):
            for it in items:
                if isinstance(it, Loop):
                    walk(it.body)
                    walk(it.latch)
                    names.add(self.reg(it.counter))
                    continue
                for o in (it.dst,) + it.srcs:
                    if isinstance(o, Reg) and o != FLAGS:
                        names.add(self.reg(o))
                    elif isinstance(o, Mem):
                        names.add(self.reg(o.base))
        walk(self.p.body)
        order = self.t.registers.gp + self.t.registers.fp
        return [n for n in order if n in names and n in self.t.registers.callee_saved]

    def items(self, items: tuple[Item, ...]) -> None:
        for it in items:
            if isinstance(it, Instr):
                self.lines.append("    " + self.instr(it))
                continue
            self.labels += 1
            label = f".L{self.labels}_{self.sym}"
            hot = it is self.hot
            if hot:
                self.lines.append(f"{self.comment} LLVM-MCA-BEGIN {self.p.name}")
            self.lines.append(f"{label}:")
            self.items(it.body)
            for ins in it.latch:
                self.lines.append("    " + (self.branch(label) if ins.prim is Prim.BRANCH_NZ else self.instr(ins)))
            if hot:
                self.lines.append(f"{self.comment} LLVM-MCA-END")

    def text(self) -> str:
        self.sym = symbol(self.p.name)
        saved = self.used()
        self.items(self.p.body)
        head, tail = self.glue(saved)
        pool = [f"{lab}: {self.word} 0x{bits:08x}" for bits, lab in self.pool.items()]
        if self.vpool:
            pool += [".p2align 4"] + [f"{lab}: {self.word} " + ", ".join([f"0x{bits:08x}"] * 4)
                                      for bits, lab in self.vpool.items()]
        pool += self.blobs
        return "\n".join(self.header() + head + self.lines + tail + self.footer(pool)) + "\n"


class X86Emitter(_Emitter):
    word = ".long"  # 32 bits (x86 GNU as's .word is 16)
    def header(self) -> list[str]:
        return [".intel_syntax noprefix", ".text", f".globl {self.sym}", f".type {self.sym}, @function",
                f"{self.sym}:"]

    def footer(self, pool: list[str]) -> list[str]:
        return [f".size {self.sym}, .-{self.sym}", ".section .rodata", ".p2align 2"] + pool + \
            [".section .note.GNU-stack,\"\",@progbits"]

    def glue(self, saved: list[str]) -> tuple[list[str], list[str]]:
        return [f"    push {r}" for r in saved], [f"    pop {r}" for r in reversed(saved)] + ["    ret"]

    def branch(self, label: str) -> str:
        return f"jnz {label}"

    def mem(self, m: Mem) -> str:
        return f"[{self.reg(m.base)}{'+' + str(m.disp) if m.disp else ''}]"

    def r32(self, r: Reg) -> str:
        n = self.reg(r)
        return _X86_32.get(n, n + "d")

    def r8(self, r: Reg) -> str:
        n = self.reg(r)
        return _X86_8.get(n, n + "b")

    def tiles(self, i: Instr) -> str:
        """AMX: the tile configuration (64 bytes in the data section), loads and stores with a stride register,
        the tile multiplies."""
        p, d, s = i.prim, i.dst, i.srcs
        if p is Prim.TILE_CONFIG:
            label = f".LT{len(self.blobs)}_{self.sym}"
            self.blobs += [".p2align 6", f"{label}: .byte " + ", ".join(str(b) for b in s[0].value)]
            return f"ldtilecfg [rip + {label}]"
        if p is Prim.TILE_RELEASE:
            return "tilerelease"
        if p is Prim.TILE_ZERO:
            return f"tilezero {self.reg(d)}"
        if p is Prim.TILE_LOAD:
            m = s[0]
            disp = f"+{m.disp}" if m.disp else ""
            return f"tileloadd {self.reg(d)}, [{self.reg(m.base)} + {self.reg(s[1])}*1{disp}]"
        if p is Prim.TILE_STORE:
            disp = f"+{d.disp}" if d.disp else ""
            return f"tilestored [{self.reg(d.base)} + {self.reg(s[1])}*1{disp}], {self.reg(s[0])}"
        if d != s[2]:
            raise self.error(f"{i}: {p.value} accumulates into its destination")
        return f"{p.value} {self.reg(d)}, {self.reg(s[0])}, {self.reg(s[1])}"

    def instr(self, i: Instr) -> str:  # noqa: C901 - one case per primitive, as an ISA manual lists them
        if i.prim in TILE_PRIMS:
            return self.tiles(i)
        if emit_vector.is_vector(i):
            return emit_vector.x86(self, i)
        p, d, s = i.prim, i.dst, i.srcs
        R = self.reg
        if p is Prim.LOAD:
            addr = self.mem(s[0])
            return {DType.F32: f"vmovss {R(d)}, DWORD PTR {addr}", DType.I64: f"mov {R(d)}, QWORD PTR {addr}",
                    DType.BOOL: f"movzx {self.r32(d)}, BYTE PTR {addr}",
                    DType.U8: f"movzx {self.r32(d)}, BYTE PTR {addr}",  # (writing r32 zeroes the upper half)
                    DType.I8: f"movsx {R(d)}, BYTE PTR {addr}",
                    DType.I32: f"movsxd {R(d)}, DWORD PTR {addr}"}[i.dtype]
        if p is Prim.STORE:
            addr = self.mem(d)
            return {DType.F32: f"vmovss DWORD PTR {addr}, {R(s[0])}", DType.I64: f"mov QWORD PTR {addr}, {R(s[0])}",
                    DType.BOOL: f"mov BYTE PTR {addr}, {self.r8(s[0])}",
                    DType.U8: f"mov BYTE PTR {addr}, {self.r8(s[0])}"}[i.dtype]
        if p is Prim.FMOV:
            return self.fp_move(i, lambda: f"vxorps {R(d)}, {R(d)}, {R(d)}",
                                lambda: f"vmovss {R(d)}, DWORD PTR {self.const(s[0].value)}[rip]",
                                lambda: f"vmovaps {R(d)}, {R(s[0])}")
        if p is Prim.IMOV:
            if isinstance(s[0], Imm):
                return f"mov {R(d)}, {int(s[0].value)}"
            if isinstance(s[0], Addr):
                return f"lea {R(d)}, [{self.args[s[0].buf]}+{s[0].offset}]"
            if i.mnemonic == "movzx":
                return f"movzx {self.r32(d)}, {self.r8(s[0])}"
            return f"mov {R(d)}, {R(s[0])}"
        simple = {Prim.FADD: "vaddss", Prim.FSUB: "vsubss", Prim.FMUL: "vmulss", Prim.FDIV: "vdivss",
                  Prim.FMAX: "vmaxss", Prim.FMIN: "vminss", Prim.FABS: "vandps", Prim.FNEG: "vxorps"}
        if p in simple:
            return f"{simple[p]} {R(d)}, {R(s[0])}, {R(s[1])}"
        if p is Prim.FSQRT:
            return f"vsqrtss {R(d)}, {R(s[0])}, {R(s[0])}"
        if p is Prim.FROUND:
            if i.mnemonic == "vrndscaless":  # AVX-512's form reaches xmm16-31
                return f"vrndscaless {R(d)}, {R(s[0])}, {R(s[0])}, 8"
            return f"vroundss {R(d)}, {R(s[0])}, {R(s[0])}, 8"  # to nearest even, exceptions suppressed
        if p in (Prim.FMA, Prim.FNMA):
            op = "vfmadd" if p is Prim.FMA else "vfnmadd"
            a, b, c = s
            if d == c:
                return f"{op}231ss {R(d)}, {R(a)}, {R(b)}"
            if d in (a, b):
                other = b if d == a else a
                return f"{op}213ss {R(d)}, {R(other)}, {R(c)}"
            raise EmitError(f"{self.p.name}: {i} has no register tied to its destination")
        if p is Prim.CVT_F2I:
            return f"vcvttss2si {R(d)}, {R(s[0])}"
        if p is Prim.CVT_I2F:
            if len(s) < 2 or d != s[1]:
                raise EmitError(f"{self.p.name}: vcvtsi2ss must merge into its zeroed destination")
            return f"vcvtsi2ss {R(d)}, {R(d)}, {R(s[0])}"
        if p is Prim.BITS_I2F:
            return f"vmovd {R(d)}, {self.r32(s[0])}"
        if p in (Prim.FCMP_LT, Prim.FCMP_NE):
            return f"vcmp{'lt' if p is Prim.FCMP_LT else 'neq'}ss {R(d)}, {R(s[0])}, {R(s[1])}"
        if p in _X86_CC:
            self.last_compare = p
            return f"cmp {R(s[0])}, {R(s[1])}"
        if p is Prim.SELECT:
            if d.file is RegFile.FP:
                return f"vblendvps {R(d)}, {R(s[2])}, {R(s[1])}, {R(s[0])}"
            if d != s[2]:
                raise EmitError(f"{self.p.name}: cmov needs its false value in the destination")
            return f"cmov{_X86_CC[self.last_compare]} {R(d)}, {R(s[1])}"
        if p is Prim.SETCC:
            if s[0] != FLAGS:
                raise EmitError(f"{self.p.name}: setcc of a float compare is not supported on x86-64")
            return f"set{_X86_CC[self.last_compare]} {self.r8(d)}"
        alu = {Prim.IADD: "add", Prim.ISUB: "sub", Prim.IAND: "and", Prim.ISHL: "shl", Prim.IMUL: "imul",
               Prim.DEC_FLAGS: "sub"}
        if p in alu:
            src = str(int(s[1].value)) if isinstance(s[1], Imm) else R(s[1])
            if p is Prim.IMUL and isinstance(s[1], Imm):
                return f"imul {R(d)}, {R(s[0])}, {src}"
            if d != s[0]:
                raise EmitError(f"{self.p.name}: {i} is not in two-address form")
            return f"{alu[p]} {R(d)}, {src}"
        raise EmitError(f"{self.p.name}: no x86-64 encoding for {i}")


class A64Emitter(_Emitter):
    # '#' at the start of a line: a comment for GNU as, and the marker syntax llvm-mca recognises ('//' is not)
    word = ".word"

    def header(self) -> list[str]:
        # the dot product (sdot) and BF16 (bfdot, bfcvtn) extensions are optional from Armv8.2-A: GNU as
        # accepts them only when told
        ext = "".join(f"+{e}" for e, prims in (("dotprod", (Prim.SDOT4,)), ("bf16", (Prim.BFDOT, Prim.CVT_BF16)))
                      if any(_uses(self.p.body, p) for p in prims))
        arch = [f".arch armv8.2-a{ext}"] if ext else []
        return arch + [".text", ".p2align 2", f".globl {self.sym}", f".type {self.sym}, %function", f"{self.sym}:"]

    def footer(self, pool: list[str]) -> list[str]:
        return [".ltorg", ".p2align 2"] + pool + [f".size {self.sym}, .-{self.sym}",
                                                  ".section .note.GNU-stack,\"\",%progbits"]

    def glue(self, saved: list[str]) -> tuple[list[str], list[str]]:
        gp = [r for r in saved if r.startswith("x")]
        fp = ["d" + r[1:] for r in saved if not r.startswith("x")]
        # stp/ldp pair registers of one file only: x with x, d with d
        pairs = [gp[i:i + 2] for i in range(0, len(gp), 2)] + [fp[i:i + 2] for i in range(0, len(fp), 2)]
        # AAPCS64 keeps sp 16-byte aligned; an odd register out is saved alone in a 16-byte slot
        head = [f"    stp {p[0]}, {p[1]}, [sp, #-16]!" if len(p) == 2 else f"    str {p[0]}, [sp, #-16]!"
                for p in pairs]
        tail = [f"    ldp {p[0]}, {p[1]}, [sp], #16" if len(p) == 2 else f"    ldr {p[0]}, [sp], #16"
                for p in reversed(pairs)]
        return head, tail + ["    ret"]

    def branch(self, label: str) -> str:
        return f"b.ne {label}"

    def x(self, r: Reg) -> str:
        return self.reg(r)

    def mem(self, m: Mem) -> str:
        return f"[{self.reg(m.base)}{', #' + str(m.disp) if m.disp else ''}]"

    def w(self, r: Reg) -> str:
        return "w" + self.reg(r)[1:]

    def sreg(self, r: Reg) -> str:
        return "s" + self.reg(r)[1:]

    def opnd(self, o) -> str:
        if isinstance(o, Imm):
            return f"#{int(o.value)}"
        return self.sreg(o) if o.file is RegFile.FP else self.x(o)

    def instr(self, i: Instr) -> str:  # noqa: C901 - one case per primitive
        if emit_vector.is_vector(i):
            return emit_vector.a64(self, i)
        p, d, s = i.prim, i.dst, i.srcs
        S, X = self.sreg, self.x
        if p is Prim.LOAD:
            u = emit_vector.a64_unscaled(s[0].disp, i.dtype.itemsize)
            addr = self.mem(s[0])
            return {DType.F32: f"ld{u}r {S(d)}, {addr}", DType.I64: f"ld{u}r {X(d)}, {addr}",
                    DType.BOOL: f"ld{u}rb {self.w(d)}, {addr}", DType.U8: f"ld{u}rb {self.w(d)}, {addr}",
                    DType.I8: f"ld{u}rsb {X(d)}, {addr}", DType.I32: f"ld{u}rsw {X(d)}, {addr}"}[i.dtype]
        if p is Prim.STORE:
            u = emit_vector.a64_unscaled(d.disp, i.dtype.itemsize)
            addr = self.mem(d)
            return {DType.F32: f"st{u}r {S(s[0])}, {addr}", DType.I64: f"st{u}r {X(s[0])}, {addr}",
                    DType.BOOL: f"st{u}rb {self.w(s[0])}, {addr}", DType.U8: f"st{u}rb {self.w(s[0])}, {addr}"}[i.dtype]
        if p is Prim.FMOV:
            return self.fp_move(i, lambda: f"fmov {S(d)}, wzr", lambda: f"ldr {S(d)}, {self.const(s[0].value)}",
                                lambda: f"fmov {S(d)}, {S(s[0])}")
        if p is Prim.IMOV:
            if isinstance(s[0], Imm):
                v = int(s[0].value)
                if i.mnemonic == "ldr_x":  # from the literal pool GNU as places at .ltorg
                    return f"ldr {X(d)}, ={v}"
                if not self.t.mov_imm_fits(v):
                    raise EmitError(f"{self.p.name}: immediate {v} needs more than one mov")
                return f"mov {X(d)}, #{v}"
            if isinstance(s[0], Addr):
                if not self.t.imm_fits(s[0].offset):  # (GNU as encodes a multiple of 4096 with lsl #12)
                    raise EmitError(f"{self.p.name}: buffer offset {s[0].offset} exceeds add's immediate")
                return f"add {X(d)}, {self.args[s[0].buf]}, #{s[0].offset}"
            return f"mov {X(d)}, {X(s[0])}"
        three = {Prim.FADD: "fadd", Prim.FSUB: "fsub", Prim.FMUL: "fmul", Prim.FDIV: "fdiv", Prim.FMAX: "fmax",
                 Prim.FMIN: "fmin", Prim.IADD: "add", Prim.ISUB: "sub", Prim.IAND: "and", Prim.IMUL: "mul",
                 Prim.ISHL: "lsl"}
        if p in (Prim.IADD, Prim.ISUB) and isinstance(s[1], Imm) and s[1].value < 0:  # add #-n is sub #n
            flip = "sub" if p is Prim.IADD else "add"
            return f"{flip} {X(d)}, {X(s[0])}, #{-int(s[1].value)}"
        if p in three:
            return f"{three[p]} {self.opnd(d)}, {self.opnd(s[0])}, {self.opnd(s[1])}"
        two = {Prim.FSQRT: "fsqrt", Prim.FROUND: "frintn", Prim.FABS: "fabs", Prim.FNEG: "fneg"}
        if p in two:
            return f"{two[p]} {S(d)}, {S(s[0])}"
        if p in (Prim.FMA, Prim.FNMA):
            return f"{'fmadd' if p is Prim.FMA else 'fmsub'} {S(d)}, {S(s[0])}, {S(s[1])}, {S(s[2])}"
        if p is Prim.CVT_F2I:
            return f"fcvtzs {X(d)}, {S(s[0])}"
        if p is Prim.CVT_I2F:
            return f"scvtf {S(d)}, {X(s[0])}"
        if p is Prim.BITS_I2F:
            return f"fmov {S(d)}, {self.w(s[0])}"
        if p in _A64_CC:
            self.last_compare = p
            return f"{'fcmp' if p in (Prim.FCMP_LT, Prim.FCMP_NE) else 'cmp'} {self.opnd(s[0])}, {self.opnd(s[1])}"
        if p is Prim.SELECT:
            op = "fcsel" if d.file is RegFile.FP else "csel"
            return f"{op} {self.opnd(d)}, {self.opnd(s[1])}, {self.opnd(s[2])}, {_A64_CC[self.last_compare]}"
        if p is Prim.SETCC:
            return f"cset {X(d)}, {_A64_CC[self.last_compare]}"
        if p is Prim.DEC_FLAGS:
            return f"subs {X(d)}, {X(s[0])}, #{int(s[1].value)}"
        raise EmitError(f"{self.p.name}: no AArch64 encoding for {i}")


def _uses(items, prim: Prim) -> bool:
    return any(_uses(it.body, prim) if isinstance(it, Loop) else it.prim is prim for it in items)


def _emitter_for(program: Program, target: Target) -> _Emitter:
    return (X86Emitter if target.isa == "x86-64" else A64Emitter)(program, target)


def instruction_lines(program: Program, target: Target, body: list[Instr]) -> list[str]:
    """Each instruction as the emitter writes it (registers named, real syntax), a branch to `.Lloop`."""
    emitter = _emitter_for(program, target)
    emitter.sym = "loop"
    return [emitter.branch(".Lloop") if ins.prim is Prim.BRANCH_NZ else emitter.instr(ins) for ins in body]


def emit(program: Program, target: Target) -> str:
    """The program as an assembly file for GNU as; the function's symbol is symbol(program.name)."""
    return _emitter_for(program, target).text()
