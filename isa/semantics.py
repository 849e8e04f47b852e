"""What each primitive operation computes, once, for every target.

Instruction selection maps a `Prim` to a target mnemonic (`vfmadd231ss`, `fmadd`, ...); the executors run
the semantics below on numpy arrays, one lane per element of the batch, so a batched run and a stepped run
of the same instruction give the same bits. Floating-point values are float32; integer values are int64
(a 64-bit general-purpose register); predicates are bool.
"""

from __future__ import annotations

from enum import Enum

import numpy as np

from isasim.isa import fastfma

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
}

# Whether a primitive's result lives in the floating-point file (True), the integer file (False) or is a
# predicate (None).
RESULT_IS_FP = {
    **{p: True for p in (Prim.FADD, Prim.FSUB, Prim.FMUL, Prim.FDIV, Prim.FSQRT, Prim.FMAX, Prim.FMIN,
                         Prim.FMA, Prim.FNMA, Prim.FROUND, Prim.FABS, Prim.FNEG, Prim.FMOV, Prim.CVT_I2F,
                         Prim.BITS_I2F, Prim.LOAD_BCAST, Prim.BCAST, Prim.EXTRACT_HI, Prim.FADDP,
                         Prim.FMAXP, Prim.CVT_F2I32, Prim.IADD32, Prim.ISHL32, Prim.SHFL_XOR)},
    **{p: False for p in (Prim.CVT_F2I, Prim.SETCC, Prim.IADD, Prim.ISUB, Prim.IMUL, Prim.ISHL, Prim.IAND,
                          Prim.IMOV, Prim.SREG, Prim.IDIV, Prim.IREM)},
    **{p: None for p in (Prim.FCMP_LT, Prim.FCMP_NE, Prim.ICMP_NE, Prim.ICMP_GE, Prim.ICMP_LT, Prim.PAND)},
}
