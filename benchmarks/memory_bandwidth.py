"""Read bandwidth of this host's cache levels and DRAM, in bytes per core cycle: the numbers a uarch description's
[[levels]] bytes_per_cycle hold (isa/uarch/zen3.toml's [HOST] figures came from this script).

A C loop of eight independent loads per trip, each as wide as the host's widest vector (512-bit where it has
AVX-512, else 256-bit AVX2; 128-bit NEON), sums a buffer of each size, best of 5 timings; cycles are the
seconds times the clock measured right after with a dependent add chain (isa/hostcpu.py), because a shared or
power-managed host moves its clock.

    .venv/bin/python benchmarks/memory_bandwidth.py
"""

from __future__ import annotations

import ctypes
import time

import numpy as np

from isasim.isa import hostcpu, toolchain

SOURCE = r"""
#if defined(__x86_64__) && defined(WIDE512)
#include <immintrin.h>
typedef __m512 vec;
#define LANES 16
#define LOAD _mm512_loadu_ps
#define ADD _mm512_add_ps
#define ZERO _mm512_setzero_ps()
__attribute__((target("avx512f")))
#elif defined(__x86_64__)
#include <immintrin.h>
typedef __m256 vec;
#define LANES 8
#define LOAD _mm256_loadu_ps
#define ADD _mm256_add_ps
#define ZERO _mm256_setzero_ps()
__attribute__((target("avx2")))
#elif defined(__aarch64__)
#include <arm_neon.h>
typedef float32x4_t vec;
#define LANES 4
#define LOAD vld1q_f32
#define ADD vaddq_f32
#define ZERO vdupq_n_f32(0)
#endif
float read_sum(const float *a, long n, long reps) {
    vec s[8];
    for (int j = 0; j < 8; j++) s[j] = ZERO;
    for (long r = 0; r < reps; r++)
        for (long i = 0; i < n; i += 8 * LANES)
            for (int j = 0; j < 8; j++) s[j] = ADD(s[j], LOAD(a + i + j * LANES));
    float out[LANES], total = 0;
    for (int j = 1; j < 8; j++) s[0] = ADD(s[0], s[j]);
    __builtin_memcpy(out, &s[0], sizeof out);
    for (int j = 0; j < LANES; j++) total += out[j];
    return total;
}
"""

SIZES_KB = (16, 128, 256, 384, 1024, 4096, 16384, 262144)


def main() -> None:
    cpu = hostcpu.this_host()
    wide = "avx512f" in cpu.flags  # a 256-bit loop is bound by its adds, not the cache, on Zen 5's 128 B/cycle L1
    lib = toolchain.c_library(("#define WIDE512\n" if wide else "") + SOURCE, "read bandwidth")
    lib.read_sum.argtypes = [ctypes.c_void_p, ctypes.c_long, ctypes.c_long]
    lib.read_sum.restype = ctypes.c_float
    width = 512 if wide else 128 if cpu.isa == "aarch64" else 256
    print(f"host: {cpu.name} ({cpu.core}, nearest description {cpu.uarch}); {width}-bit loads")
    print(f"{'buffer':>10}  {'GB/s':>7}  {'B/cycle':>7}  {'GHz':>5}")
    for kb in SIZES_KB:
        a = np.ones(kb * 256, np.float32)
        reps = max(1, int(2e9 / a.nbytes))
        lib.read_sum(a.ctypes.data, a.size, max(1, reps // 10))  # warm: pages, caches
        best = float("inf")
        for _ in range(5):
            start = time.perf_counter()
            lib.read_sum(a.ctypes.data, a.size, reps)
            best = min(best, time.perf_counter() - start)
        ghz = hostcpu.clock_now()
        rate = a.nbytes * reps / best
        print(f"{kb:>7} KB  {rate / 1e9:7.1f}  {rate / (ghz * 1e9):7.1f}  {ghz:5.2f}")


if __name__ == "__main__":
    main()
