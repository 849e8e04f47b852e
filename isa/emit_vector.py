"""Assembly text for SIMD instructions: AVX2 / AVX-512 (GNU as, Intel syntax) and AArch64 NEON.

An instruction's width is `Instr.lanes`; a source register with more lanes is named at that width (ymm3
read as xmm3), as the hardware reads the low lanes. Opmask predication prints as `{k1}` (merging) and
`{k1}{z}` (zeroing loads).
"""

from __future__ import annotations

from isasim.isa.dtype import DType
from isasim.isa.program import Instr, Reg, RegFile
from isasim.isa.semantics import Prim

_X86_WIDTH = {1: "xmm", 2: "xmm", 4: "xmm", 8: "ymm", 16: "zmm"}
_X86_PTR = {4: "XMMWORD", 8: "YMMWORD", 16: "ZMMWORD"}
_X86_OPS = {Prim.FADD: "vaddps", Prim.FSUB: "vsubps", Prim.FMUL: "vmulps", Prim.FDIV: "vdivps",
            Prim.FMAX: "vmaxps", Prim.FMIN: "vminps", Prim.FABS: "vandps", Prim.FNEG: "vxorps",
            Prim.IADD32: "vpaddd"}
_A64_OPS = {Prim.FADD: "fadd", Prim.FSUB: "fsub", Prim.FMUL: "fmul", Prim.FDIV: "fdiv", Prim.FMAX: "fmax",
            Prim.FMIN: "fmin", Prim.IADD32: "add"}
_A64_UNARY = {Prim.FSQRT: "fsqrt", Prim.FROUND: "frintn", Prim.FABS: "fabs", Prim.FNEG: "fneg",
              Prim.CVT_F2I32: "fcvtzs", Prim.CVT_I32F: "scvtf"}
_X86_INT8 = {Prim.MADDUBS: "vpmaddubsw", Prim.MADDWD: "vpmaddwd",  # unsigned bytes first, then signed
             Prim.PACKUSDW: "vpackusdw", Prim.PACKUSWB: "vpackuswb"}


def is_vector(ins: Instr) -> bool:
    regs = [o for o in (ins.dst,) + ins.srcs if isinstance(o, Reg)]
    return (ins.lanes > 1 or ins.mask is not None or any(r.lanes > 1 or r.file is RegFile.MASK for r in regs)
            or ins.prim in (Prim.EXTRACT_HI, Prim.FADDP, Prim.FMAXP))


def x86(em, i: Instr) -> str:  # noqa: C901 - one case per primitive, as an ISA manual lists them
    p, d, s, w = i.prim, i.dst, i.srcs, i.lanes

    def R(r: Reg, lanes: int | None = None) -> str:
        if r.file is RegFile.MASK:
            return em.t.registers.mask[r.n]
        if r.file is RegFile.GP:
            return em.reg(r)
        return _X86_WIDTH[min(r.lanes, w) if lanes is None else lanes] + em.reg(r)[3:]

    k = f"{{{R(i.mask)}}}" if i.mask is not None else ""

    mem = em.mem
    if p is Prim.LOAD:
        return f"vmovups {R(d)}{k}{'{z}' if k else ''}, {_X86_PTR[w]} PTR {mem(s[0])}"
    if p is Prim.LOAD_BCAST:
        return f"vbroadcastss {R(d)}, DWORD PTR {mem(s[0])}"
    if p is Prim.STORE:
        if i.dtype is DType.U8:  # each 32-bit lane's low byte
            return f"vpmovdb {_X86_PTR[w // 4]} PTR {mem(d)}{k}, {R(s[0])}"
        if i.dtype is DType.BF16:  # vcvtneps2bf16 packed the lanes' bf16 into half the register
            return f"vmovups {_X86_PTR[w // 2]} PTR {mem(d)}, {R(s[0], w // 2)}"
        if w == 2:
            return f"vmovq QWORD PTR {mem(d)}, {R(s[0], 4)}"
        return f"vmovups {_X86_PTR[w]} PTR {mem(d)}{k}, {R(s[0])}"
    if p is Prim.FMOV:
        return em.fp_move(i, lambda: f"vxorps {R(d)}, {R(d)}, {R(d)}",
                          lambda: f"vbroadcastss {R(d)}, DWORD PTR {em.const(s[0].value)}[rip]",
                          lambda: f"vmovaps {R(d)}, {R(s[0])}")
    if p is Prim.BCAST:
        return f"vbroadcastss {R(d)}, {R(s[0], 1)}"
    if p is Prim.MASK_BITS:
        return f"kmovw {R(d)}, {em.r32(s[0])}"
    if p is Prim.EXTRACT_HI:
        src = R(s[0], 2 * w if w > 1 else 2)
        if w == 8:
            return f"vextractf64x4 {R(d)}, {src}, 1"
        if w == 4:
            return f"{i.mnemonic.split('_')[0]} {R(d)}, {src}, 1"
        if w == 2:
            return f"vmovhlps {R(d)}, {src}, {src}"
        return f"vmovshdup {R(d, 1)}, {src}"
    if p in _X86_OPS:
        op = _X86_OPS[p] if w > 1 else _X86_OPS[p][:-2] + "ss"
        if p in (Prim.FABS, Prim.FNEG):
            op = _X86_OPS[p]
        return f"{op} {R(d)}{k}, {R(s[0])}, {R(s[1])}"
    if p is Prim.FSQRT:
        return f"vsqrtps {R(d)}, {R(s[0])}"
    if p is Prim.FROUND:
        if w == 1:
            return f"vrndscaless {R(d)}, {R(s[0])}, {R(s[0])}, 8"
        return f"{i.mnemonic.split('_')[0]} {R(d)}, {R(s[0])}, 8"  # to nearest even, exceptions suppressed
    if p in (Prim.FMA, Prim.FNMA):
        op = "vfmadd" if p is Prim.FMA else "vfnmadd"
        kind = "ps" if w > 1 else "ss"
        a, b, c = s
        if d == c:
            return f"{op}231{kind} {R(d)}{k}, {R(a)}, {R(b)}"
        if d in (a, b) and not k:
            return f"{op}213{kind} {R(d)}, {R(b if d == a else a)}, {R(c)}"
        raise em.error(f"{i} has no register tied to its destination")
    if p is Prim.CVT_F2I32:
        return f"vcvttps2dq {R(d)}, {R(s[0])}"
    if p is Prim.CVT_I32F:
        return f"vcvtdq2ps {R(d)}, {R(s[0])}"
    if p is Prim.PERMQ:
        return f"vpermq {R(d)}, {R(s[0])}, {int(s[1].value)}"
    if p in _X86_INT8:
        return f"{_X86_INT8[p]} {R(d)}, {R(s[0])}, {R(s[1])}"
    if p is Prim.DOT4:
        if d != s[2]:
            raise em.error(f"{i}: vpdpbusd accumulates into its destination")
        vex = "{vex} " if w == 8 else ""  # AVX-VNNI's encoding of the ymm form (the EVEX one needs AVX-512)
        return f"{vex}vpdpbusd {R(d)}, {R(s[0])}, {R(s[1])}"
    if p is Prim.DPBF16:
        if d != s[2]:
            raise em.error(f"{i}: vdpbf16ps accumulates into its destination")
        return f"vdpbf16ps {R(d)}, {R(s[0])}, {R(s[1])}"
    if p is Prim.CVT_BF16:  # 16 float lanes to 16 bf16 in a ymm (8 to an xmm)
        return f"vcvtneps2bf16 {R(d, w // 2)}, {R(s[0])}"
    if p is Prim.ISHL32:
        return f"vpslld {R(d)}, {R(s[0])}, {int(s[1].value)}"
    if p in (Prim.FCMP_LT, Prim.FCMP_NE):
        cc = "lt" if p is Prim.FCMP_LT else "neq"
        return f"vcmp{cc}{'ps' if w > 1 else 'ss'} {R(d)}, {R(s[0])}, {R(s[1])}"
    if p is Prim.SELECT:
        if s[0].file is RegFile.MASK:  # k ? a : b
            return f"vblendmps {R(d)}{{{R(s[0])}}}, {R(s[2])}, {R(s[1])}"
        return f"vblendvps {R(d)}, {R(s[2])}, {R(s[1])}, {R(s[0])}"
    raise em.error(f"no x86-64 SIMD encoding for {i}")


def a64_unscaled(disp: int, nbytes: int) -> str:
    """'u' when a displacement needs the unscaled form (ldur/stur: signed 9-bit bytes), else ''."""
    return "u" if disp < 0 or disp % nbytes else ""


def a64(em, i: Instr) -> str:  # noqa: C901 - one case per primitive
    p, d, s, w = i.prim, i.dst, i.srcs, i.lanes

    def n(r: Reg) -> str:
        return em.reg(r)[1:]

    def V(r: Reg, lanes: int | None = None) -> str:
        lanes = min(r.lanes, w) if lanes is None else lanes
        return f"s{n(r)}" if lanes == 1 else f"v{n(r)}.{lanes}s"

    mem = em.mem
    if p is Prim.LOAD:
        return f"ld{a64_unscaled(s[0].disp, 16)}r q{n(d)}, {mem(s[0])}"
    if p is Prim.LOAD_BCAST:
        if s[0].disp:
            raise em.error(f"ld1r takes no offset: {i}")
        return f"ld1r {{v{n(d)}.4s}}, {mem(s[0])}"
    if p is Prim.STORE:
        if i.dtype is DType.BF16:  # bfcvtn left four bf16 in the low 64 bits
            return f"st{a64_unscaled(d.disp, 8)}r d{n(s[0])}, {mem(d)}"
        if w == 1:  # the low 32 bits
            return f"st{a64_unscaled(d.disp, 4)}r s{n(s[0])}, {mem(d)}"
        return f"st{a64_unscaled(d.disp, 16)}r q{n(s[0])}, {mem(d)}"
    if p is Prim.XTN:
        wide, narrow = ("4s", "4h") if int(s[1].value) == 32 else ("8h", "8b")
        return f"xtn v{n(d)}.{narrow}, v{n(s[0])}.{wide}"
    if p is Prim.FMOV:
        return em.fp_move(i, lambda: f"movi v{n(d)}.2d, #0", lambda: f"ldr q{n(d)}, {em.const_vector(s[0].value)}",
                          lambda: f"mov v{n(d)}.16b, v{n(s[0])}.16b")
    if p is Prim.BCAST:
        return f"dup v{n(d)}.4s, v{n(s[0])}.s[0]"
    if p in (Prim.FADDP, Prim.FMAXP):
        op = "faddp" if p is Prim.FADDP else "fmaxp"
        if w == 1:
            return f"{op} s{n(d)}, v{n(s[0])}.2s"
        return f"{op} {V(d, 4)}, {V(s[0], 4)}, {V(s[0], 4)}"
    if p in _A64_OPS:
        return f"{_A64_OPS[p]} {V(d)}, {V(s[0])}, {V(s[1])}"
    if p in _A64_UNARY:
        return f"{_A64_UNARY[p]} {V(d)}, {V(s[0])}"
    if p in (Prim.FMA, Prim.FNMA):
        if d != s[2]:
            raise em.error(f"{i}: fmla accumulates into its destination")
        return f"{'fmla' if p is Prim.FMA else 'fmls'} {V(d)}, {V(s[0])}, {V(s[1])}"
    if p is Prim.ISHL32:
        return f"shl {V(d)}, {V(s[0])}, #{int(s[1].value)}"
    if p is Prim.SDOT4:
        if d != s[2]:
            raise em.error(f"{i}: sdot accumulates into its destination")
        return f"sdot {V(d)}, v{n(s[0])}.16b, v{n(s[1])}.16b"
    if p is Prim.BFDOT:
        if d != s[2]:
            raise em.error(f"{i}: bfdot accumulates into its destination")
        return f"bfdot {V(d)}, v{n(s[0])}.8h, v{n(s[1])}.8h"
    if p is Prim.CVT_BF16:
        return f"bfcvtn v{n(d)}.4h, v{n(s[0])}.4s"
    if p is Prim.FCMP_LT:  # a < b is b > a
        return f"fcmgt {V(d)}, {V(s[1])}, {V(s[0])}"
    if p is Prim.SELECT:
        if d != s[0]:
            raise em.error(f"{i}: bsl overwrites its mask")
        return f"bsl v{n(d)}.16b, v{n(s[1])}.16b, v{n(s[2])}.16b"
    raise em.error(f"no AArch64 SIMD encoding for {i}")
