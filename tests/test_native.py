"""Hand-written kernels proving isasim.isa.native runs real x86-64 and AArch64 code."""

import re
from fractions import Fraction

import numpy as np
import pytest

from isasim.isa import native
from isasim.isa.native import host_supports, run_aarch64, run_x86_64

ON_X86 = native.host_isa() == "x86-64"


_X86_MISSING = native.missing_tools("x86-64")
_A64_MISSING = native.missing_tools("aarch64")
needs_x86 = pytest.mark.skipif(_X86_MISSING is not None, reason=f"x86-64 runner unavailable: {_X86_MISSING}")
needs_a64 = pytest.mark.skipif(_A64_MISSING is not None,
                               reason=f"aarch64 runner unavailable ({_A64_MISSING}); run .ci/install-tools")
needs_fma = pytest.mark.skipif(not host_supports("x86-64", ("fma",)), reason="host CPU lacks FMA")


@pytest.fixture(autouse=True)
def _private_cache(tmp_path_factory, monkeypatch):
    # one cache per test session (shared by tests), never the user's
    d = tmp_path_factory.getbasetemp() / "native-cache"
    monkeypatch.setenv("ISASIM_NATIVE_CACHE", str(d))


N = 37
RNG = np.random.default_rng(1234)


def _f32(n):
    return (RNG.standard_normal(n) * 10).astype(np.float32)


def round_f32(x: Fraction) -> np.float32:
    """Correctly round an exact rational to float32 (nearest, ties to even)."""
    if x == 0:
        return np.float32(0.0)
    sign = -1 if x < 0 else 1
    x = abs(x)
    e = x.numerator.bit_length() - x.denominator.bit_length()
    if Fraction(2) ** e > x:
        e -= 1
    assert Fraction(2) ** e <= x < Fraction(2) ** (e + 1)
    ulp = Fraction(2) ** (max(e, -126) - 23)
    q = x / ulp
    n, rem = divmod(q.numerator, q.denominator)
    rem = Fraction(rem, q.denominator)
    if rem > Fraction(1, 2) or (rem == Fraction(1, 2) and n % 2 == 1):
        n += 1
    return np.float32(sign * float(n * ulp))


def fma_reference(a, b, c):
    return np.array([round_f32(Fraction(float(x)) * Fraction(float(y)) + Fraction(float(z)))
                     for x, y, z in zip(a, b, c)], dtype=np.float32)


# a*b = 1 + 2^-22 + 2^-46 exactly; c cancels all but 2^-46: fused gives 2^-46, unfused gives 0
FMA_SPECIAL = (np.float32(1 + 2**-23), np.float32(1 + 2**-23), np.float32(-(1 + 2**-22)))


def _fma_inputs():
    a, b, c = _f32(N), _f32(N), _f32(N)
    a[0], b[0], c[0] = FMA_SPECIAL
    a[1], b[1], c[1] = np.float32(3.0), np.float32(1 / 3), np.float32(-1.0)   # residual of 1/3 rounding
    return a, b, c


# ----------------------------------------------------------------- x86-64

def x86_loop(name: str, args: str, body: str) -> str:
    """An x86-64 function `name` that runs `body` for element rax = 0 .. N-1."""
    return f"""
    .intel_syntax noprefix
    .text
    .globl {name}
    .type {name}, @function
{name}:                        # {args}
    xor eax, eax
1:
{body}
    inc rax
    cmp rax, {N}
    jne 1b
    ret
    .size {name}, .-{name}
"""


X86_ADD = x86_loop("add_f32", "rdi=a, rsi=b, rdx=out", """\
    vmovss xmm0, dword ptr [rdi + rax*4]
    vaddss xmm0, xmm0, dword ptr [rsi + rax*4]
    vmovss dword ptr [rdx + rax*4], xmm0""")

X86_FMA = x86_loop("fma_f32", "out = a*b + c; rdi=a, rsi=b, rdx=c, rcx=out", """\
    vmovss xmm0, dword ptr [rdx + rax*4]
    vmovss xmm1, dword ptr [rdi + rax*4]
    vfmadd231ss xmm0, xmm1, dword ptr [rsi + rax*4]
    vmovss dword ptr [rcx + rax*4], xmm0""")

X86_I64 = """
    .intel_syntax noprefix
    .text
    .globl axpb_i64
axpb_i64:                       # out[i] = a[i]*3 - b[i] (wrapping); rdi=a, rsi=b, rdx=out
    mov ecx, 11
1:
    imul rax, qword ptr [rdi], 3
    sub rax, qword ptr [rsi]
    mov qword ptr [rdx], rax
    add rdi, 8
    add rsi, 8
    add rdx, 8
    dec rcx
    jnz 1b
    ret
"""

# every argument register: out(r9)[k] = *b_k for k in 0..4, out[5] = r9 & 63
X86_ARGS = """
    .intel_syntax noprefix
    .text
    .globl args6
args6:
    mov rax, [rdi]
    mov [r9], rax
    mov rax, [rsi]
    mov [r9 + 8], rax
    mov rax, [rdx]
    mov [r9 + 16], rax
    mov rax, [rcx]
    mov [r9 + 24], rax
    mov rax, [r8]
    mov [r9 + 32], rax
    mov rax, r9
    and rax, 63
    mov [r9 + 40], rax
    ret
"""

X86_BOOL = """
    .text
    .globl and_u8
and_u8:                         # AT&T syntax: out[i] = a[i] & b[i], i < 16
    movdqu (%rdi), %xmm0
    movdqu (%rsi), %xmm1
    pand %xmm1, %xmm0
    movdqu %xmm0, (%rdx)
    ret
"""

X86_CRASH = """
    .intel_syntax noprefix
    .text
    .globl crash
crash:
    xor eax, eax
    mov rax, qword ptr [rax]
    ret
"""


def test_host_supports():
    assert host_supports("x86-64") is ON_X86
    assert host_supports("aarch64") is (native.host_isa() == "aarch64")
    assert not host_supports("x86-64", ("no-such-feature",))
    with pytest.raises(ValueError):
        host_supports("mips")


@needs_x86
@pytest.mark.parametrize("isolate", [True, False])
def test_x86_add_f32(isolate):
    a, b = _f32(N), _f32(N)
    out = np.zeros(N, np.float32)
    run_x86_64(X86_ADD, "add_f32", [a, b, out], isolate=isolate)
    assert out.tobytes() == (a + b).tobytes()


@needs_x86
@needs_fma
def test_x86_fma_is_fused_and_correctly_rounded():
    a, b, c = _fma_inputs()
    out = np.zeros(N, np.float32)
    run_x86_64(X86_FMA, "fma_f32", [a, b, c, out])
    ref = fma_reference(a, b, c)
    assert out.tobytes() == ref.tobytes()
    assert out[0] == np.float32(2.0**-46)
    assert a[0] * b[0] + c[0] == 0          # unfused float32 loses it
    # exact product in float64 (48 bits) + one float64 rounding agrees here
    assert out.tobytes() == (a.astype(np.float64) * b + c).astype(np.float32).tobytes()


@needs_x86
def test_x86_int64_wraps():
    a = RNG.integers(-2**62, 2**62, 11, dtype=np.int64)
    a[0] = np.iinfo(np.int64).max
    b = RNG.integers(-2**62, 2**62, 11, dtype=np.int64)
    out = np.zeros(11, np.int64)
    run_x86_64(X86_I64, "axpb_i64", [a, b, out])
    with np.errstate(over="ignore"):
        assert out.tobytes() == (a * np.int64(3) - b).tobytes()


@needs_x86
def test_x86_six_argument_registers_and_alignment():
    ins = [np.array([10 * (k + 1)], np.int64) for k in range(5)]
    out = np.zeros(6, np.int64)
    run_x86_64(X86_ARGS, "args6", ins + [out])
    assert out[:5].tolist() == [10, 20, 30, 40, 50]
    assert out[5] == 0                       # isolated buffers are 64-byte aligned
    with pytest.raises(ValueError, match="at most 6"):
        run_x86_64(X86_ARGS, "args6", ins + [out, out])


@needs_x86
def test_x86_bool_att_syntax():
    a = RNG.integers(0, 2, 16).astype(bool)
    b = RNG.integers(0, 2, 16).astype(bool)
    out = np.zeros(16, bool)
    run_x86_64(X86_BOOL, "and_u8", [a, b, out])
    assert out.tobytes() == (a & b).tobytes()


# ---------------------------------------------------------------- aarch64

A64_ADD = f"""
    .text
    .globl add_f32
    .type add_f32, %function
add_f32:                        // x0=a, x1=b, x2=out
    mov x3, #{N}
1:
    ldr s0, [x0], #4
    ldr s1, [x1], #4
    fadd s0, s0, s1
    str s0, [x2], #4
    subs x3, x3, #1
    b.ne 1b
    ret
    .size add_f32, .-add_f32
"""

A64_FMA = f"""
    .text
    .globl fma_f32
fma_f32:                        // out = a*b + c; x0=a, x1=b, x2=c, x3=out
    mov x4, #{N}
1:
    ldr s0, [x0], #4
    ldr s1, [x1], #4
    ldr s2, [x2], #4
    fmadd s3, s0, s1, s2
    str s3, [x3], #4
    subs x4, x4, #1
    b.ne 1b
    ret
"""

A64_I64 = """
    .text
    .globl axpb_i64
axpb_i64:                       // out[i] = a[i]*3 - b[i]
    mov x3, #11
1:
    ldr x4, [x0], #8
    ldr x5, [x1], #8
    add x6, x4, x4, lsl #1
    sub x6, x6, x5
    str x6, [x2], #8
    subs x3, x3, #1
    b.ne 1b
    ret
"""

# every argument register: out(x7)[k] = *x_k for k in 0..6, out[7] = (x0|..|x7) & 63
A64_ARGS = "\n".join(
    ["    .text", "    .globl args8", "args8:", "    mov x9, x7"]
    + [f"    ldr x8, [x{k}]\n    str x8, [x7, #{8 * k}]\n    orr x9, x9, x{k}" for k in range(7)]
    + ["    and x9, x9, #63", "    str x9, [x7, #56]", "    ret"])

A64_CRASH = """
    .text
    .globl crash
crash:
    mov x0, #0
    ldr x1, [x0]
    ret
"""


@needs_a64
def test_a64_add_f32():
    a, b = _f32(N), _f32(N)
    out = np.zeros(N, np.float32)
    run_aarch64(A64_ADD, "add_f32", [a, b, out])
    assert out.tobytes() == (a + b).tobytes()


@needs_a64
def test_a64_fma_is_fused_and_correctly_rounded():
    a, b, c = _fma_inputs()
    out = np.zeros(N, np.float32)
    run_aarch64(A64_FMA, "fma_f32", [a, b, c, out])
    assert out.tobytes() == fma_reference(a, b, c).tobytes()
    assert out[0] == np.float32(2.0**-46)


@needs_a64
def test_a64_int64_and_inputs_untouched():
    a = RNG.integers(-2**62, 2**62, 11, dtype=np.int64)
    a[0] = np.iinfo(np.int64).min
    b = RNG.integers(-2**62, 2**62, 11, dtype=np.int64)
    a0, b0 = a.copy(), b.copy()
    out = np.zeros(11, np.int64)
    run_aarch64(A64_I64, "axpb_i64", [a, b, out])
    with np.errstate(over="ignore"):
        assert out.tobytes() == (a * np.int64(3) - b).tobytes()
    assert a.tobytes() == a0.tobytes() and b.tobytes() == b0.tobytes()


@needs_a64
def test_a64_eight_argument_registers_and_alignment():
    ins = [np.array([k + 100], np.int64) for k in range(7)]
    out = np.zeros(8, np.int64)
    run_aarch64(A64_ARGS, "args8", ins + [out])
    assert out[:7].tolist() == [100, 101, 102, 103, 104, 105, 106]
    assert out[7] == 0                       # driver allocations are 64-byte aligned


@needs_a64
def test_a64_2d_and_readonly_buffers():
    a = _f32(N).reshape(1, N)
    a.flags.writeable = False
    b = np.asfortranarray(_f32(N).reshape(N, 1))
    out = np.zeros((1, N), np.float32)
    run_aarch64(A64_ADD, "add_f32", [a, b, out])
    assert out.tobytes() == (a.ravel() + b.ravel()).tobytes()


ISAS = [pytest.param("x86-64", marks=needs_x86), pytest.param("aarch64", marks=needs_a64)]
RUNNERS = {"x86-64": run_x86_64, "aarch64": run_aarch64}
# (source, a good line, the same line broken, the token the assembler must name)
SOURCES = {"x86-64": (X86_ADD, "vaddss xmm0", "vaddzz xmm0", "vaddzz"),
           "aarch64": (A64_ADD, "fadd s0, s0, s1", "fadd s0, s0, q9x", "q9x")}


@pytest.mark.parametrize("isa", ISAS)
def test_syntax_error_is_value_error(isa):
    source, good, bad, token = SOURCES[isa]
    with pytest.raises(ValueError) as e:
        RUNNERS[isa](source.replace(good, bad), "add_f32", [np.zeros(N, np.float32)] * 3)
    msg = str(e.value)
    assert "assembly failed" in msg and "kernel.s:" in msg and token in msg


@pytest.mark.parametrize("isa", ISAS)
def test_missing_symbol_is_value_error(isa):
    with pytest.raises(ValueError, match="not exported" if isa == "x86-64" else "link failed"):
        RUNNERS[isa](SOURCES[isa][0], "no_such_fn", [np.zeros(N, np.float32)] * 3)


@pytest.mark.parametrize("isa", ISAS)
def test_crash_is_runtime_error(isa):
    with pytest.raises(RuntimeError, match=r"'crash'.*SIGSEGV"):
        RUNNERS[isa](X86_CRASH if isa == "x86-64" else A64_CRASH, "crash", [np.zeros(1, np.int64)])


def test_missing_tool_message(monkeypatch):
    monkeypatch.setattr(native.shutil, "which", lambda name: None)
    assert re.search("not found: .*apt-get install -y", native.missing_tools("aarch64" if ON_X86 else "x86-64"))


X86_HANG = """
    .text
    .globl hang
hang:
    jmp hang
"""

A64_HANG = """
    .text
    .globl hang
hang:
    b hang
"""


@needs_x86
def test_x86_hang_times_out():
    with pytest.raises(TimeoutError, match="'hang'"):
        run_x86_64(X86_HANG, "hang", [np.zeros(1, np.int64)], timeout=0.3)


@needs_a64
def test_a64_hang_times_out():
    with pytest.raises(TimeoutError, match="'hang'"):
        run_aarch64(A64_HANG, "hang", [np.zeros(1, np.int64)], timeout=0.5)


def test_aligned_buffers_start_a_cache_line_as_pytorch_tensors_do():
    """`isasim host` times on these: numpy's own arrays start 16 bytes into a line on glibc, which splits a
    strided operand's vector loads (benchmarks/placement.py)."""
    for n, dtype, fill in ((1, np.float32, 1), (49152, np.float32, 0), (333, np.int8, 3), (7, np.float64, 2)):
        a = native.aligned(n, dtype, fill)
        assert a.ctypes.data % 64 == 0 and a.size == n and a.dtype == dtype and np.all(a == fill)
