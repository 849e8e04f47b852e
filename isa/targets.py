"""Targets: an instruction set's mnemonics for each primitive, and the capabilities instruction selection asks.

Timing is not here: it lives in the microarchitecture descriptions (isa/uarch/*.toml) and the GPU descriptions
(isa/gpu/*.toml), keyed by these mnemonics, so one target runs against several machines. Which backend lowers a
target (backends/) follows from its capabilities: `simt` (threads in warps), `vector` (SIMD registers), or
neither (a scalar register machine).
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from types import MappingProxyType
from typing import Callable, Mapping

from isasim.isa.semantics import Prim
from isasim.isa.errors import UserError
from isasim.isa.hardware import Unit
from isasim.isa.dtype import DType


def _x86_imm(v: int) -> bool:
    return -(2**31) <= v < 2**31  # a sign-extended imm32


def _a64_add_imm(v: int) -> bool:
    """add/sub take a 12-bit unsigned immediate, optionally shifted left by 12 (sub covers negatives)."""
    v = abs(v)
    return v < 4096 or (v % 4096 == 0 and v >> 12 < 4096)


def _x86_imm64(v: int) -> bool:
    return -(2**63) <= v < 2**63  # mov r64, imm64


def _x86_disp(disp: int, nbytes: int) -> bool:
    return _x86_imm(disp)


def a64_mov_encodes(v: int) -> bool:
    """mov is movz or movn of one 16-bit chunk at a 16-bit shift (bitmask immediates are not used)."""
    return any(sum(1 for sh in range(0, 64, 16) if (u >> sh) & 0xFFFF) <= 1
               for u in (v & (2**64 - 1), ~v & (2**64 - 1)))


def _a64_disp(disp: int, nbytes: int) -> bool:
    """ldr/str take an unsigned 12-bit offset scaled by the access size; ldur/stur a signed 9-bit byte one."""
    return (0 <= disp and disp % nbytes == 0 and disp // nbytes < 4096) or -256 <= disp < 256


@dataclass(frozen=True)
class Registers:
    """The register files register allocation may use, and the calling convention's argument registers."""

    gp: tuple[str, ...]  # allocatable general-purpose registers, caller-saved first
    fp: tuple[str, ...]
    args: tuple[str, ...]  # the kernel's buffer base addresses arrive here, in buffer order
    callee_saved: frozenset[str]  # used ones are saved and restored by the function's entry and exit glue
    two_address: bool  # integer ALU ops and FMA overwrite one of their sources (x86)
    fp_compare_to_flags: bool  # a float compare sets the flags (AArch64 fcmp) rather than a mask register
    mask: tuple[str, ...] = ()  # AVX-512 opmask registers (k0 means "no mask" in encodings, so k1-k7)
    abi: str = ""  # the calling convention `args` follows


@dataclass(frozen=True)
class VectorISA:
    """A SIMD extension: how wide its registers are and the timing key of each vector instruction.

    Lane-wise operations are keyed by base name plus the width they run at (`vaddps_ymm`, `fadd_4s`), as
    horizontal reductions run them on narrower registers too; the other fields are full keys at the
    register's full width. Instruction selection asks these capabilities, never the target's name.
    """

    lanes: int  # float32 lanes in one register
    suffix: Mapping[int, str]  # lane count -> width name in timing keys
    ops: Mapping[Prim, str]  # lane-wise primitives -> base name
    load: str
    store: str
    load_bcast: str  # one element from memory into every lane
    bcast: str  # lane 0 of a register into every lane
    fp_const: str  # a constant in every lane (from the constant pool)
    fp_zero: str
    move: str
    select: str
    extract_hi: Mapping[int, str]  # result lanes -> the instruction that takes the upper half (x86)
    pairwise: Mapping[tuple[Prim, int], str]  # (FADDP/FMAXP, result lanes) -> key (AArch64 faddp, fmaxp)
    masked_tails: bool  # opmask registers predicate the last, partial vector (AVX-512)
    compare_to_mask: bool  # vector compares write an opmask register rather than a vector of all-ones lanes
    select_overwrites_mask: bool  # the blend writes over its mask operand (AArch64 bsl)
    # GEMM cache blocking: bytes of B one panel may hold (see _PANEL_BYTES)
    panel_bytes: int
    mask_from_gp: str | None = None  # kmovw
    bcast_takes_offset: bool = True  # a broadcast load addresses [base + displacement] (not AArch64 ld1r)
    fp_registers: tuple[str, ...] | None = None  # a larger register file than the scalar one (zmm0-31)
    # int8 dot products of four unsigned by four signed bytes per 32-bit lane (lowering/isel_gemm_int8.py):
    # "vnni" one vpdpbusd; "maddubs" vpmaddubsw + vpmaddwd (by ones) + vpaddd, as fbgemm does on AVX2 (its
    # int16 pair sums cannot saturate on 7-bit activations); "sdot" AArch64's sdot (signed by signed, which
    # equals unsigned by signed on 7-bit activations)
    int8_dot: str | None = None
    # a better int8_dot where the core has an extension (AVX2 on a core with AVX-VNNI: "vnni", {vex} vpdpbusd)
    int8_dot_on: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}))
    # how int32 lanes are stored as bytes (the quantize op): "vpmovdb" narrows as it stores (AVX-512);
    # "packus" vpackusdw + vpermq + vpackuswb, then vmovq (AVX2); "xtn" two xtn, then str s (NEON)
    byte_store: str | None = None
    # bf16 dot products of the two bf16 in each 32-bit lane, accumulated in float32 (lowering/isel_gemm_bf16.py):
    # "vdpbf16ps" (AVX512-BF16, with vcvtneps2bf16) or "bfdot" (Arm BF16, with bfcvtn); None: no bf16
    bf16_dot: str | None = None
    # the int8 and bf16 GEMMs run on AMX tiles (lowering/isel_gemm_amx.py); bf16_dot is then "tdpbf16ps"
    tiles: bool = False

    def key(self, base: str, lanes: int) -> str:
        return f"{base}_{self.suffix[lanes]}"


@dataclass(frozen=True)
class SimtISA:
    """A SIMT instruction set: a thread's instruction stream, run by warps of `warp_size` threads in lockstep."""

    warp_size: int  # PTX's WARP_SZ: 32 on every NVIDIA GPU (PTX ISA 8.0, sec. 10.3 "Special Registers")


@dataclass(frozen=True)
class Target:
    name: str
    isa: str  # "x86-64" | "aarch64" | "ptx"
    default_uarch: str
    description: str
    mnemonics: Mapping[Prim, str]  # register forms
    loads: Mapping[DType, str]
    stores: Mapping[DType, str]
    fp_int_select: Mapping[bool, str]  # SELECT on the FP file (True) or the GP file (False)
    fp_zero: str  # how a register is set to 0.0 (a zero idiom)
    fp_const: str  # how a float constant is materialised (a load from the constant pool)
    pointer_init: str
    fp_move: str  # a register-to-register copy: what register allocation inserts, and drops when it is a no-op
    gp_move: str
    registers: Registers
    imm_forms: frozenset  # integer prims whose second operand may be an immediate
    imm_fits: Callable[[int], bool]  # whether an add/sub immediate is encodable
    setcc_zero_extend: str | None  # x86 setcc writes a byte: a movzx widens it
    fp_sign_masks: bool  # fabs and fneg are bitwise and / xor with a mask constant (x86)
    cvt_merges: bool  # int->float conversion merges into its destination (x86): zero it first, as compilers
    #                   do, or each conversion waits for the last write of that register
    disp_fits: Callable[[int, int], bool] = _x86_disp  # (displacement, access bytes): encodable in a load
    mov_imm_fits: Callable[[int], bool] = _x86_imm64  # one mov makes it (else: a literal-pool load)
    vector: VectorISA | None = None
    simt: SimtISA | None = None
    host_features: tuple[str, ...] = ()  # /proc/cpuinfo flags a host needs to run this target's code natively
    # what int8 inference adds to host_features (the dot-product extension); None: no int8 on this target
    int8_features: tuple[str, ...] | None = ()
    # what bf16 inference adds (the bf16 instructions); None: no bf16 on this target (no bf16 instruction)
    bf16_features: tuple[str, ...] | None = None
    fp32: bool = True  # False: a target for int8 and bf16 only (amx: its tiles multiply no float32)
    fp16_features: tuple[str, ...] | None = None  # fp16 on tensor cores (models/fp16.py): the GPU target's

    def features(self, precision: str = "fp32", core: tuple[str, ...] = ()) -> tuple[str, ...]:
        """The extensions a core needs to run this target's code in `precision` (see int8_features); given the
        extensions of the core the code was made for (`core`), also those its int8 instructions use."""
        if precision == "fp32" and not self.fp32:
            raise UserError(f"target {self.name} multiplies int8 and bf16 on its tiles, not float32: add "
                            f"--precision int8 or --precision bf16 (float32 runs on avx512)")
        if precision == "bf16":
            if self.bf16_features is None:
                raise UserError(f"target {self.name} has no bf16 instructions: choose avx512 (AVX512-BF16), "
                                f"neon (Arm BF16), amx or simt (tensor cores) for --precision bf16")
            return self.host_features + self.bf16_features
        if precision == "fp16":
            if self.fp16_features is None:
                raise UserError(f"target {self.name} has no fp16 lowering: --precision fp16 runs on the GPU's "
                                f"tensor cores, --target simt")
            return self.host_features + self.fp16_features
        if precision == "int8":
            if self.int8_features is None:
                raise UserError(f"target {self.name} has no int8 lowering yet: choose x86-64, aarch64, avx2, avx512, "
                                f"neon, amx or simt for --precision int8")
            extra = tuple(f for f in (self.vector.int8_dot_on if self.vector else {}) if f in core)
            return self.host_features + self.int8_features + extra
        return self.host_features

    def int8_dot(self, core: tuple[str, ...] = ()) -> str | None:
        """How this target's int8 GEMMs multiply on a core with extensions `core` (VectorISA.int8_dot)."""
        vec = self.vector
        if vec is None:
            return None
        return next((how for f, how in vec.int8_dot_on.items() if f in core), vec.int8_dot)

    @property
    def vector_lanes(self) -> int:
        return self.vector.lanes if self.vector else 1

    @property
    def fma(self) -> str:
        """The timing key of the widest FMA: what the peak FLOP rate is made of."""
        if self.vector:
            return self.vector.key(self.vector.ops[Prim.FMA], self.vector.lanes)
        return self.mnemonics[Prim.FMA]

    def peak_unit(self, dtype: DType = DType.F32, core: tuple[str, ...] = ()) -> Unit:
        """The instruction the peak rate of `dtype` arithmetic is made of: the widest FMA, per vector lane (CPU)
        or per thread (SIMT); for int8 (DType.I8) the dot-product instruction on a core with extensions
        `core`, four multiply-adds per 32-bit lane; for bf16 (DType.BF16) the bf16 dot product, two per lane;
        for fp16, bf16 and int8 on the GPU, the tensor cores' mma, per thread of the warp.
        A machine's `peak_ops_per_cycle` gives its rate."""
        if self.vector is not None and self.vector.tiles and dtype in (DType.I8, DType.BF16):
            # a 16-row tile multiply every 16 cycles: 16 x 16 x 64 int8 or 16 x 16 x 32 bf16 multiply-adds
            return Unit("tdpbusd", 256, ops=128) if dtype is DType.I8 else Unit("tdpbf16ps", 256, ops=64)
        if self.simt is not None and dtype in (DType.F16, DType.BF16, DType.I8):
            # a warp's 16x8x16 mma: 4096 operations; 16x8x32 in int8: 8192
            prim = {DType.F16: Prim.MMA_F16, DType.BF16: Prim.MMA_BF16, DType.I8: Prim.MMA_S8}[dtype]
            k = 32 if dtype is DType.I8 else 16
            return Unit(self.mnemonics[prim], ops=2 * 16 * 8 * k // self.simt.warp_size)
        if dtype is DType.I8 and self.int8_features is not None:
            vec = self.vector
            if vec is None:  # a multiply (and an add) per byte pair
                return Unit(self.mnemonics[Prim.IMUL])
            how = self.int8_dot(core)
            if how == "maddubs":  # vpmaddubsw and then vpmaddwd, on the same ports, per four pairs: half the rate
                return Unit(vec.key(vec.ops[Prim.MADDUBS], vec.lanes), vec.lanes, ops=4)
            prim = Prim.DOT4 if how == "vnni" else Prim.SDOT4
            return Unit(vec.key(vec.ops[prim], vec.lanes), vec.lanes, ops=8)
        if dtype is DType.BF16 and self.vector is not None and self.vector.bf16_dot is not None:
            prim = Prim.BFDOT if self.vector.bf16_dot == "bfdot" else Prim.DPBF16
            return Unit(self.vector.key(self.vector.ops[prim], self.vector.lanes), self.vector.lanes, ops=4)
        if dtype is not DType.F32:
            raise UserError(f"{self.name} models {DType.F32.value} arithmetic only, not {dtype.value}")
        return Unit(self.fma, self.vector_lanes)


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
        loads=MappingProxyType({DType.F32: "vmovss_load", DType.I64: "mov_load64", DType.BOOL: "movzx_load8",
                                DType.U8: "movzx_load8", DType.I8: "movsx_load8", DType.I32: "movsxd_load32"}),
        stores=MappingProxyType({DType.F32: "vmovss_store", DType.I64: "mov_store64", DType.BOOL: "mov_store8",
                                 DType.U8: "mov_store8"}),
        fp_int_select=MappingProxyType({True: "vblendvps", False: "cmovcc"}),
        fp_zero="vxorps", fp_const="vmovss_load", pointer_init="lea", fp_move="vmovaps", gp_move="mov",
        registers=Registers(
            gp=("rax", "rcx", "rdx", "rsi", "rdi", "r8", "r9", "r10", "r11", "rbx", "rbp", "r12", "r13", "r14",
                "r15"),
            fp=tuple(f"xmm{i}" for i in range(16)),
            args=("rdi", "rsi", "rdx", "rcx", "r8", "r9"),
            callee_saved=frozenset({"rbx", "rbp", "r12", "r13", "r14", "r15"}),
            two_address=True, fp_compare_to_flags=False, abi="System V AMD64"),
        imm_forms=frozenset({Prim.IADD, Prim.ISUB, Prim.IAND, Prim.ISHL, Prim.IMUL}), imm_fits=_x86_imm,
        setcc_zero_extend="movzx", fp_sign_masks=True, cvt_merges=True,
    ),
    "aarch64": Target(
        name="aarch64", isa="aarch64", default_uarch="neoverse-n1",
        description="scalar AArch64 (ldr s, fmadd, ...)",
        mnemonics=MappingProxyType(_A64_SCALAR),
        loads=MappingProxyType({DType.F32: "ldr_s", DType.I64: "ldr_x", DType.BOOL: "ldrb", DType.U8: "ldrb",
                                DType.I8: "ldrsb", DType.I32: "ldrsw"}),
        stores=MappingProxyType({DType.F32: "str_s", DType.I64: "str_x", DType.BOOL: "strb", DType.U8: "strb"}),
        fp_int_select=MappingProxyType({True: "fcsel", False: "csel"}),
        fp_zero="fmov_to_fp", fp_const="ldr_s", pointer_init="add", fp_move="fmov", gp_move="mov",
        registers=Registers(
            gp=tuple(f"x{i}" for i in range(18)) + tuple(f"x{i}" for i in range(19, 29)),  # x18: platform
            fp=tuple(f"v{i}" for i in range(8)) + tuple(f"v{i}" for i in range(16, 32))
            + tuple(f"v{i}" for i in range(8, 16)),
            args=tuple(f"x{i}" for i in range(8)),
            callee_saved=frozenset({f"x{i}" for i in range(19, 29)} | {f"v{i}" for i in range(8, 16)}),
            two_address=False, fp_compare_to_flags=True, abi="AAPCS64"),
        imm_forms=frozenset({Prim.IADD, Prim.ISUB, Prim.ISHL}), imm_fits=_a64_add_imm,
        setcc_zero_extend=None, fp_sign_masks=False, cvt_merges=False, disp_fits=_a64_disp,
        mov_imm_fits=a64_mov_encodes,
    ),
})


_X86_VECTOR_OPS = {
    Prim.FADD: "vaddps", Prim.FSUB: "vsubps", Prim.FMUL: "vmulps", Prim.FDIV: "vdivps", Prim.FSQRT: "vsqrtps",
    Prim.FMAX: "vmaxps", Prim.FMIN: "vminps", Prim.FMA: "vfmadd231ps", Prim.FNMA: "vfnmadd231ps",
    Prim.FABS: "vandps", Prim.FNEG: "vxorps", Prim.CVT_F2I32: "vcvttps2dq", Prim.IADD32: "vpaddd",
    Prim.ISHL32: "vpslld", Prim.FCMP_LT: "vcmpps", Prim.DOT4: "vpdpbusd", Prim.MADDUBS: "vpmaddubsw",
    Prim.MADDWD: "vpmaddwd", Prim.CVT_I32F: "vcvtdq2ps", Prim.PACKUSDW: "vpackusdw", Prim.PACKUSWB: "vpackuswb",
    Prim.PERMQ: "vpermq", Prim.DPBF16: "vdpbf16ps", Prim.CVT_BF16: "vcvtneps2bf16",
}
_X86_WIDTHS = MappingProxyType({2: "xmm", 4: "xmm", 8: "ymm", 16: "zmm"})


# GEMM cache blocking: the bytes of B one panel may hold, a quarter of the smallest L2 of the cores modelled
# (1 MB on Skylake-X, Zen 4, Neoverse N1/V1; isa/uarch/*.toml), leaving room for A's rows and C (BLIS sizes its
# NC loop the same way: Van Zee and van de Geijn, "BLIS", ACM TOMS 2015, sec. 3)
_PANEL_BYTES = 256 * 1024


def _x86_vector(lanes: int, rnd: str, select: str, **kw) -> VectorISA:
    w = _X86_WIDTHS[lanes]
    return VectorISA(
        lanes=lanes, suffix=_X86_WIDTHS, ops=MappingProxyType({**_X86_VECTOR_OPS, Prim.FROUND: rnd}),
        load=f"vmovups_load_{w}", store=f"vmovups_store_{w}", load_bcast=f"vbroadcastss_load_{w}",
        bcast=f"vbroadcastss_{w}", fp_const=f"vbroadcastss_load_{w}", fp_zero=f"vxorps_{w}",
        move=f"vmovaps_{w}", select=f"{select}_{w}", pairwise=MappingProxyType({}), panel_bytes=_PANEL_BYTES, **kw)


_AVX2 = _x86_vector(
    8, "vroundps", "vblendvps",
    extract_hi=MappingProxyType({4: "vextractf128_ymm", 2: "vmovhlps_xmm", 1: "vmovshdup_xmm"}),
    masked_tails=False, compare_to_mask=False, select_overwrites_mask=False, int8_dot="maddubs",
    int8_dot_on=MappingProxyType({"avx_vnni": "vnni"}), byte_store="packus")

# EVEX encodings reach zmm16-31; the legacy-VEX-only scalar forms (vcmpss into an xmm, vblendvps, vroundss)
# are replaced by their AVX-512 equivalents so any register can be used.
_AVX512 = _x86_vector(
    16, "vrndscaleps", "vblendmps",
    extract_hi=MappingProxyType({8: "vextractf64x4_zmm", 4: "vextractf32x4_ymm", 2: "vmovhlps_xmm",
                                 1: "vmovshdup_xmm"}),
    masked_tails=True, compare_to_mask=True, select_overwrites_mask=False, mask_from_gp="kmovw",
    fp_registers=tuple(f"xmm{i}" for i in range(32)), int8_dot="vnni", byte_store="vpmovdb",
    bf16_dot="vdpbf16ps")

_NEON = VectorISA(
    lanes=4, suffix=MappingProxyType({4: "4s"}),
    ops=MappingProxyType({
        Prim.FADD: "fadd", Prim.FSUB: "fsub", Prim.FMUL: "fmul", Prim.FDIV: "fdiv", Prim.FSQRT: "fsqrt",
        Prim.FMAX: "fmax", Prim.FMIN: "fmin", Prim.FMA: "fmla", Prim.FNMA: "fmls", Prim.FABS: "fabs",
        Prim.FNEG: "fneg", Prim.FROUND: "frintn", Prim.CVT_F2I32: "fcvtzs", Prim.IADD32: "add",
        Prim.ISHL32: "shl", Prim.FCMP_LT: "fcmgt", Prim.SDOT4: "sdot", Prim.CVT_I32F: "scvtf",
        Prim.BFDOT: "bfdot", Prim.CVT_BF16: "bfcvtn"}),
    load="ldr_q", store="str_q", load_bcast="ld1r_4s", bcast="dup_4s", fp_const="ldr_q", fp_zero="movi_zero",
    move="mov_16b", select="bsl_16b", extract_hi=MappingProxyType({}),
    pairwise=MappingProxyType({(Prim.FADDP, 2): "faddp_4s", (Prim.FADDP, 1): "faddp_s",
                               (Prim.FMAXP, 2): "fmaxp_4s", (Prim.FMAXP, 1): "fmaxp_s"}),
    masked_tails=False, compare_to_mask=False, select_overwrites_mask=True, bcast_takes_offset=False,
    panel_bytes=_PANEL_BYTES, int8_dot="sdot", byte_store="xtn", bf16_dot="bfdot")

_x86 = TARGETS["x86-64"]
_avx512_scalar = {**_X86_SCALAR, Prim.FCMP_LT: "vcmpss_k", Prim.FCMP_NE: "vcmpss_k", Prim.FROUND: "vrndscaless"}
TARGETS = MappingProxyType({
    **TARGETS,
    "avx2": replace(_x86, name="avx2", description="x86-64 with AVX2 and FMA3: 8 float lanes in ymm registers",
                    vector=_AVX2, host_features=("avx2", "fma")),
    "avx512": replace(
        _x86, name="avx512", mnemonics=MappingProxyType(_avx512_scalar),
        fp_int_select=MappingProxyType({True: "vblendmps_xmm", False: "cmovcc"}),
        description="x86-64 with AVX-512 (F, VL, DQ): 16 float lanes in zmm0-31, opmask tails",
        vector=_AVX512, host_features=("avx512f", "avx512vl", "avx512dq"), int8_features=("avx512_vnni",),
        bf16_features=("avx512_bf16",),
        registers=replace(_x86.registers, fp=_AVX512.fp_registers, mask=tuple(f"k{i}" for i in range(1, 8)))),
    "neon": replace(TARGETS["aarch64"], name="neon", default_uarch="neoverse-n1",
                    description="AArch64 Advanced SIMD (NEON): 4 float lanes in v registers, scalar tails",
                    vector=_NEON, int8_features=("asimddp",), bf16_features=("bf16",)),
})


# AMX (Sapphire Rapids): the int8 and bf16 GEMMs on tiles, everything else on AVX-512
_AMX = replace(_AVX512, tiles=True, bf16_dot="tdpbf16ps")
TARGETS = MappingProxyType({
    **TARGETS,
    "amx": replace(TARGETS["avx512"], name="amx", default_uarch="sapphirerapids", vector=_AMX, fp32=False,
                   description="x86-64 with AMX: int8 and bf16 GEMMs on 8 tiles of 16 x 64 bytes (tdpbusd, "
                   "tdpbf16ps), the rest on AVX-512; --precision int8 or bf16 only",
                   host_features=TARGETS["avx512"].host_features + ("amx_tile",),
                   int8_features=("avx512_vnni", "amx_int8"), bf16_features=("avx512_bf16", "amx_bf16")),
})


def get_target(name: str) -> Target:
    try:
        return TARGETS[name]
    except KeyError:
        raise UserError(f"unknown target '{name}': choose one of {', '.join(TARGETS)}") from None


# ---- GPU SIMT: PTX, one thread's instruction stream --------------------------------------------------------
# General-purpose values are 64-bit (.s64/.u64 registers) as on the CPU targets; registers are PTX's virtual
# ones, allocated by ptxas, so isasim does not allocate them (it estimates the count; isa/simt_cost.py).
# NaN behaves as the executors' semantics (numpy): max.NaN/min.NaN return NaN if either operand is one (PTX
# ISA 7.0, sm_80+; plain max.f32 would return the other operand), and a != b is setp.neu (true if
# unordered), while a < b is the ordered setp.lt.
_PTX = {
    Prim.FADD: "add.rn.f32", Prim.FSUB: "sub.rn.f32", Prim.FMUL: "mul.rn.f32", Prim.FDIV: "div.rn.f32",
    Prim.FSQRT: "sqrt.rn.f32", Prim.FMAX: "max.NaN.f32", Prim.FMIN: "min.NaN.f32", Prim.FMA: "fma.rn.f32",
    Prim.FNMA: "fma.rn.f32",  # emitted as fma with a negated operand, which SASS's FFMA folds in
    Prim.FROUND: "cvt.rni.f32.f32", Prim.FABS: "abs.f32", Prim.FNEG: "neg.f32", Prim.FMOV: "mov.f32",
    Prim.CVT_F2I: "cvt.rzi.s64.f32", Prim.CVT_I2F: "cvt.rn.f32.s64", Prim.BITS_I2F: "mov.b32",
    Prim.FCMP_LT: "setp.lt.f32", Prim.FCMP_NE: "setp.neu.f32", Prim.ICMP_NE: "setp.ne.s64",
    Prim.ICMP_GE: "setp.ge.s64", Prim.ICMP_LT: "setp.lt.s64", Prim.PAND: "and.pred", Prim.SETCC: "selp.s64",
    Prim.IADD: "add.s64", Prim.ISUB: "sub.s64", Prim.IMUL: "mul.lo.s64", Prim.ISHL: "shl.b64",
    Prim.IAND: "and.b64", Prim.IMOV: "mov.u64", Prim.IDIV: "div.const", Prim.IREM: "rem.const",
    Prim.DEC_FLAGS: "sub.s64", Prim.BRANCH_NZ: "bra", Prim.EXIT_IF: "bra", Prim.SREG: "mov.u32.sreg",
    Prim.SHFL_XOR: "shfl.sync.bfly.b32", Prim.BARRIER: "bar.sync",
    Prim.LOAD_SHARED: "ld.shared.f32", Prim.STORE_SHARED: "st.shared.f32",
    Prim.CVT_F16X2: "cvt.rn.f16x2.f32", Prim.MMA_F16: "mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32",
    Prim.CVT_H2F: "cvt.f32.f16", Prim.CVT_F2H: "cvt.rn.f16.f32",
    Prim.CP_COMMIT: "cp.async.commit_group", Prim.CP_WAIT: "cp.async.wait_group",
    Prim.CVT_BF16X2: "cvt.rn.bf16x2.f32", Prim.MMA_BF16: "mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32",
    Prim.MMA_S8: "mma.sync.aligned.m16n8k32.row.col.s32.s8.s8.s32",
    Prim.HADD2: "add.rn.f16x2", Prim.HSUB2: "sub.rn.f16x2", Prim.HMUL2: "mul.rn.f16x2", Prim.PRMT: "prmt.b32",
}

GPU_TARGETS: Mapping[str, Target] = MappingProxyType({
    "simt": Target(
        name="simt", isa="ptx", default_uarch="a100",
        description="GPU SIMT in PTX: grids of blocks of 32-thread warps, shared memory, warp shuffles",
        mnemonics=MappingProxyType(_PTX),
        loads=MappingProxyType({DType.F32: "ld.global.f32", DType.I64: "ld.global.s64",
                                DType.BOOL: "ld.global.u8", DType.U8: "ld.global.u8", DType.I8: "ld.global.s8",
                                DType.F16: "ld.global.u16"}),
        stores=MappingProxyType({DType.F32: "st.global.f32", DType.I64: "st.global.s64",
                                 DType.BOOL: "st.global.u8", DType.U8: "st.global.u8", DType.F16: "st.global.u16"}),
        fp_int_select=MappingProxyType({True: "selp.f32", False: "selp.s64"}),
        fp_zero="mov.f32", fp_const="mov.f32", pointer_init="ld.param.u64", fp_move="mov.f32", gp_move="mov.u64",
        registers=Registers(gp=(), fp=(), args=(), callee_saved=frozenset(), two_address=False,
                            fp_compare_to_flags=False),
        imm_forms=frozenset({Prim.IADD, Prim.ISUB, Prim.IMUL, Prim.ISHL, Prim.IAND, Prim.IDIV, Prim.IREM,
                             Prim.ICMP_LT, Prim.ICMP_GE, Prim.ICMP_NE}),
        imm_fits=lambda v: -(2**63) <= v < 2**63, setcc_zero_extend=None, fp_sign_masks=False,
        cvt_merges=False, disp_fits=lambda d, n: -(2**31) <= d < 2**31, simt=SimtISA(warp_size=32),
        int8_features=(), fp16_features=(), bf16_features=()),
})


ALL_TARGETS: Mapping[str, Target] = MappingProxyType({**TARGETS, **GPU_TARGETS})


def get_any_target(name: str) -> Target:
    """A CPU target (TARGETS) or the GPU one (GPU_TARGETS)."""
    try:
        return ALL_TARGETS[name]
    except KeyError:
        raise UserError(f"unknown target '{name}': choose one of {', '.join(ALL_TARGETS)}") from None
