"""Targets: an instruction set's mnemonics for each primitive, and the capabilities instruction selection asks.

Timing is not here: it lives in the microarchitecture descriptions (isa/uarch/*.toml), keyed by these
mnemonics, so one target runs against several cores.
"""

from __future__ import annotations

from dataclasses import dataclass
from types import MappingProxyType
from typing import Callable, Mapping

from isasim.isa.semantics import Prim
from isasim.models.errors import UserError
from isasim.models.graph import DType


def _x86_imm(v: int) -> bool:
    return -(2**31) <= v < 2**31  # a sign-extended imm32


def _a64_add_imm(v: int) -> bool:
    """add/sub take a 12-bit unsigned immediate, optionally shifted left by 12 (sub covers negatives)."""
    v = abs(v)
    return v < 4096 or (v % 4096 == 0 and v >> 12 < 4096)


@dataclass(frozen=True)
class Registers:
    """The register files register allocation may use, and the calling convention's argument registers."""

    gp: tuple[str, ...]  # allocatable general-purpose registers, caller-saved first
    fp: tuple[str, ...]
    args: tuple[str, ...]  # the kernel's buffer base addresses arrive here, in buffer order
    callee_saved: frozenset[str]  # used ones are saved and restored by the function's entry and exit glue
    two_address: bool  # integer ALU ops and FMA overwrite one of their sources (x86)
    fp_compare_to_flags: bool  # a float compare sets the flags (AArch64 fcmp) rather than a mask register


@dataclass(frozen=True)
class Target:
    name: str
    isa: str  # "x86-64" | "aarch64"
    default_uarch: str
    description: str
    mnemonics: Mapping[Prim, str]  # register forms
    loads: Mapping[DType, str]
    stores: Mapping[DType, str]
    fp_int_select: Mapping[bool, str]  # SELECT on the FP file (True) or the GP file (False)
    fp_zero: str  # how a register is set to 0.0 (a zero idiom)
    fp_const: str  # how a float constant is materialised (a load from the constant pool)
    pointer_init: str
    registers: Registers
    imm_forms: frozenset  # integer prims whose second operand may be an immediate
    imm_fits: Callable[[int], bool]  # whether an add/sub immediate is encodable
    setcc_zero_extend: str | None  # x86 setcc writes a byte: a movzx widens it
    fp_sign_masks: bool  # fabs and fneg are bitwise and / xor with a mask constant (x86)
    cvt_merges: bool  # int->float conversion merges into its destination (x86): zero it first, as compilers
    #                   do, or each conversion waits for the last write of that register
    has_fma: bool = True
    vector_lanes: int = 1


_X86_SCALAR = {
    Prim.FADD: "vaddss", Prim.FSUB: "vsubss", Prim.FMUL: "vmulss", Prim.FDIV: "vdivss",
    Prim.FSQRT: "vsqrtss", Prim.FMAX: "vmaxss", Prim.FMIN: "vminss", Prim.FMA: "vfmadd231ss",
    Prim.FNMA: "vfnmadd231ss", Prim.FROUND: "vroundss", Prim.FABS: "vandps", Prim.FNEG: "vxorps",
    Prim.CVT_F2I: "vcvttss2si", Prim.CVT_I2F: "vcvtsi2ss", Prim.BITS_I2F: "vmovd_to_xmm",
    Prim.FCMP_LT: "vcmpss", Prim.FCMP_NE: "vcmpss", Prim.ICMP_NE: "cmp", Prim.ICMP_GE: "cmp",
    Prim.SETCC: "setcc", Prim.IADD: "add", Prim.ISUB: "sub", Prim.IMUL: "imul", Prim.ISHL: "shl",
    Prim.IAND: "and", Prim.IMOV: "mov_imm", Prim.DEC_FLAGS: "sub", Prim.BRANCH_NZ: "jcc",
}

_A64_SCALAR = {
    Prim.FADD: "fadd", Prim.FSUB: "fsub", Prim.FMUL: "fmul", Prim.FDIV: "fdiv", Prim.FSQRT: "fsqrt",
    Prim.FMAX: "fmax", Prim.FMIN: "fmin", Prim.FMA: "fmadd", Prim.FNMA: "fmsub", Prim.FROUND: "frintn",
    Prim.FABS: "fabs", Prim.FNEG: "fneg", Prim.CVT_F2I: "fcvtzs", Prim.CVT_I2F: "scvtf",
    Prim.BITS_I2F: "fmov_to_fp", Prim.FCMP_LT: "fcmp", Prim.FCMP_NE: "fcmp", Prim.ICMP_NE: "cmp",
    Prim.ICMP_GE: "cmp", Prim.SETCC: "cset", Prim.IADD: "add", Prim.ISUB: "sub", Prim.IMUL: "mul",
    Prim.ISHL: "lsl", Prim.IAND: "and", Prim.IMOV: "mov_imm", Prim.DEC_FLAGS: "subs",
    Prim.BRANCH_NZ: "b_cond",
}

TARGETS: Mapping[str, Target] = MappingProxyType({
    "x86-64": Target(
        name="x86-64", isa="x86-64", default_uarch="skylake-x",
        description="scalar x86-64 with AVX-encoded scalar SSE and FMA3 (vaddss, vfmadd231ss, ...)",
        mnemonics=MappingProxyType(_X86_SCALAR),
        loads=MappingProxyType({DType.F32: "vmovss_load", DType.I64: "mov_load64", DType.BOOL: "movzx_load8"}),
        stores=MappingProxyType({DType.F32: "vmovss_store", DType.I64: "mov_store64", DType.BOOL: "mov_store8"}),
        fp_int_select=MappingProxyType({True: "vblendvps", False: "cmovcc"}),
        fp_zero="vxorps", fp_const="vmovss_load", pointer_init="lea",
        registers=Registers(
            gp=("rax", "rcx", "rdx", "rsi", "rdi", "r8", "r9", "r10", "r11", "rbx", "rbp", "r12", "r13", "r14",
                "r15"),
            fp=tuple(f"xmm{i}" for i in range(16)),
            args=("rdi", "rsi", "rdx", "rcx", "r8", "r9"),  # System V AMD64 ABI
            callee_saved=frozenset({"rbx", "rbp", "r12", "r13", "r14", "r15"}),
            two_address=True, fp_compare_to_flags=False),
        imm_forms=frozenset({Prim.IADD, Prim.ISUB, Prim.IAND, Prim.ISHL, Prim.IMUL}), imm_fits=_x86_imm,
        setcc_zero_extend="movzx", fp_sign_masks=True, cvt_merges=True,
    ),
    "aarch64": Target(
        name="aarch64", isa="aarch64", default_uarch="neoverse-n1",
        description="scalar AArch64 (ldr s, fmadd, ...)",
        mnemonics=MappingProxyType(_A64_SCALAR),
        loads=MappingProxyType({DType.F32: "ldr_s", DType.I64: "ldr_x", DType.BOOL: "ldrb"}),
        stores=MappingProxyType({DType.F32: "str_s", DType.I64: "str_x", DType.BOOL: "strb"}),
        fp_int_select=MappingProxyType({True: "fcsel", False: "csel"}),
        fp_zero="fmov_to_fp", fp_const="ldr_s", pointer_init="add",
        registers=Registers(
            gp=tuple(f"x{i}" for i in range(18)) + tuple(f"x{i}" for i in range(19, 29)),  # x18: platform
            fp=tuple(f"v{i}" for i in range(8)) + tuple(f"v{i}" for i in range(16, 32))
            + tuple(f"v{i}" for i in range(8, 16)),
            args=tuple(f"x{i}" for i in range(8)),  # AAPCS64
            callee_saved=frozenset({f"x{i}" for i in range(19, 29)} | {f"v{i}" for i in range(8, 16)}),
            two_address=False, fp_compare_to_flags=True),
        imm_forms=frozenset({Prim.IADD, Prim.ISUB, Prim.ISHL}), imm_fits=_a64_add_imm,
        setcc_zero_extend=None, fp_sign_masks=False, cvt_merges=False,
    ),
})


def get_target(name: str) -> Target:
    try:
        return TARGETS[name]
    except KeyError:
        raise UserError(f"unknown target '{name}': choose one of {', '.join(TARGETS)}") from None
