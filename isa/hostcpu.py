"""This host's core: which one it is (CPUID, as Linux reports it in /proc/cpuinfo), the described
microarchitecture nearest to it, and its real clock, measured.

The clock in /proc/cpuinfo is the base or last-sampled frequency, not the one a busy core runs at (turbo,
boost): an Intel Xeon listed at 2.6 GHz ran a dependent chain at 3.84 GHz. So the clock is measured the way
microbenchmarks do (Agner Fog, "The microarchitecture of Intel, AMD and VIA CPUs", ch. 1; uops.info): a long
chain of dependent integer additions, one cycle each on every x86-64 and AArch64 core since the P6 and the
Cortex-A57, timed in C; cycles / seconds is the clock. A chain of dependent multiplies, whose latency the
nearest uarch description gives, is timed too, as a check.
"""

from __future__ import annotations

import ctypes
import platform
import time
from dataclasses import dataclass, field
from pathlib import Path

from isasim.isa import toolchain

# (vendor, family, first model, last model) -> (core, the described uarch nearest to it, why)
# Family and model numbers: Intel's SDM vol. 4 table 2-1 and AMD's Processor Programming References (PPR) for
# families 17h, 19h and 1Ah (1Ah models 00h-0Fh Turin, 10h-1Fh Turin dense), as also collected at
# https://en.wikichip.org/wiki/intel/cpuid and /amd/cpuid.
X86_CORES = [
    ("GenuineIntel", 6, 0x55, 0x55, "Skylake-SP / Cascade Lake", "skylake-x", "the same core"),
    ("GenuineIntel", 6, 0x6A, 0x6C, "Ice Lake-SP", "skylake-x",
     "Ice Lake is not described; Skylake-X has its AVX-512 ports (p0+p1 fused, p5)"),
    ("GenuineIntel", 6, 0x8F, 0x8F, "Sapphire Rapids", "sapphirerapids", "the same core"),
    ("GenuineIntel", 6, 0xCF, 0xCF, "Emerald Rapids", "sapphirerapids", "the same Golden Cove core"),
    ("AuthenticAMD", 0x1A, 0x00, 0x1F, "Zen 5 (Turin)", "zen5", "the same core"),
    ("AuthenticAMD", 0x19, 0x10, 0x1F, "Zen 4 (Genoa)", "zen4", "the same core"),
    ("AuthenticAMD", 0x19, 0x60, 0x7F, "Zen 4 (Raphael, Phoenix)", "zen4", "the same core"),
    ("AuthenticAMD", 0x19, 0xA0, 0xAF, "Zen 4c (Bergamo)", "zen4", "the same core, denser"),
    ("AuthenticAMD", 0x19, 0x00, 0x0F, "Zen 3 (Milan)", "zen3", "the same core"),
    ("AuthenticAMD", 0x19, 0x20, 0x5F, "Zen 3 (Vermeer, Cezanne)", "zen3", "the same core"),
    ("AuthenticAMD", 0x17, 0x00, 0xFF, "Zen / Zen 2", "zen3",
     "Zen 2 is not described; Zen 3 is its nearest descendant (the same four FP pipes, no AVX-512)"),
]
# AArch64: (implementer, part) from the MIDR (Arm ARM D23.2.122), as /proc/cpuinfo's "CPU implementer/part"
ARM_CORES = {(0x41, 0xD0C): ("Neoverse N1", "neoverse-n1", "the same core"),
             (0x41, 0xD40): ("Neoverse V1", "neoverse-v1", "the same core")}


@dataclass
class HostCpu:
    isa: str  # "x86-64" or "aarch64"
    vendor: str
    family: int | None
    model: int | None
    name: str  # the model name Linux reports
    core: str  # the core as identified, or "unknown"
    uarch: str  # the nearest described microarchitecture
    why: str
    flags: list[str] = field(default_factory=list)  # the SIMD extensions isasim's targets use

    def to_dict(self) -> dict:
        return dict(self.__dict__)


SIMD_FLAGS = ("sse4_2", "avx", "avx2", "fma", "avx512f", "avx512bw", "avx512vl", "avx512_vnni", "avx512_bf16",
              "avx_vnni", "amx_tile", "amx_int8", "amx_bf16", "asimd", "asimddp", "i8mm", "bf16", "sve")


def _fields(text: str) -> dict[str, str]:
    """The first processor's fields of /proc/cpuinfo."""
    out: dict[str, str] = {}
    for line in text.splitlines():
        if not line.strip():
            if out:
                break
            continue
        key, _, value = line.partition(":")
        out.setdefault(key.strip().lower(), value.strip())
    return out


def identify(cpuinfo: str, machine: str) -> HostCpu:
    """The core /proc/cpuinfo's text describes (`machine` as platform.machine() names the ISA)."""
    f = _fields(cpuinfo)
    flags = set((f.get("flags") or f.get("features") or "").split())
    simd = [x for x in SIMD_FLAGS if x in flags]
    if machine.lower() in ("aarch64", "arm64"):
        try:
            key = (int(f.get("cpu implementer", ""), 0), int(f.get("cpu part", ""), 0))
        except ValueError:
            key = None
        core, uarch, why = ARM_CORES.get(key, ("unknown", "neoverse-n1", "an unknown Arm core: Neoverse N1 is "
                                                                         "the described baseline"))
        return HostCpu("aarch64", f.get("cpu implementer", "?"), None, None, f.get("model name", core), core,
                       uarch, why, simd)
    vendor = f.get("vendor_id", "?")
    try:
        family, model = int(f.get("cpu family", "")), int(f.get("model", ""))
    except ValueError:
        family = model = None
    for v, fam, first, last, core, uarch, why in X86_CORES:
        if vendor == v and family == fam and model is not None and first <= model <= last:
            return HostCpu("x86-64", vendor, family, model, f.get("model name", core), core, uarch, why, simd)
    uarch, why = (("skylake-x", "an unknown core with AVX-512: Skylake-X is the described baseline for it")
                  if "avx512f" in flags else
                  ("zen3", "an unknown core without AVX-512: Zen 3 is the described core without it"))
    return HostCpu("x86-64", vendor, family, model, f.get("model name", "unknown"), "unknown", uarch, why, simd)


def this_host() -> HostCpu:
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        text = ""
    return identify(text, platform.machine())


CHAIN = 1000  # dependent instructions per loop trip: the loop's own counter runs beside them, free
SOURCE = r"""
/* n trips of CHAIN dependent adds (or multiplies): CHAIN cycles per trip at one cycle each */
#define REPEAT(body) ".rept 1000\n\t" body "\n\t.endr"
#if defined(__x86_64__)
#define ADD REPEAT("add $1, %0")
#define MUL REPEAT("imul %0, %0")
#elif defined(__aarch64__)
#define ADD REPEAT("add %0, %0, #1")
#define MUL REPEAT("mul %0, %0, %0")
#endif
long add_chain(long n) { long x = 1; for (long i = 0; i < n; i++) __asm__ volatile(ADD : "+r"(x)); return x; }
long mul_chain(long n) { long x = 3; for (long i = 0; i < n; i++) __asm__ volatile(MUL : "+r"(x)); return x; }
/* n trips of 12 independent vector FMAs (256-bit on x86-64, 128-bit on AArch64): the FMA pipes' throughput */
#if defined(__x86_64__)
#define F(a) "vfmadd231ps %%ymm13, %%ymm14, %%ymm" #a "\n\t"
#define FMA_CLOBBERS "xmm0", "xmm1", "xmm2", "xmm3", "xmm4", "xmm5", "xmm6", "xmm7", "xmm8", "xmm9", "xmm10", \
                     "xmm11", "xmm13", "xmm14"
#define Z(a) "vxorps %%xmm" #a ", %%xmm" #a ", %%xmm" #a "\n\t"
#define LOOP "dec %0\n\tjnz 1b"
#elif defined(__aarch64__)
#define F(a) "fmla v" #a ".4s, v13.4s, v14.4s\n\t"
#define FMA_CLOBBERS "v0", "v1", "v2", "v3", "v4", "v5", "v6", "v7", "v8", "v9", "v10", "v11", "v13", "v14"
#define Z(a) "movi v" #a ".4s, #0\n\t"
#define LOOP "subs %0, %0, #1\n\tb.ne 1b"
#endif
void fma_chains(long n) {  /* one asm block: every register zeroed first (a denormal would take a slow path) */
    if (n > 0)
        __asm__ volatile(Z(0) Z(1) Z(2) Z(3) Z(4) Z(5) Z(6) Z(7) Z(8) Z(9) Z(10) Z(11) Z(13) Z(14) "1:\n\t"
                         F(0) F(1) F(2) F(3) F(4) F(5) F(6) F(7) F(8) F(9) F(10) F(11) LOOP
                         : "+r"(n) :: FMA_CLOBBERS, "cc");
}
"""


@dataclass
class Clock:
    ghz: float
    mul_ghz: float  # the same clock from the multiply chain (its latency assumed): they should agree
    reported_ghz: float | None  # what /proc/cpuinfo says
    fma_per_cycle: float | None = None  # independent vector FMAs measured per cycle (None: no FMA to run)
    fma_described: float | None = None  # what the uarch description says the FMA pipes sustain

    def to_dict(self) -> dict:
        return dict(self.__dict__)


def _best(fn, n: int, repeat: int) -> float:
    fn(n // 10)  # warm: the core leaves its idle clock
    best = float("inf")
    for _ in range(repeat):
        t = time.perf_counter()
        fn(n)
        best = min(best, time.perf_counter() - t)
    return best


MUL_KEY = {"x86-64": "imul", "aarch64": "mul"}  # the timing key of the multiply SOURCE chains, per ISA


def chains():
    """The compiled chains: add_chain(n) and mul_chain(n), each n x CHAIN dependent instructions."""
    lib = toolchain.c_library(SOURCE, "clock chains")
    for fn in (lib.add_chain, lib.mul_chain):
        fn.argtypes, fn.restype = [ctypes.c_long], ctypes.c_long
    lib.fma_chains.argtypes, lib.fma_chains.restype = [ctypes.c_long], None
    return lib


FMA_KEY = {"x86-64": ("vfmadd231ps_ymm", "fma"), "aarch64": ("fmla_4s", "asimd")}  # (timing key, cpuinfo flag)


def measure_clock(core, repeat: int = 5, flags: tuple[str, ...] = ()) -> Clock:
    """The clock the core runs at under load (best of `repeat` timings of 20 million dependent adds), and the
    clock the multiply chain gives at the latency the uarch description `core` gives its multiply (imul r64
    3 cycles on every x86-64 core described, MUL Xd 4 on Neoverse N1 and 2 on V1). Where the host has the
    vector FMA (`flags`), also how many independent FMAs per cycle its pipes sustain: fewer than described
    means another thread shares them (an SMT sibling, a neighbour on a shared host), and vector kernels will
    run slower than predicted by that much."""
    mul_latency = core.timing(MUL_KEY[core.isa]).latency
    lib = chains()
    n = 20_000
    ghz = n * CHAIN / _best(lib.add_chain, n, repeat) / 1e9
    mul_ghz = n // 4 * CHAIN * mul_latency / _best(lib.mul_chain, n // 4, repeat) / 1e9
    key, flag = FMA_KEY[core.isa]
    fma = described = None
    if flag in flags:
        trips = 2_000_000
        fma = round(12 * trips / _best(lib.fma_chains, trips, repeat) / (ghz * 1e9), 2)
        described = round(1 / core.timing(key).rthroughput, 2)
    return Clock(round(ghz, 3), round(mul_ghz, 3), reported_ghz(), fma, described)


def clock_now(repeat: int = 5) -> float:
    """The clock in GHz right now: the best of `repeat` chains of 2 million dependent adds (about 0.7 ms each),
    short enough to take around every timed kernel, and enough of them that a short spell of a slower clock
    (or an interrupt) does not set it."""
    lib = chains()
    n = 2_000
    return n * CHAIN / _best(lib.add_chain, n, repeat) / 1e9


def reported_ghz() -> float | None:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.lower().startswith("cpu mhz"):
                return round(float(line.split(":")[1]) / 1e3, 3)
    except (OSError, ValueError, IndexError):
        pass
    return None
