"""What each primitive operation computes, once, for every target.

Instruction selection maps a `Prim` to a target mnemonic (`vfmadd231ss`, `fmadd`, ...); the executors run
the semantics below on numpy arrays, one lane per element of the batch, so a batched run and a stepped run
of the same instruction give the same bits. Floating-point values are float32; integer values are int64
(a 64-bit general-purpose register); predicates are bool.
"""

from __future__ import annotations

from enum import Enum

import numpy as np

from isasim.isa import amx, bfloat16, fastfma, mma

F32 = np.float32
I64 = np.int64


class Prim(Enum):
    # float32 arithmetic (IEEE 754, round to nearest even)
    FADD = "fadd"
    FSUB = "fsub"
    FMUL = "fmul"
    FDIV = "fdiv"
    FSQRT = "fsqrt"
    FMAX = "fmax"
    FMIN = "fmin"
    FMA = "fma"  # a*b + c, rounded once
    FNMA = "fnma"  # -(a*b) + c, rounded once
    FROUND = "fround"  # to the nearest integer, ties to even (roundss imm 0 / frintn)
    FABS = "fabs"
    FNEG = "fneg"
    FMOV = "fmov"  # register copy
    # conversions and bit moves between the integer and floating-point files
    CVT_F2I = "cvt_f2i"  # truncate toward zero (cvttss2si / fcvtzs)
    CVT_I2F = "cvt_i2f"
    BITS_I2F = "bits_i2f"  # low 32 bits of a GP register reinterpreted as float32 (movd / fmov s, w)
    # predicates and selects
    FCMP_LT = "fcmp_lt"  # a < b
    FCMP_NE = "fcmp_ne"  # a != b
    ICMP_NE = "icmp_ne"
    ICMP_GE = "icmp_ge"
    SELECT = "select"  # pred ? a : b, for either register file
    SETCC = "setcc"  # pred -> integer 0/1
    # integer arithmetic (two's complement, 64-bit)
    IADD = "iadd"
    ISUB = "isub"
    IMUL = "imul"
    ISHL = "ishl"
    IAND = "iand"
    IMOV = "imov"  # register copy or immediate
    # memory and control
    LOAD = "load"
    STORE = "store"
    BRANCH_NZ = "branch_nz"  # loop back-edge: taken while the counter is not zero
    DEC_FLAGS = "dec_flags"  # counter -= 1, setting the zero flag (sub/subs)
    # SIMD: lanes of 32 bits in one vector register (the executor gives each lane its own array slot)
    LOAD_BCAST = "load_bcast"  # one float32 from memory into every lane (vbroadcastss m32 / ld1r)
    BCAST = "bcast"  # lane 0 of a register into every lane (vbroadcastss ymm, xmm / dup v.4s, v.s[0])
    EXTRACT_HI = "extract_hi"  # the upper half of the source's lanes (vextractf128 / vmovhlps / vmovshdup)
    FADDP = "faddp"  # pairwise: lane i = src[2i] + src[2i+1] (AArch64 faddp)
    FMAXP = "fmaxp"
    CVT_F2I32 = "cvt_f2i32"  # float lanes to int32 lanes, truncating (vcvttps2dq / fcvtzs .4s)
    IADD32 = "iadd32"  # int32 lane arithmetic on the bits of a vector register (vpaddd / add .4s)
    ISHL32 = "ishl32"
    MASK_BITS = "mask_bits"  # an opmask from the low bits of a general-purpose register (kmovw)
    # int8 dot products on 32-bit lanes that each hold four bytes (models/quantize.py, lowering/isel_gemm_int8.py)
    DOT4 = "dot4"  # acc + sum of 4 unsigned x signed byte products, wrapping (vpdpbusd); in a kernel, the sum
    #                over four consecutive bytes starting at each of its two loads
    SDOT4 = "sdot4"  # acc + sum of 4 signed x signed byte products, wrapping (AArch64 sdot)
    MADDUBS = "maddubs"  # two int16: unsigned x signed byte pairs, summed with signed saturation (vpmaddubsw)
    MADDWD = "maddwd"  # int32: the two int16 halves times the other's, summed (vpmaddwd)
    CVT_I32F = "cvt_i32f"  # int32 lanes to float lanes, rounded to nearest even (vcvtdq2ps / scvtf .4s)
    # narrowing int32 lanes to bytes for a store (the quantize op): AVX2 packs within 128-bit halves, NEON
    # narrows by halves; AVX-512's vpmovdb narrows as it stores (a STORE of dtype U8 from a vector register)
    PACKUSDW = "packusdw"  # per 128 bits: a's then b's int32 as uint16, saturated (vpackusdw)
    PACKUSWB = "packuswb"  # per 128 bits: a's then b's int16 as uint8, saturated (vpackuswb)
    PERMQ = "permq"  # 64-bit lanes picked by the immediate's 2-bit fields (vpermq)
    XTN = "xtn"  # each element's low half, packed into the low 64 bits; the high 64 zeroed (AArch64 xtn);
    #              the immediate is the source element's bits, 32 or 16
    # bf16 (models/bf16.py, lowering/isel_gemm_bf16.py; bit for bit as isa/bfloat16.py defines them)
    CVT_BF16 = "cvt_bf16"  # float lanes rounded to bfloat16, nearest even (vcvtneps2bf16 / bfcvtn); in the
    #                        executor each lane keeps its bf16 as a float32 with a zero low half, and a STORE of
    #                        dtype BF16 narrows it. The immediate is 1 where denormal inputs flush (Intel)
    DPBF16 = "dpbf16"  # acc + the dot product of the bf16 pairs in each 32-bit lane (Intel vdpbf16ps); in a
    #                    kernel, over two consecutive elements starting at each of its two loads
    BFDOT = "bfdot"  # the same, rounded as Arm's bfdot does (round to odd)
    # AMX tiles (lowering/isel_gemm_amx.py): a tile register's value is its rows x dwords, row-major, in one
    # trailing axis; the immediates give the shapes the tile configuration sets (isa/amx.py has the semantics)
    TILE_CONFIG = "tile_config"  # ldtilecfg: the 64-byte configuration (an immediate tuple of bytes)
    TILE_RELEASE = "tile_release"  # tilerelease: the tiles back to their initial state
    TILE_LOAD = "tile_load"  # tileloadd tmm, [base + stride]: srcs (Mem, stride register, Imm rows, Imm dwords)
    TILE_STORE = "tile_store"  # tilestored [base + stride], tmm: dst Mem, srcs (tile, stride register, Imm rows)
    TILE_ZERO = "tile_zero"  # tilezero: srcs (Imm rows, Imm dwords)
    TDPBUSD = "tdpbusd"  # C[m, n] += sum over k of A[m, k] (4 unsigned bytes) . B[k, n] (4 signed bytes);
    #                      srcs (a, b, c, Imm rows, Imm k dwords)
    TDPBF16PS = "tdpbf16ps"  # the same on bf16 pairs into float32 (Intel SDM's order and rounding)
    # fp16 on a GPU's tensor cores (models/fp16.py, lowering/isel_simt_mma.py; isa/mma.py has the semantics)
    ROUND_F16 = "round_f16"  # a float32 rounded to the nearest fp16 (even on ties), as a float32: what the
    #                          kernel of a linear_fp16 says of each activation it multiplies
    CVT_F16X2 = "cvt_f16x2"  # two float32 (hi, lo) rounded to fp16 and packed into one 32-bit register, lo in
    #                          the low half (cvt.rn.f16x2.f32)
    CVT_H2F = "cvt_h2f"  # an fp16 (its 16 bits in a 32-bit register) to float32, exactly (cvt.f32.f16)
    CVT_F2H = "cvt_f2h"  # a float32 rounded to fp16, nearest even, its 16 bits in a 32-bit register
    #                      (cvt.rn.f16.f32): --precision fp16 stores every activation so (models/fp16.py)
    # paired fp16 arithmetic on .f16x2 registers (lowering/isel_simt_pairs.py): each half computed exactly and
    # rounded to fp16 once (PTX ISA, "Half Precision Floating Point Instructions"; .rn: no fusing into fma)
    HADD2 = "hadd2"  # add.rn.f16x2
    HSUB2 = "hsub2"  # sub.rn.f16x2
    HMUL2 = "hmul2"  # mul.rn.f16x2
    PACK_H2 = "pack_h2"  # in a kernel only: two fp16 elements (lo, hi) as one .f16x2 register; selected as one
    #                      32-bit load (neighbours), a 16-bit load and PRMT (one element twice), or mov.b32
    PRMT = "prmt"  # prmt.b32 d, a, b, c: byte i of d is byte (c >> 4i) & 7 of the eight bytes b:a (PTX ISA,
    #                "prmt", default mode; the sign-replicating selector bit is not used)
    MMA_F16 = "mma_f16"  # a warp's 16x8x16 multiply-accumulate (mma.sync.aligned.m16n8k16 .f32.f16.f16.f32):
    #                      dst the four float32 accumulator registers; srcs the four A, the two B, the four C
    # bf16 on a GPU's tensor cores (models/bf16.py's graph; lowering/isel_simt_mma.py)
    CVT_BF16X2 = "cvt_bf16x2"  # two float32 (hi, lo) rounded to bf16, packed as CVT_F16X2 (cvt.rn.bf16x2.f32)
    MMA_BF16 = "mma_bf16"  # MMA_F16 on bf16 pairs (mma.sync.aligned.m16n8k16 .f32.bf16.bf16.f32)
    MMA_S8 = "mma_s8"  # a warp's 16x8x32 int8 multiply-accumulate into int32 (mma.sync.aligned.m16n8k32 .s32.s8)
    # the tensor-core GEMMs' multistage pipeline (sm_80+; isa/simt_exec.py has the semantics)
    CP_ASYNC = "cp_async"  # cp.async: a thread's 4 or 16 bytes from global to shared memory, landing by the
    #                        cp.async.wait_group that covers its group; dst the shared Mem, srcs (global Mem,)
    CP_COMMIT = "cp_commit"  # cp.async.commit_group: the thread's copies since the last commit form a group
    CP_WAIT = "cp_wait"  # cp.async.wait_group N: wait until at most N of the thread's groups are in flight
    LDMATRIX = "ldmatrix"  # ldmatrix.sync.aligned.m8n8.x4 (.x2) .shared.b16: 4 (2) 8x8 matrices of 16-bit
    #                        elements, each thread naming one 16-byte row; dst the registers, srcs (Mem,)
    LDMATRIX_T = "ldmatrix_t"  # ldmatrix ... .trans: each matrix transposed as it is delivered
    LOAD_SHARED_V = "load_shared_v"  # ld.shared.v2/.v4.f32: a thread's 2 or 4 consecutive words; dst the registers
    # SIMT (GPU) threads: the executor in isa/simt_exec.py gives each thread of the grid its own array slot
    SREG = "sreg"  # a special register: Imm("tid") thread in block, Imm("ctaid") block in grid (mov %tid.x)
    IDIV = "idiv"  # unsigned division by a positive constant (thread-index decomposition)
    IREM = "irem"
    ICMP_LT = "icmp_lt"
    PAND = "pand"  # predicate and (setp.lt.and combines a compare with a predicate)
    SHFL_XOR = "shfl_xor"  # the value of the lane whose id is this lane's xor the immediate (shfl.sync.bfly)
    BARRIER = "barrier"  # every thread of the block waits here (bar.sync)
    EXIT_IF = "exit_if"  # threads whose predicate holds leave the kernel (a divergent branch to its end)
    LOAD_SHARED = "load_shared"  # from the block's shared memory
    STORE_SHARED = "store_shared"


def _f32(x):
    return np.asarray(x, dtype=F32)


def fma_f32(a, b, c):
    """a*b + c rounded once to float32, exactly as a fused multiply-add does: libm's fmaf over the operands
    where a C compiler is found (isa/fastfma.py), else the numpy formulation below, its definition."""
    out = fastfma.fma(a, b, c)
    return fma_f32_numpy(a, b, c) if out is None else out


def fma_f32_numpy(a, b, c):
    """a*b + c rounded once to float32, exactly as a fused multiply-add does.

    The product of two float32 values is exact in float64 (24+24 bits < 53), so only the sum rounds. That
    float64 sum rounded again to float32 is wrong only when it lands exactly halfway between two float32
    values while the float64 rounding discarded something; those rare lanes are redone with round-to-odd,
    which is correct for a second rounding to fewer than 52 bits (Boldo & Melquiond, 2008).
    """
    a64 = np.asarray(a, dtype=np.float64)
    p = a64 * np.asarray(b, dtype=np.float64)
    c64 = np.asarray(c, dtype=np.float64)
    s = p + c64
    low = s.view(np.uint64) & np.uint64(0x1FFFFFFF)
    tie = low == np.uint64(0x10000000)
    if np.any(tie):
        shape = s.shape
        s, tie = np.atleast_1d(s).copy(), np.atleast_1d(tie)
        idx = np.nonzero(tie)
        ps = np.broadcast_to(np.atleast_1d(p), s.shape)[idx]
        cs = np.broadcast_to(np.atleast_1d(c64), s.shape)[idx]
        ss = s[idx]
        bb = ss - ps
        err = (ps - (ss - bb)) + (cs - bb)  # TwoSum: the exact rounding error of ps + cs
        odd = ss.view(np.uint64) & np.uint64(1)
        fix = (err != 0) & (odd == 0)
        ss = np.where(fix, np.nextafter(ss, np.where(err > 0, np.inf, -np.inf)), ss)
        s[idx] = ss
        s = s.reshape(shape)
    return s.astype(F32)


def _round_even(x):
    return np.rint(_f32(x)).astype(F32)


def _cvt_f2i(x):
    with np.errstate(invalid="ignore"):
        return np.trunc(_f32(x)).astype(I64)


def _bits_i2f(x):
    return (np.asarray(x, dtype=I64) & 0xFFFFFFFF).astype(np.uint32).view(F32)


def _fmax(a, b):
    # maxss returns the second operand when either is NaN; BERT has none, and numpy's maximum keeps ordering
    return np.maximum(_f32(a), _f32(b))


def _fmin(a, b):
    return np.minimum(_f32(a), _f32(b))


def _as_i32(x):
    return np.asarray(x, dtype=F32).view(np.int32)


def _cvt_f2i32(x):
    # the float32 array stands for the register's bits: int32 lanes are kept as their float32 bit patterns
    with np.errstate(invalid="ignore"):
        return np.trunc(_f32(x)).astype(np.int32).view(F32)


def _bytes(x, signed: bool) -> np.ndarray:
    """The four bytes of each 32-bit lane (little-endian: byte 0 first), in a new trailing axis of 4."""
    raw = np.array(x, dtype=F32)[..., None].view(np.int8 if signed else np.uint8)
    return raw.astype(I64)


def _lanes32(total) -> np.ndarray:
    """int64 values wrapped to int32 and kept as float32 bit patterns, as a vector register holds them."""
    return np.asarray(total, dtype=I64).astype(np.int32).view(F32)


def _dot4(a, b, acc, signed_a: bool):
    return _lanes32(_as_i32(acc).astype(I64) + (_bytes(a, signed_a) * _bytes(b, True)).sum(-1))


def _maddubs(a, b):
    products = _bytes(a, False) * _bytes(b, True)
    pairs = products.reshape(products.shape[:-1] + (2, 2)).sum(-1)
    halves = np.clip(pairs, -32768, 32767).astype(np.int16)
    return np.array(halves).view(np.int32)[..., 0].view(F32)


def _maddwd(a, b):
    ha = np.array(a, dtype=F32)[..., None].view(np.int16).astype(I64)
    hb = np.array(b, dtype=F32)[..., None].view(np.int16).astype(I64)
    return _lanes32((ha * hb).sum(-1))


def _groups(x, dtype, per: int) -> np.ndarray:
    """A vector register's 32-bit lanes as elements of `dtype`, grouped `per` to 128 bits."""
    raw = np.array(x, dtype=F32).view(dtype)
    return raw.reshape(raw.shape[:-1] + (-1, per))


def _packus(a, b, src, dst, per: int):
    lo, hi = np.iinfo(dst).min, np.iinfo(dst).max
    ga, gb = _groups(a, src, per), _groups(b, src, per)
    packed = np.clip(np.concatenate(np.broadcast_arrays(ga, gb), -1), lo, hi).astype(dst)
    return packed.reshape(packed.shape[:-2] + (-1,)).view(F32)


def _permq(a, imm):
    q = np.array(a, dtype=F32).view(np.int64)
    picked = q[..., [(int(imm) >> (2 * i)) & 3 for i in range(q.shape[-1])]]
    return np.ascontiguousarray(picked).view(F32)


def _xtn(a, bits):
    src, dst = (np.int32, np.int16) if int(bits) == 32 else (np.int16, np.int8)
    x = np.array(a, dtype=F32).view(src)
    low = x.astype(dst)  # two's complement: keeps the low half's bits
    out = np.zeros(x.shape[:-1] + (2 * x.shape[-1],), dtype=dst)
    out[..., :x.shape[-1]] = low
    return out.view(F32)


def _half2(op, a, b) -> np.ndarray:
    """An .f16x2 operation: each half's exact result rounded to fp16 (nearest even), as int64 bits. Computed
    in float32 and rounded once more: float32's 24 bits are at least 2 x 11 + 2, so that second rounding gives
    the correctly rounded fp16 result of an add, subtract or multiply (Figueroa, "When is double rounding
    innocuous?", SIGNUM 1995), which is also what PyTorch's fp16 kernels store (float32 opmath, then round)."""
    def halves(x):
        bits = np.asarray(x, I64) & 0xFFFFFFFF
        return [(bits >> s & 0xFFFF).astype(np.uint16).view(np.float16).astype(F32) for s in (0, 16)]

    lo, hi = (op(x, y).astype(np.float16).view(np.uint16).astype(I64) for x, y in zip(halves(a), halves(b)))
    return (hi << 16) | lo


def _prmt(a, b, c) -> np.ndarray:
    """prmt.b32's default mode: byte i of the result is byte (c >> 4i) & 7 of the 64-bit value b:a."""
    both = (np.asarray(b, I64) & 0xFFFFFFFF) << 32 | (np.asarray(a, I64) & 0xFFFFFFFF)
    sel = int(c)
    assert sel & 0x8888 == 0, "prmt's sign-replicating selectors are not modelled"
    out = np.zeros(np.shape(both), I64)
    for i in range(4):
        out |= ((both >> (8 * ((sel >> 4 * i) & 7))) & 0xFF) << (8 * i)
    return out


def _select(p, a, b):
    return np.where(p, a, b)


# One function per primitive. Loads, stores and control flow need machine state, so executors do those.
SEMANTICS = {
    Prim.FADD: lambda a, b: _f32(a) + _f32(b),
    Prim.FSUB: lambda a, b: _f32(a) - _f32(b),
    Prim.FMUL: lambda a, b: _f32(a) * _f32(b),
    Prim.FDIV: lambda a, b: _f32(a) / _f32(b),
    Prim.FSQRT: lambda a: np.sqrt(_f32(a)),
    Prim.FMAX: _fmax,
    Prim.FMIN: _fmin,
    Prim.FMA: fma_f32,
    Prim.FNMA: lambda a, b, c: fma_f32(-_f32(a), b, c),
    Prim.FROUND: _round_even,
    Prim.FABS: lambda a, *mask: np.abs(_f32(a)),  # x86 passes the sign mask it ands with
    Prim.FNEG: lambda a, *mask: -_f32(a),
    Prim.FMOV: lambda a: _f32(a),
    Prim.CVT_F2I: _cvt_f2i,
    Prim.CVT_I2F: lambda a, *merge: np.asarray(a, dtype=I64).astype(F32),  # x86 names the register it merges into
    Prim.BITS_I2F: _bits_i2f,
    Prim.FCMP_LT: lambda a, b: _f32(a) < _f32(b),
    Prim.FCMP_NE: lambda a, b: _f32(a) != _f32(b),
    Prim.ICMP_NE: lambda a, b: np.asarray(a, dtype=I64) != np.asarray(b, dtype=I64),
    Prim.ICMP_GE: lambda a, b: np.asarray(a, dtype=I64) >= np.asarray(b, dtype=I64),
    Prim.SELECT: _select,
    Prim.SETCC: lambda p: np.asarray(p, dtype=I64),
    Prim.IADD: lambda a, b: np.asarray(a, dtype=I64) + np.asarray(b, dtype=I64),
    Prim.ISUB: lambda a, b: np.asarray(a, dtype=I64) - np.asarray(b, dtype=I64),
    Prim.IMUL: lambda a, b: np.asarray(a, dtype=I64) * np.asarray(b, dtype=I64),
    Prim.ISHL: lambda a, b: np.left_shift(np.asarray(a, dtype=I64), np.asarray(b, dtype=I64)),
    Prim.IAND: lambda a, b: np.asarray(a, dtype=I64) & np.asarray(b, dtype=I64),
    Prim.IMOV: lambda a: np.asarray(a, dtype=I64),
    Prim.CVT_F2I32: _cvt_f2i32,
    Prim.IDIV: lambda a, b: np.asarray(a, dtype=I64) // np.asarray(b, dtype=I64),
    Prim.IREM: lambda a, b: np.asarray(a, dtype=I64) % np.asarray(b, dtype=I64),
    Prim.ICMP_LT: lambda a, b: np.asarray(a, dtype=I64) < np.asarray(b, dtype=I64),
    Prim.PAND: lambda a, b: np.logical_and(a, b),
    Prim.IADD32: lambda a, b: (_as_i32(a) + _as_i32(b)).view(F32),
    Prim.ISHL32: lambda a, b: np.left_shift(_as_i32(a), np.int32(b)).view(F32),
    Prim.DOT4: lambda a, b, acc: _dot4(a, b, acc, signed_a=False),
    Prim.SDOT4: lambda a, b, acc: _dot4(a, b, acc, signed_a=True),
    Prim.MADDUBS: _maddubs,
    Prim.MADDWD: _maddwd,
    Prim.CVT_I32F: lambda a: _as_i32(a).astype(F32),
    Prim.PACKUSDW: lambda a, b: _packus(a, b, np.int32, np.uint16, 4),
    Prim.PACKUSWB: lambda a, b: _packus(a, b, np.int16, np.uint8, 8),
    Prim.PERMQ: _permq,
    Prim.XTN: _xtn,
    Prim.CVT_BF16: lambda a, flush: bfloat16.from_bf16(bfloat16.to_bf16(a, bool(flush))),
    Prim.DPBF16: lambda a, b, acc: bfloat16.vdpbf16ps(acc, a, b, fma_f32),
    Prim.BFDOT: lambda a, b, acc: bfloat16.bfdot(acc, a, b),
    Prim.TILE_ZERO: lambda rows, dwords: np.zeros(int(rows) * int(dwords), F32),
    Prim.TDPBUSD: lambda a, b, c, rows, kd: amx.tdpbusd(a, b, c, int(rows), int(kd)),
    Prim.TDPBF16PS: lambda a, b, c, rows, kd: amx.tdpbf16ps(a, b, c, int(rows), int(kd), fma_f32),
    Prim.ROUND_F16: lambda a: _f32(a).astype(np.float16).astype(F32),
    Prim.CVT_F16X2: mma.pack_f16x2,
    Prim.CVT_BF16X2: mma.pack_bf16x2,
    Prim.CVT_H2F: lambda h: (np.asarray(h, I64) & 0xFFFF).astype(np.uint16).view(np.float16).astype(F32),
    Prim.CVT_F2H: lambda a: _f32(a).astype(np.float16).view(np.uint16).astype(I64),
    Prim.HADD2: lambda a, b: _half2(np.add, a, b),
    Prim.HSUB2: lambda a, b: _half2(np.subtract, a, b),
    Prim.HMUL2: lambda a, b: _half2(np.multiply, a, b),
    Prim.PRMT: lambda a, b, c: _prmt(a, b, c),
}

# Whether a primitive's result lives in the floating-point file (True), the integer file (False) or is a
# predicate (None).
RESULT_IS_FP = {
    **{p: True for p in (Prim.FADD, Prim.FSUB, Prim.FMUL, Prim.FDIV, Prim.FSQRT, Prim.FMAX, Prim.FMIN,
                         Prim.FMA, Prim.FNMA, Prim.FROUND, Prim.FABS, Prim.FNEG, Prim.FMOV, Prim.CVT_I2F,
                         Prim.BITS_I2F, Prim.LOAD_BCAST, Prim.BCAST, Prim.EXTRACT_HI, Prim.FADDP,
                         Prim.FMAXP, Prim.CVT_F2I32, Prim.IADD32, Prim.ISHL32, Prim.SHFL_XOR, Prim.DOT4,
                         Prim.SDOT4, Prim.MADDUBS, Prim.MADDWD, Prim.CVT_I32F, Prim.PACKUSDW, Prim.PACKUSWB,
                         Prim.PERMQ, Prim.XTN, Prim.CVT_BF16, Prim.DPBF16, Prim.BFDOT, Prim.TILE_LOAD,
                         Prim.TILE_ZERO, Prim.TDPBUSD, Prim.TDPBF16PS, Prim.ROUND_F16, Prim.MMA_F16,
                         Prim.MMA_BF16, Prim.CVT_H2F)},
    **{p: False for p in (Prim.CVT_F2I, Prim.SETCC, Prim.IADD, Prim.ISUB, Prim.IMUL, Prim.ISHL, Prim.IAND,
                          Prim.IMOV, Prim.SREG, Prim.IDIV, Prim.IREM, Prim.CVT_F16X2, Prim.CVT_F2H,
                          Prim.CVT_BF16X2, Prim.MMA_S8, Prim.HADD2, Prim.HSUB2, Prim.HMUL2, Prim.PACK_H2,
                          Prim.PRMT)},  # (a .f16x2 register holds bits, not a float32)
    **{p: None for p in (Prim.FCMP_LT, Prim.FCMP_NE, Prim.ICMP_NE, Prim.ICMP_GE, Prim.ICMP_LT, Prim.PAND)},
}
