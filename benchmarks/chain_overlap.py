"""How far does a core overlap the dependency chains of independent outputs? Scalar x86-64 GEMMs of one chain
length K each (one accumulator per output, K dependent FMAs), timed natively next to isasim's prediction
(no asserts: this is not a test; it prints what it measures).

    .venv/bin/python benchmarks/chain_overlap.py                  # predicted on this host's nearest core
    .venv/bin/python benchmarks/chain_overlap.py --uarch zen3

Why: the scalar attention P.V (K = 128) measured 0.72 of its prediction on the Zen 5 host, Q.K^T (K = 32)
0.91, the linear layers (K = 384, 1536) 0.86-0.97, when the model let the chains of successive outputs
overlap only where a whole output fitted the reorder buffer. The sweep showed the core overlapping at every
length, 1 + W / U chains at once, which isa/cost.py `_overlap` now models. This sweeps K over a wide range,
in both layouts BERT has: `linear` reads B along k (x @ W^T: Q.K^T and the linear layers), `mm` reads B down a
column (P.V: a row pitch of N floats). Each row prints the cycles per FMA measured and predicted; 4 cycles
per FMA is a chain that nothing overlaps, 0.5 the FMA pipes' limit.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from check_speed import host  # noqa: E402  (the same host line in every benchmark)

from isasim.backends import backend_for, load_machine  # noqa: E402
from isasim.engine.host import best_of  # noqa: E402
from isasim.isa import native  # noqa: E402
from isasim.isa.dtype import DType  # noqa: E402
from isasim.isa.emit import symbol  # noqa: E402
from isasim.isa.hostcpu import clock_now, this_host  # noqa: E402
from isasim.isa.targets import ALL_TARGETS  # noqa: E402
from isasim.lowering.pipeline import lower_graph  # noqa: E402
from isasim.models.graph import Graph, Node, Placeholder, PlaceholderKind, Ref, TensorMeta  # noqa: E402

KS = (4, 8, 16, 24, 32, 48, 64, 96, 128, 192, 256, 384, 768, 1536)
FMAS = 1 << 21  # per kernel: about 2 ms of a 4-cycle chain at 4 GHz


def gemm(layout: str, k: int):
    """A one-node graph: out[M, N] = A[M, K] @ B, B given as W[N, K] (`linear`) or [K, N] (`mm`), M = N."""
    side = max(4, int((FMAS / k) ** 0.5))
    a = TensorMeta((side, k), DType.F32)
    b = TensorMeta((side, k) if layout == "linear" else (k, side), DType.F32)
    ph = (Placeholder("a", PlaceholderKind.INPUT, a, "a"), Placeholder("b", PlaceholderKind.INPUT, b, "b"))
    op = "aten.linear.default" if layout == "linear" else "aten.mm.default"
    node = Node("out", op, (Ref("a"), Ref("b")), (), (TensorMeta((side, side), DType.F32),), "bench")
    return Graph("bench", ph, (node,), (Ref("out"),), {}, {}), side


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--uarch", default=None, help="the core to predict on (default: the host's nearest)")
    ap.add_argument("--repeat", type=int, default=10, help="timed calls per kernel (the fastest counts)")
    a = ap.parse_args()
    print(f"host: {host()}")
    if not native.can_run("x86-64"):
        sys.exit("chain_overlap.py times x86-64 machine code natively: this host cannot run it")
    target, machine = ALL_TARGETS["x86-64"], load_machine(a.uarch or this_host().uarch)
    backend = backend_for(target)
    print(f"x86-64 on {machine.name}: cycles per FMA, measured and predicted (reorder buffer "
          f"{machine.reorder_buffer}, scheduler {machine.scheduler})")
    print(f"{'layout':>7} {'K':>5} {'M=N':>5} {'measured':>9} {'predicted':>10} {'meas/pred':>9}")
    for layout in ("linear", "mm"):
        for k in KS:
            graph, side = gemm(layout, k)
            (kernel,) = lower_graph(graph).kernels
            program = backend.select(kernel, target, machine)
            asm, sym = backend.emit(program, target, machine), symbol(program.name)
            buffers = [native.aligned(b.size, b.dtype.numpy, 0 if b.is_output else 1) for b in program.buffers]
            native.run_x86_64(asm, sym, buffers, isolate=True)  # a crash stops here, not us
            call = native.x86_64_call(asm, sym, buffers)
            call()
            ghz = clock_now()
            fmas = side * side * k
            measured = best_of(call, a.repeat) * ghz * 1e9 / fmas
            predicted = backend.cost(program, machine).cycles / fmas
            print(f"{layout:>7} {k:>5} {side:>5} {measured:>9.2f} {predicted:>10.2f} {measured / predicted:>9.2f}")


if __name__ == "__main__":
    main()
