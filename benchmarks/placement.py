"""Does where the buffers lie change a kernel's measured time? The same emitted machine code, called natively on
buffers carved from one page-aligned arena at chosen offsets (no asserts: this is not a test; it prints what
it measures).

    .venv/bin/python benchmarks/placement.py                         # minilm's attention P.V, avx512
    .venv/bin/python benchmarks/placement.py --op matmul --target avx2

Why: `isasim host` once measured minilm's AVX-512 P.V matmul (matmul_1) 1.21x its prediction in a one-layer
model and 1.68x in a six-layer one, with byte-identical machine code, shapes and buffer contents. The
suspects were L1 set conflicts (V is a head's strided view, a 1536-byte row pitch) and cache-line alignment.
Offsets that are multiples of 64 bytes measured 1.18-1.25x whatever they were (17 placements on the Zen 5
host), which clears the sets; V starting 16, 32 or 48 bytes into a line measured 1.67-1.80x: every 64-byte
load of its rows then spans two lines. numpy's arrays start 16 bytes into a line on this host, PyTorch's
tensors on one (c10's 64-byte alignment), so `isasim host` now times on aligned buffers (native.aligned).
Each placement here moves every buffer by a multiple of 16 bytes within a page and says which are aligned.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from statistics import median

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from check_speed import host  # noqa: E402  (the same host line in every benchmark)

from isasim.backends import backend_for, load_machine  # noqa: E402
from isasim.engine.graphs import lowered_for_cost  # noqa: E402
from isasim.engine.host import best_of  # noqa: E402
from isasim.isa import native  # noqa: E402
from isasim.isa.emit import symbol  # noqa: E402
from isasim.isa.hostcpu import clock_now  # noqa: E402
from isasim.isa.targets import ALL_TARGETS  # noqa: E402

PAGE = 4096


def carve(sizes: list[int], offsets: list[int], dtypes: list) -> list[np.ndarray]:
    """Buffers of these element counts, each starting `offsets[i]` bytes past a page boundary of its own region
    of one arena (regions a whole number of pages apart, so only the offsets differ between placements)."""
    nbytes = [n * np.dtype(t).itemsize for n, t in zip(sizes, dtypes)]
    spans = [-(-(b + o) // PAGE) * PAGE + PAGE for b, o in zip(nbytes, offsets)]
    arena = np.zeros(sum(spans) + PAGE, np.uint8)
    base = -arena.ctypes.data % PAGE
    out, at = [], base
    for b, o, span, t in zip(nbytes, offsets, spans, dtypes):
        out.append(arena[at + o:at + o + b].view(t))
        at += span
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="minilm")
    ap.add_argument("--op", default="matmul_1", help="the node whose kernel to time (default: attention's P.V)")
    ap.add_argument("--target", default="avx512")
    ap.add_argument("--uarch", default="zen5")
    ap.add_argument("--placements", type=int, default=24, help="random placements besides all-aligned")
    ap.add_argument("--repeat", type=int, default=20, help="timed calls per placement (the fastest counts)")
    a = ap.parse_args()
    print(f"host: {host()}")
    target, machine = ALL_TARGETS[a.target], load_machine(a.uarch)
    lowered = lowered_for_cost(a.model, 128, 1, 0, False, None, "fp32")
    step = next(s for s in lowered.steps if s.kernel is not None and s.node.name == a.op)
    backend = backend_for(target)
    program = backend.select(step.kernel, target, machine)
    asm, sym = backend.emit(program, target, machine), symbol(program.name)
    predicted = backend.cost(program, machine).cycles
    sizes = [b.size for b in program.buffers]
    dtypes = [b.dtype.numpy for b in program.buffers]
    rng = np.random.default_rng(0)
    placements = [[0] * len(sizes)] + [list(rng.integers(0, PAGE // 16, len(sizes)) * 16)
                                       for _ in range(a.placements)]
    native.run_x86_64(asm, sym, carve(sizes, placements[0], dtypes), isolate=True)  # a crash stops here, not us
    print(f"{a.model} {a.op} on {a.target}/{a.uarch}: buffers {', '.join(b.name for b in program.buffers)}; "
          f"predicted {predicted:,.0f} cycles")
    ratios = []
    for offsets in placements:
        buffers = carve(sizes, offsets, dtypes)
        for b in buffers:
            b[...] = 1
        call = native.x86_64_call(asm, sym, buffers)
        call()
        ghz = clock_now()
        cycles = best_of(call, a.repeat) * ghz * 1e9
        aligned = tuple(o % 64 == 0 for o in offsets)
        ratios.append((aligned, cycles / predicted))
        print(f"  offsets {', '.join(f'{o:4d}' for o in offsets)} B "
              f"({', '.join('line' if x else 'split' for x in aligned)}): {cycles:,.0f} cycles at {ghz:.2f} GHz, "
              f"{cycles / predicted:.2f}x predicted")
    for label, keep in (("every buffer on a line", lambda x: all(x)), ("some buffer off a line", lambda x: not all(x))):
        chosen = [r for x, r in ratios if keep(x)]
        if chosen:
            print(f"{label}: measured / predicted over {len(chosen)} placements: min {min(chosen):.2f}, "
                  f"median {median(chosen):.2f}, max {max(chosen):.2f}")


if __name__ == "__main__":
    main()
