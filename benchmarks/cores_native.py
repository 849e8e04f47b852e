"""isasim's own machine code on 2 cores: each kernel's chunks (engine/cores.py, as `--cores 2` splits it) run
natively at once, one per core, on the same buffers, next to the whole kernel on one core. It checks the
many-core cost model against the hardware with the very code it costs, where benchmarks/cores_anchor.py can
only set it against PyTorch's (whose GEMM library partitions and packs its own way).

    .venv/bin/python benchmarks/cores_native.py [--model minilm] [--seq 128] [--target avx512] [--rounds 5]

A small C harness (built here with gcc) runs one chunk on this thread and the other on a second, spinning
thread at once, and times from the start signal to both finishing; the handoff's own cost, timed with no work,
is taken off. Per kernel the best of --rounds rounds of 3 calls counts. Only the kernels that `--cores 2`
splits are timed both ways: the others run on one core either way.
"""

from __future__ import annotations

import argparse
import ctypes
import subprocess
import tempfile
from pathlib import Path


from isasim.backends import backend_for, load_machine
from isasim.engine.cores import split_cost
from isasim.engine.graphs import lowered_for_cost
from isasim.isa import hostcpu, native
from isasim.isa.emit import symbol
from isasim.isa.targets import ALL_TARGETS
from isasim.lowering.kernel import canonical


HARNESS = r"""
#include <pthread.h>
#include <stdatomic.h>
#include <time.h>
typedef void (*kernel)(void *, void *, void *, void *, void *, void *);
struct job { kernel fn; void **args; };
static struct job theirs;
static atomic_long go, done;
static double now(void) { struct timespec t; clock_gettime(CLOCK_MONOTONIC, &t); return t.tv_sec + t.tv_nsec * 1e-9; }
void nothing(void *a, void *b, void *c, void *d, void *e, void *f) {}
static void call(struct job j) { if (j.fn) j.fn(j.args[0], j.args[1], j.args[2], j.args[3], j.args[4], j.args[5]); }
static void *serve(void *rounds) {
    for (long r = 1; r <= (long)rounds; r++) {
        while (atomic_load_explicit(&go, memory_order_acquire) < r) {}
        call(theirs);
        atomic_store_explicit(&done, r, memory_order_release);
    }
    return 0;
}
/* best seconds of `rounds` runs of a on this thread and b on a second one at once (b NULL: a alone) */
double pair(kernel a, void **args_a, kernel b, void **args_b, long rounds) {
    struct job mine = {a, args_a};
    theirs = (struct job){b, args_b};
    atomic_store(&go, 0); atomic_store(&done, 0);
    pthread_t t;
    if (b) pthread_create(&t, 0, serve, (void *)rounds);
    double best = 1e9;
    for (long r = 1; r <= rounds; r++) {
        double start = now();
        atomic_store_explicit(&go, r, memory_order_release);
        call(mine);
        if (b) while (atomic_load_explicit(&done, memory_order_acquire) < r) {}
        double dt = now() - start;
        if (dt < best) best = dt;
    }
    if (b) pthread_join(t, 0);
    return best;
}
"""


def harness():
    """The C harness above, built and loaded: `pair(a, args, b, args, rounds)` (spinning threads, no Python
    between the two calls) and its function that does nothing."""
    tmp = Path(tempfile.mkdtemp())
    (tmp / "pair.c").write_text(HARNESS)
    subprocess.run(["gcc", "-O2", "-shared", "-fPIC", "-pthread", str(tmp / "pair.c"), "-o", str(tmp / "pair.so")],
                   check=True)
    lib = ctypes.CDLL(str(tmp / "pair.so"))
    lib.pair.restype = ctypes.c_double
    lib.pair.argtypes = [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_long]
    return lib.pair, ctypes.cast(lib.nothing, ctypes.c_void_p).value


def calls(programs, target, machine):
    """Each program's machine code bound to ONE set of buffers (inputs of ones, outputs zero): the chunks of a
    kernel read the same inputs and write their parts of the same outputs, as threads of one process do.
    Returns (function pointer, its six arguments) per program, and the buffers (to keep them alive)."""
    buffers = [native.aligned(b.size, b.dtype.numpy, 0 if b.is_output else 1) for b in programs[0].buffers]
    args = (ctypes.c_void_p * 6)(*([b.ctypes.data for b in buffers] + [0] * (6 - len(buffers))))
    out = []
    for p in programs:
        asm = backend_for(target).emit(p, target, machine)
        native.run_x86_64(asm, symbol(p.name), buffers, isolate=True)  # a crash must not take this process down
        fn = native.x86_64_call(asm, symbol(p.name), buffers)
        out.append(ctypes.cast(fn.function, ctypes.c_void_p).value)
    return out, args, buffers


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", default="minilm")
    ap.add_argument("--seq", type=int, default=128)
    ap.add_argument("--target")
    ap.add_argument("--rounds", type=int, default=5)
    args = ap.parse_args()
    cpu = hostcpu.this_host()
    target = ALL_TARGETS[args.target or ("avx512" if "avx512f" in cpu.flags else "avx2")]
    machine = load_machine(cpu.uarch)
    lowered = lowered_for_cost(args.model, args.seq, 1, 0)
    backend = backend_for(target)
    groups: dict = {}
    for s in lowered.steps:
        if s.kernel is not None:
            groups.setdefault(canonical(s.kernel), []).append(s.kernel)
    pair, nothing = harness()
    no_args = (ctypes.c_void_p * 6)()
    barrier = pair(nothing, no_args, nothing, no_args, 20000)  # nothing on either thread: the handoff alone
    rows = []
    for members in groups.values():
        kernel = members[0]
        split = split_cost(kernel, target, machine, 2)
        if len(split.chunks) != 2:
            continue
        (whole,), args_whole, keep_whole = calls([backend.select(kernel, target, machine)], target, machine)
        (a, b), args_ab, keep_ab = calls([backend.select(c, target, machine) for c in split.chunks], target, machine)
        one = two = float("inf")
        for _ in range(args.rounds):  # rounds alternate, so a slow spell of a shared host spoils both alike
            one = min(one, pair(whole, args_whole, None, None, 3))
            two = min(two, pair(a, args_ab, b, args_ab, 3) - barrier)
        alone = backend.cost(backend.select(kernel, target, machine), machine)
        rows.append((kernel.name, len(members), one, two, alone.cycles / split.cost.cycles))
    ghz = hostcpu.clock_now()
    print(f"host: {cpu.name}, {cpu.core} -> {machine.name}; {target.name}; clock {ghz:.2f} GHz; "
          f"barrier {barrier * 1e6:.1f} us taken off each 2-core call")
    print(f"{'kernel':<22} {'calls':>5} {'1 core us':>10} {'2 cores us':>11} {'measured':>9} {'predicted':>10}")
    for name, n, one, two, predicted in sorted(rows, key=lambda r: -r[1] * r[2]):
        print(f"{name:<22} {n:5d} {one * 1e6:10.1f} {two * 1e6:11.1f} {one / two:8.2f}x {predicted:9.2f}x")
    one = sum(n * o for _, n, o, _, _ in rows)
    two = sum(n * t for _, n, _, t, _ in rows)
    expected = sum(n * o / p for _, n, o, _, p in rows)  # each kernel's 1-core time over its predicted speed-up
    print(f"the split kernels together: measured {one / two:.2f}x, predicted {one / expected:.2f}x "
          "(each kernel's predicted speed-up, weighted by its measured one-core time)")


if __name__ == "__main__":
    main()
