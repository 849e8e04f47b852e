"""What one OpenMP parallel loop's fork and join costs on this host: the `fork_join_ns` figure of the uarch
files' [socket] tables (isa/machine.py).

Compiles a C program with GCC's OpenMP (libgomp, the runtime PyTorch's CPU wheels ship) whose timed loop is
nothing but an empty `#pragma omp parallel for` (one store per thread), and prints its best time per loop over
five rounds of 200,000, for 1 thread and for every count up to this machine's cores, threads spinning and
pinned (OMP_PROC_BIND=close), as EPCC's syncbench measures PARALLEL FOR.

    python benchmarks/fork_join.py
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from pathlib import Path

PROGRAM = r"""
#include <omp.h>
#include <stdio.h>
#include <time.h>
static double now(void) { struct timespec t; clock_gettime(CLOCK_MONOTONIC, &t); return t.tv_sec + t.tv_nsec * 1e-9; }
volatile float sink[1024];
int main(void) {
    const int rounds = 200000;
    double best = 1e9;
    for (int rep = 0; rep < 5; rep++) {
        double t = now();
        for (int r = 0; r < rounds; r++) {
            #pragma omp parallel for schedule(static)
            for (int i = 0; i < omp_get_num_threads() * 16; i++) sink[i * 16 % 1024] += 1.0f;
        }
        double dt = (now() - t) / rounds;
        if (dt < best) best = dt;
    }
    printf("%.3f\n", best * 1e6);
    return 0;
}
"""


def main() -> int:
    with tempfile.TemporaryDirectory() as tmp:
        src, exe = Path(tmp) / "fork_join.c", Path(tmp) / "fork_join"
        src.write_text(PROGRAM)
        try:
            subprocess.run(["gcc", "-O2", "-fopenmp", str(src), "-o", str(exe)], check=True)
        except (OSError, subprocess.CalledProcessError) as e:
            print(f"fork_join.py: cannot build the OpenMP program with gcc -fopenmp: {e}", file=sys.stderr)
            return 1
        cores = len(os.sched_getaffinity(0))
        for threads in sorted({1, *range(2, cores + 1, max(1, cores // 8))} | {cores}):
            env = {**os.environ, "OMP_NUM_THREADS": str(threads), "OMP_PROC_BIND": "close",
                   "OMP_WAIT_POLICY": "active"}
            us = subprocess.run([str(exe)], env=env, check=True, capture_output=True, text=True).stdout.strip()
            print(f"{threads:4d} threads: {us} us per parallel for (best of 5 x 200,000)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
