"""Which loop order should a float32 GEMM take on this core? Each linear layer of a model selected twice for
the host's core: blocked for the core's own L1 and L2 (what isasim selects) and for the ISA's smallest
described caches (what it selected before 2026-12-01). Where the two programs differ, both are called
alternately in one process, warm, best of --repeat rounds, and printed with their predictions (no asserts:
this is not a test; it prints what it measures).

    .venv/bin/python benchmarks/gemm_order.py                      # minilm, avx2 and avx512 (where present)
    .venv/bin/python benchmarks/gemm_order.py --model bert-base --uarch zen5

Why: lowering/isel_gemm.py keeps B's micro-panel (NR columns x K) in L1 where it fits three quarters of it.
A 48 KB L1 (Sapphire Rapids, Zen 5) holds the 36 KB panel of minilm's 128x384x1536 layer; a 32 KB one does not.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from check_speed import host  # noqa: E402  (the same host line in every benchmark)

from isasim.backends import backend_for, load_machine  # noqa: E402
from isasim.engine.graphs import lowered_for_cost  # noqa: E402
from isasim.engine.host import best_of  # noqa: E402
from isasim.isa import native  # noqa: E402
from isasim.isa.emit import symbol  # noqa: E402
from isasim.isa.hostcpu import clock_now, this_host  # noqa: E402
from isasim.isa.targets import ALL_TARGETS  # noqa: E402
from isasim.lowering.isel_gemm import smallest_caches  # noqa: E402
from isasim.lowering.kernel import canonical  # noqa: E402
from isasim.lowering.select import select_vector  # noqa: E402


def timer(program, target, machine):
    backend = backend_for(target)
    buffers = [native.aligned(b.size, b.dtype.numpy, 0 if b.is_output else 1) for b in program.buffers]
    asm, sym = backend.emit(program, target, machine), symbol(program.name)
    native.run_x86_64(asm, sym, buffers, isolate=True)  # a crash stops here, not us
    return native.x86_64_call(asm, sym, buffers)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="minilm")
    ap.add_argument("--uarch", default=None, help="the core to select for (default: the host's nearest)")
    ap.add_argument("--target", action="append", help="avx2, avx512 (default: those the host runs)")
    ap.add_argument("--repeat", type=int, default=10, help="rounds of three calls of each in turn (the fastest counts)")
    a = ap.parse_args()
    print(f"host: {host()}")
    core = this_host()
    machine = load_machine(a.uarch or core.uarch)
    sizes = machine.sizes()
    own = (sizes["l1"], sizes["l2"])
    targets = a.target or [t for t in ("avx2", "avx512") if native.can_run("x86-64", ALL_TARGETS[t].host_features)]
    lowered = lowered_for_cost(a.model, 128, 1, 0, False, None, "fp32")
    for name in targets:
        target = ALL_TARGETS[name]
        smallest = smallest_caches(target.isa)
        print(f"{name} on {machine.name}: own caches L1 {own[0] // 1024} KB, L2 {own[1] // 1024} KB; the ISA's "
              f"smallest L1 {smallest[0] // 1024} KB, L2 {smallest[1] // 1024} KB")
        seen = set()
        for step in lowered.steps:
            k = step.kernel
            if k is None or k.op != "aten.linear.default" or canonical(k) in seen:
                continue  # (the same layer in every encoder layer: once)
            seen.add(canonical(k))
            mine = select_vector(k, target, machine.features, own)
            old = select_vector(k, target, machine.features, smallest)
            if mine == old:
                print(f"  {k.name}: the same program either way")
                continue
            backend = backend_for(target)
            calls = [timer(p, target, machine) for p in (mine, old)]
            best = [float("inf"), float("inf")]
            ghz = clock_now()
            for _ in range(a.repeat):
                for i, call in enumerate(calls):
                    best[i] = min(best[i], best_of(call, 3))
            cycles = [b * ghz * 1e9 for b in best]
            predicted = [backend.cost(p, machine).cycles for p in (mine, old)]
            print(f"  {k.name}: own caches {cycles[0]:,.0f} cycles (predicted {predicted[0]:,.0f}), smallest "
                  f"{cycles[1]:,.0f} ({predicted[1]:,.0f}): {cycles[1] / cycles[0]:.2f}x the old order's speed, at {ghz:.2f} GHz")


if __name__ == "__main__":
    main()
