"""Run emitted assembly kernels on real (or emulated) machines.

A kernel is a standalone GNU-as file defining one global function under the
platform ABI whose arguments are the base addresses of its buffers, in order::

    void NAME(void *b0, void *b1, ..., void *bN)

* x86-64 (SysV): at most 6 buffers (rdi, rsi, rdx, rcx, r8, r9).  The file is
  assembled and linked into a shared library with ``gcc -shared``, loaded with
  ctypes and called.  By default the call happens in a forked child working on
  64-byte aligned shared-memory copies of the buffers, so a crashing kernel
  raises RuntimeError instead of killing the interpreter (``isolate=False``
  calls it in-process on the arrays' own memory: faster, but a crash is fatal).
* AArch64 (AAPCS64): at most 8 buffers (x0..x7).  The file is assembled with
  ``aarch64-linux-gnu-gcc``, linked statically with a small C driver, and run
  under ``qemu-aarch64`` (natively on an aarch64 host).  The driver reads every
  buffer from stdin into a 64-byte aligned allocation, calls the kernel, and
  writes every buffer back to stdout; the bytes are copied back in place.

Built artefacts are cached by sha256 of the assembly text in a temp dir
(``$ISASIM_NATIVE_CACHE`` overrides it), so repeated calls skip the toolchain.

Errors: missing tools -> NativeUnavailable (message says how to install);
assembler or linker errors -> ValueError with the tool's first lines; a kernel
killed by a signal -> RuntimeError naming the symbol and the signal.
"""

from __future__ import annotations

import ctypes
import faulthandler
import mmap
import os
import platform
import resource
import shutil
import signal
import struct
import subprocess
import tempfile
from pathlib import Path

import numpy as np

from isasim.isa.machine_state import ALIGN
from isasim.isa.toolchain import (INSTALL as _INSTALL, NativeUnavailable, build as _build, cpu_flags as _cpu_flags,
                                   digest as _digest, loaded, sh as _sh, tool_error as _tool_error,
                                   which as _which)

__all__ = [
    "NativeUnavailable",
    "host_isa",
    "host_supports",
    "can_run",
    "missing_tools",
    "run_x86_64",
    "run_aarch64",
    "run",
]




# ----------------------------------------------------------------- host facts

def max_buffers(isa: str) -> int:
    """The buffers a kernel can take: one per argument register of the ISA's calling convention."""
    from isasim.isa.targets import TARGETS

    return next(len(t.registers.args) for t in TARGETS.values() if t.isa == isa)


def host_isa() -> str:
    m = platform.machine().lower()
    if m in ("x86_64", "amd64"):
        return "x86-64"
    if m in ("aarch64", "arm64"):
        return "aarch64"
    return m


def _norm_isa(isa: str) -> str:
    i = isa.lower().replace("_", "-")
    if i in ("x86-64", "amd64", "x64"):
        return "x86-64"
    if i in ("aarch64", "arm64"):
        return "aarch64"
    raise ValueError(f"unknown isa {isa!r}: expected 'x86-64' or 'aarch64'")


def host_supports(isa: str, features: tuple[str, ...] = ()) -> bool:
    """True when this machine *natively* executes ``isa`` with all ``features``
    (names as in /proc/cpuinfo: "avx2", "avx512f", "fma", "asimd", "sve"...)."""
    if _norm_isa(isa) != host_isa():
        return False
    if not features:
        return True
    flags = _cpu_flags()
    return all(f.lower() in flags for f in features)


def can_run(isa: str, features: tuple[str, ...] = ()) -> bool:
    """True when run_<isa> would work here (natively or under qemu)."""
    isa = _norm_isa(isa)
    try:
        if isa == "x86-64":
            _x86_tools()
            return host_supports(isa, features)
        _aarch64_tools()
        # qemu-aarch64's default "max" CPU implements every optional feature.
        return True if isa != host_isa() else host_supports(isa, features)
    except NativeUnavailable:
        return False


def missing_tools(isa: str) -> str | None:
    """Why run_<isa> cannot assemble, link or run here (which tool is missing, and how to install it), or None."""
    try:
        _x86_tools() if _norm_isa(isa) == "x86-64" else _aarch64_tools()
    except NativeUnavailable as e:
        return str(e)
    return None


def _x86_tools() -> str:
    if host_isa() != "x86-64":
        raise NativeUnavailable(f"run_x86_64 needs an x86-64 host (this is {platform.machine()})")
    return _which("gcc", "gcc")


def _aarch64_tools() -> tuple[str, str | None]:
    """(compiler, emulator or None when running natively)."""
    if host_isa() == "aarch64":
        return _which("gcc", "gcc"), None
    cc = _which("aarch64-linux-gnu-gcc", "gcc-aarch64-linux-gnu")
    _which("aarch64-linux-gnu-as", "binutils-aarch64-linux-gnu")
    if not Path("/usr/aarch64-linux-gnu/lib/libc.a").exists():
        raise NativeUnavailable(
            "/usr/aarch64-linux-gnu/lib/libc.a not found: " + _INSTALL.format(pkg="libc6-dev-arm64-cross"))
    emu = shutil.which("qemu-aarch64") or shutil.which("qemu-aarch64-static")
    if emu is None:
        raise NativeUnavailable("qemu-aarch64 not found: " + _INSTALL.format(pkg="qemu-user"))
    return cc, emu


def _write_asm(tmp: Path, asm: str) -> Path:
    src = tmp / "kernel.s"
    src.write_text(asm if asm.endswith("\n") else asm + "\n")
    return src


# -------------------------------------------------------------------- buffers

def _byte_views(buffers, isa: str) -> list[np.ndarray]:
    most = max_buffers(isa)
    if len(buffers) > most:
        raise ValueError(f"{isa} kernels take at most {most} buffers "
                         f"(all in argument registers), got {len(buffers)}")
    views = []
    for i, b in enumerate(buffers):
        if not isinstance(b, np.ndarray):
            raise TypeError(f"buffer {i} is {type(b).__name__}, expected numpy.ndarray")
        if not (b.flags.c_contiguous or b.flags.f_contiguous):
            raise ValueError(f"buffer {i} is not contiguous")
        views.append(b.reshape(-1, order="A" if b.flags.f_contiguous and not b.flags.c_contiguous
                               else "C").view(np.uint8))
    return views


def _round_up(n: int, a: int = ALIGN) -> int:
    return (n + a - 1) // a * a


def _signal_name(sig: int) -> str:
    try:
        return signal.Signals(sig).name
    except ValueError:
        return f"signal {sig}"


# --------------------------------------------------------------------- x86-64



def _x86_library(asm: str, symbol: str) -> ctypes.CDLL:
    gcc = _x86_tools()
    key = _digest("x86-64-so-v1", asm)

    def make(tmp: Path) -> Path:
        src = _write_asm(tmp, asm)
        p = _sh([gcc, "-c", "-x", "assembler", "-Wa,--noexecstack", src.name, "-o", "kernel.o"], tmp)
        if p.returncode:
            raise _tool_error("assembly", symbol, p)
        p = _sh([gcc, "-shared", "-Wl,-z,noexecstack", "kernel.o", "-o", "kernel.so", "-lm"], tmp)
        if p.returncode:
            raise _tool_error("link", symbol, p)
        return tmp / "kernel.so"

    return loaded(key, make)


ARCH_REQ_XCOMP_PERM, XFEATURE_XTILEDATA, SYS_ARCH_PRCTL = 0x1023, 18, 158  # Linux x86-64 (asm/prctl.h)


def _allow_tiles(asm: str) -> None:
    """Linux lets a process use AMX's tile data only after it asks (arch_prctl(ARCH_REQ_XCOMP_PERM,
    XFEATURE_XTILEDATA), kernel 5.16+); without it the first tile instruction faults."""
    if "ldtilecfg" not in asm:
        return
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.syscall(SYS_ARCH_PRCTL, ARCH_REQ_XCOMP_PERM, XFEATURE_XTILEDATA) != 0:
        raise RuntimeError(f"the kernel refused AMX tile data (arch_prctl errno {ctypes.get_errno()})")


def aligned(size: int, dtype, fill: float = 0) -> np.ndarray:
    """A fresh array of `size` elements, all `fill`, whose first byte starts a cache line (ALIGN bytes), as
    PyTorch's CPU allocator places every tensor (c10's 64-byte alignment). numpy's own arrays start 16 bytes
    into a line here, which splits each 64-byte vector load of a row whose pitch is a multiple of 64 across
    two lines: minilm's AVX-512 P.V measured 1.67-1.80x its prediction so, 1.20x aligned, on the Zen 5 host
    (benchmarks/placement.py)."""
    dtype = np.dtype(dtype)
    raw = np.empty(size * dtype.itemsize + ALIGN, np.uint8)
    start = -raw.ctypes.data % ALIGN
    out = raw[start:start + size * dtype.itemsize].view(dtype)
    out[...] = fill
    return out


def x86_64_call(asm: str, symbol: str, buffers: list[np.ndarray]):
    """The kernel loaded and bound to the buffers' memory: a call with no arguments runs it in this process
    (for timing: no per-call work beyond ctypes'; a crash is fatal, so run it isolated once first)."""
    views = _byte_views(buffers, "x86-64")
    _allow_tiles(asm)
    fn = getattr(_x86_library(asm, symbol), symbol)
    fn.restype = None
    fn.argtypes = [ctypes.c_void_p] * len(views)
    pointers = [v.ctypes.data for v in views]

    def call() -> None:
        fn(*pointers)

    call.buffers = views  # (the memory must live as long as the call that points into it)
    call.function = fn  # the ctypes function itself, for a harness that calls it from C
    return call


def run_x86_64(asm: str, symbol: str, buffers: list[np.ndarray], *,
               isolate: bool = True, timeout: float = 60.0) -> None:
    """Assemble ``asm`` (AT&T or `.intel_syntax noprefix`) into a shared library and
    call ``symbol(b0.ctypes.data, ...)``; the buffers are updated in place.

    isolate=True (default): run in a forked child on 64-byte aligned shared copies,
    so a crash raises RuntimeError and a hang raises TimeoutError after ``timeout``.
    isolate=False: call in-process on the arrays' memory (numpy alignment, usually 16)."""
    views = _byte_views(buffers, "x86-64")
    _allow_tiles(asm)  # (a forked child inherits the permission)
    lib = _x86_library(asm, symbol)
    try:
        fn = getattr(lib, symbol)
    except AttributeError:
        raise ValueError(f"symbol {symbol!r} is not exported by the kernel (missing `.globl {symbol}`?)") from None
    fn.restype = None
    fn.argtypes = [ctypes.c_void_p] * len(views)

    if not isolate:
        fn(*[v.ctypes.data for v in views])
        return

    offsets, total = [], 0
    for v in views:
        offsets.append(total)
        total += _round_up(max(v.nbytes, 1)) + ALIGN   # a cache line of slack after each buffer
    shm = mmap.mmap(-1, max(total, mmap.PAGESIZE))       # MAP_SHARED | MAP_ANONYMOUS, page aligned
    try:
        arena = np.frombuffer(shm, dtype=np.uint8)
        for v, off in zip(views, offsets):
            arena[off:off + v.nbytes] = v
        base = ctypes.addressof(ctypes.c_char.from_buffer(shm))
        ptrs = [base + off for off in offsets]

        pid = os.fork()
        if pid == 0:                                     # child: call, then leave at once
            try:
                faulthandler.disable()
                _no_core()
                signal.signal(signal.SIGSEGV, signal.SIG_DFL)
                fn(*ptrs)
                os._exit(0)
            except BaseException:
                os._exit(70)
        status = _wait(pid, timeout, symbol)
        if os.WIFSIGNALED(status):
            raise RuntimeError(f"kernel {symbol!r} crashed with {_signal_name(os.WTERMSIG(status))}")
        if os.WEXITSTATUS(status) != 0:
            raise RuntimeError(f"kernel {symbol!r} child exited with status {os.WEXITSTATUS(status)}")
        for b, v, off in zip(buffers, views, offsets):
            if b.flags.writeable:
                v[...] = arena[off:off + v.nbytes]
        del arena
    finally:
        try:
            shm.close()
        except BufferError:                              # a view is still alive; GC will unmap it
            pass


def _no_core() -> None:
    """A crashing kernel must not leave core files."""
    try:
        resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    except (ValueError, OSError):
        pass


def _wait(pid: int, timeout: float, symbol: str) -> int:
    import time
    deadline = time.monotonic() + timeout
    delay = 1e-4
    while True:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            return status
        if time.monotonic() > deadline:
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
            raise TimeoutError(f"kernel {symbol!r} did not return within {timeout} s")
        time.sleep(delay)
        delay = min(delay * 2, 0.01)


# -------------------------------------------------------------------- aarch64

_DRIVER_C = r"""
/* isasim native driver: stdin = "ISAK" u32 n, u64 size[n], bytes...; stdout = bytes... */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#define MAXB 8
#define ALIGN {ALIGN}
extern void isasim_kernel_entry(void *, void *, void *, void *, void *, void *, void *, void *);
static int rd(void *p, size_t n) {
    char *c = p;
    while (n) { ssize_t k = read(0, c, n); if (k <= 0) return -1; c += k; n -= (size_t)k; }
    return 0;
}
static int wr(const void *p, size_t n) {
    const char *c = p;
    while (n) { ssize_t k = write(1, c, n); if (k <= 0) return -1; c += k; n -= (size_t)k; }
    return 0;
}
int main(void) {
    char magic[4]; uint32_t n; uint64_t size[MAXB]; void *buf[MAXB] = {0};
    if (rd(magic, 4) || memcmp(magic, "ISAK", 4) || rd(&n, 4) || n > MAXB) return 90;
    if (rd(size, 8 * (size_t)n)) return 91;
    for (uint32_t i = 0; i < n; i++) {
        size_t cap = (size[i] + ALIGN - 1) / ALIGN * ALIGN + ALIGN;  /* + one line of slack */
        buf[i] = aligned_alloc(ALIGN, cap);
        if (!buf[i]) return 92;
        memset(buf[i], 0, cap);
        if (rd(buf[i], size[i])) return 93;
    }
    isasim_kernel_entry(buf[0], buf[1], buf[2], buf[3], buf[4], buf[5], buf[6], buf[7]);
    for (uint32_t i = 0; i < n; i++)
        if (wr(buf[i], size[i])) return 94;
    return 0;
}
""".replace("{ALIGN}", str(ALIGN))


def _aarch64_driver(cc: str) -> Path:
    def make(tmp: Path) -> Path:
        (tmp / "driver.c").write_text(_DRIVER_C)
        p = _sh([cc, "-O2", "-c", "driver.c", "-o", "driver.o"], tmp)
        if p.returncode:
            raise RuntimeError("building the aarch64 driver failed:\n" + p.stderr)
        return tmp / "driver.o"
    return _build(_digest("aarch64-driver", cc, _DRIVER_C), ".driver.o", make)


def _aarch64_program(asm: str, symbol: str, cc: str) -> Path:
    driver = _aarch64_driver(cc)

    def make(tmp: Path) -> Path:
        src = _write_asm(tmp, asm)
        p = _sh([cc, "-c", "-x", "assembler", "-Wa,--noexecstack", src.name, "-o", "kernel.o"], tmp)
        if p.returncode:
            raise _tool_error("assembly", symbol, p)
        p = _sh([cc, "-static", "-Wl,-z,noexecstack", f"-Wl,--defsym=isasim_kernel_entry={symbol}",
                 str(driver), "kernel.o", "-o", "prog", "-lm"], tmp)
        if p.returncode:
            raise _tool_error("link", symbol, p)
        return tmp / "prog"

    return _build(_digest("aarch64-prog-v1", cc, symbol, asm), ".aarch64", make)


def run_aarch64(asm: str, symbol: str, buffers: list[np.ndarray], *, timeout: float = 60.0) -> None:
    """Assemble ``asm`` for AArch64, link statically with the driver, run it under
    qemu-aarch64 (or natively) and copy every buffer back in place."""
    views = _byte_views(buffers, "aarch64")
    cc, emu = _aarch64_tools()
    prog = _aarch64_program(asm, symbol, cc)
    header = b"ISAK" + struct.pack(f"<I{len(views)}Q", len(views), *(v.nbytes for v in views))
    payload = header + b"".join(v.tobytes() for v in views)
    cmd = [emu, str(prog)] if emu else [str(prog)]
    # no core files from crashing kernels (qemu writes qemu_*.core in cwd); a shell
    # wrapper rather than preexec_fn, which is unsafe in threaded processes (torch)
    sh = shutil.which("sh")
    if sh:
        cmd = [sh, "-c", 'ulimit -c 0 2>/dev/null; exec "$@"', "sh", *cmd]
    try:
        p = subprocess.run(cmd, input=payload, capture_output=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        raise TimeoutError(f"kernel {symbol!r} did not return within {timeout} s") from None
    if p.returncode < 0:
        raise RuntimeError(f"kernel {symbol!r} crashed with {_signal_name(-p.returncode)}"
                           + _stderr_tail(p.stderr))
    if p.returncode != 0:
        raise RuntimeError(f"kernel {symbol!r}: driver exited with status {p.returncode}"
                           + _stderr_tail(p.stderr))
    expect = sum(v.nbytes for v in views)
    if len(p.stdout) != expect:
        raise RuntimeError(f"kernel {symbol!r}: driver returned {len(p.stdout)} bytes, expected {expect}")
    out = np.frombuffer(p.stdout, dtype=np.uint8)
    off = 0
    for b, v in zip(buffers, views):
        if b.flags.writeable:
            v[...] = out[off:off + v.nbytes]
        off += v.nbytes


def _stderr_tail(err: bytes) -> str:
    text = err.decode(errors="replace").strip()
    return f"\n{text[-2000:]}" if text else ""


def run(isa: str, asm: str, symbol: str, buffers: list[np.ndarray], **kw) -> None:
    """Dispatch to run_x86_64 / run_aarch64 by isa name."""
    isa = _norm_isa(isa)
    (run_x86_64 if isa == "x86-64" else run_aarch64)(asm, symbol, buffers, **kw)


def assemble(isa: str, asm: str, symbol: str = "kernel") -> None:
    """Assemble with GNU as only (no linking, no running): checks code a host cannot execute, such as
    AVX-512 on a CPU without it. Raises ValueError with the assembler's messages."""
    isa = _norm_isa(isa)
    tool = _which("as", "binutils") if isa == "x86-64" else _which("aarch64-linux-gnu-as",
                                                                     "binutils-aarch64-linux-gnu")
    with tempfile.TemporaryDirectory() as tmp:
        src = _write_asm(Path(tmp), asm)
        proc = _sh([tool, "-o", "kernel.o", src.name], Path(tmp))
        if proc.returncode != 0:
            raise _tool_error("GNU as", symbol, proc)
