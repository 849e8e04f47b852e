"""Transcendental functions as primitive operations: range reduction plus a polynomial.

Each function returns an expression tree, so every target runs the same algorithm with its own instructions
and every instruction is counted. Accuracy (tests/test_ops.py measures it against numpy over each range):
exp ~2 ulp, erf 1.5e-7 absolute (Abramowitz & Stegun 7.1.26), tanh ~1e-7 absolute — well inside the 1e-4
check on BERT's outputs.
"""

from __future__ import annotations

from isasim.isa.semantics import Prim as P
from isasim.lowering.kernel import Const, Expr, op

LOG2E = 1.4426950408889634
# Cody-Waite split of ln 2 and the minimax polynomial for exp(r) - 1 - r on [-ln2/2, ln2/2], from Cephes expf.c
LN2_HI = 0.693359375
LN2_LO = -2.12194440e-4
EXP_POLY = (1.9875691500e-4, 1.3981999507e-3, 8.3334519073e-3, 4.1665795894e-2, 1.6666665459e-1,
            5.0000001201e-1)
EXP_MAX = 88.0  # keeps 2^n a normal float (n <= 127)
EXP_MIN = -87.33654475  # ln(2^-126): the smallest normal result; below it the result is ~0 anyway

# Abramowitz & Stegun 7.1.26: erf(x) = 1 - (a1 t + ... + a5 t^5) exp(-x^2), t = 1 / (1 + p x), |error| <= 1.5e-7
ERF_P = 0.3275911
ERF_A = (1.061405429, -1.453152027, 1.421413741, -0.284496736, 0.254829592)


def c(v: float) -> Const:
    return Const(float(v))


def horner(x: Expr, coeffs: tuple[float, ...]) -> Expr:
    """coeffs[0]*x^(n-1) + ... + coeffs[-1], one FMA per step."""
    acc: Expr = c(coeffs[0])
    for k in coeffs[1:]:
        acc = op(P.FMA, acc, x, c(k))
    return acc


def exp(x: Expr) -> Expr:
    x = op(P.FMIN, op(P.FMAX, x, c(EXP_MIN)), c(EXP_MAX))
    n = op(P.FROUND, op(P.FMUL, x, c(LOG2E)))
    r = op(P.FNMA, n, c(LN2_HI), x)  # x - n*ln2, in two steps so r keeps its low bits
    r = op(P.FNMA, n, c(LN2_LO), r)
    r2 = op(P.FMUL, r, r)
    y = op(P.FMA, horner(r, EXP_POLY), r2, r)  # r + r^2 * p(r)
    y = op(P.FADD, y, c(1.0))
    two_n = op(P.BITS_I2F, op(P.ISHL, op(P.IADD, op(P.CVT_F2I, n), Const(127, fp=False)), Const(23, fp=False)))
    return op(P.FMUL, y, two_n)


def erf(x: Expr) -> Expr:
    a = op(P.FABS, x)
    t = op(P.FDIV, c(1.0), op(P.FMA, a, c(ERF_P), c(1.0)))
    poly = op(P.FMUL, horner(t, ERF_A), t)
    e = exp(op(P.FNEG, op(P.FMUL, a, a)))
    y = op(P.FNMA, poly, e, c(1.0))  # 1 - poly * exp(-a^2)
    return op(P.SELECT, op(P.FCMP_LT, x, c(0.0)), op(P.FNEG, y), y)


def gelu(x: Expr) -> Expr:
    """torch.nn.functional.gelu (approximate='none'): x * 0.5 * (1 + erf(x / sqrt 2))."""
    return op(P.FMUL, op(P.FMUL, x, c(0.5)), op(P.FADD, c(1.0), erf(op(P.FMUL, x, c(0.7071067811865476)))))


def tanh(x: Expr) -> Expr:
    """tanh(x) = 1 - 2 / (exp(2x) + 1); exp's clamp makes the ends exactly -1 and 1."""
    e = exp(op(P.FADD, x, x))
    return op(P.FSUB, c(1.0), op(P.FDIV, c(2.0), op(P.FADD, e, c(1.0))))


def rsqrt(x: Expr) -> Expr:
    """1 / sqrt(x) with the ISA's square root and divide (exact to rounding, as torch's layer norm needs)."""
    return op(P.FDIV, c(1.0), op(P.FSQRT, x))


LOG_ROOTS = 6  # square roots taken before the series: x^(1/64) lies within 0.81..1.24 for x in [1e-6, 1e6]


def log(x: Expr) -> Expr:
    """ln x for x > 0, without reading the float's exponent bits (no ISA here moves float bits to an integer
    register): ln x = 64 ln(x^(1/64)), and for y = x^(1/64) near 1, ln y = 2 atanh z with z = (y-1)/(y+1),
    atanh z = z (1 + z^2/3 + z^4/5 + ... + z^12/13). Absolute error below 1e-5 for x in [1e-6, 1e6] (6.7e-6 at
    worst in a float32 emulation over 200,001 points: each root's rounding is multiplied by 64); log-softmax
    only takes the log of sums in [1, row length]."""
    y = x
    for _ in range(LOG_ROOTS):
        y = op(P.FSQRT, y)
    z = op(P.FDIV, op(P.FSUB, y, c(1.0)), op(P.FADD, y, c(1.0)))
    series = horner(op(P.FMUL, z, z), tuple(1.0 / k for k in (13, 11, 9, 7, 5, 3, 1)))
    return op(P.FMUL, op(P.FMUL, z, series), c(2.0 * 2 ** LOG_ROOTS))
