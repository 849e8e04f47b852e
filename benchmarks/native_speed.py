"""Predicted against measured: isasim's cycles for each emitted x86-64 kernel next to the wall time of that
machine code on this host, and next to PyTorch (one thread) on the same shapes.

    .venv/bin/python benchmarks/native_speed.py [--model minilm] [--seq 128] [--uarch zen4]

The prediction is converted to time at the host's clock as /proc/cpuinfo reports it (turbo and frequency
scaling make that approximate). Kernels run in-process (no fork), best of several calls, warm caches.
"""

from __future__ import annotations

import argparse
import re
import time
from pathlib import Path

import numpy as np

from isasim.isa.cost import cost_program
from isasim.isa.emit import emit, symbol
from isasim.isa.machine import load_uarch
from isasim.isa.native import run_x86_64
from isasim.isa.targets import TARGETS
from isasim.lowering.isel import select
from isasim.lowering.pipeline import lower_graph
from isasim.models import capture, registry


def host_ghz() -> float:
    mhz = re.findall(r"cpu MHz\s*:\s*([\d.]+)", Path("/proc/cpuinfo").read_text())
    return float(mhz[0]) / 1e3 if mhz else float("nan")


def best_of(fn, repeat: int) -> float:
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return min(times)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="minilm")
    ap.add_argument("--seq", type=int, default=128)
    ap.add_argument("--uarch", default="zen4")
    args = ap.parse_args()
    import torch

    torch.set_num_threads(1)
    uarch, target, ghz = load_uarch(args.uarch), TARGETS["x86-64"], host_ghz()
    cap = capture.capture(registry.resolve(args.model), args.seq, 1, with_values=True)
    lowered = lower_graph(cap.graph)
    seen = set()
    # the cost of calling through ctypes, measured on the smallest kernel (one store), taken off every time
    tiny = min(lowered.kernels, key=lambda k: sum(b.size for b in k.buffers))
    tiny_prog = select(tiny, target)
    tiny_bufs = [np.zeros(b.size, b.dtype.numpy) for b in tiny_prog.buffers]
    tiny_asm, tiny_sym = emit(tiny_prog, target), symbol(tiny_prog.name)
    run_x86_64(tiny_asm, tiny_sym, tiny_bufs, isolate=False)
    overhead = best_of(lambda: run_x86_64(tiny_asm, tiny_sym, tiny_bufs, isolate=False), 20)
    print(f"host {ghz:.2f} GHz; predictions for {uarch.name}; call overhead {overhead * 1e3:.3f} ms "
          f"(subtracted)")
    print(f"{'kernel':<16} {'op':<22} {'shape':<14} {'predicted':>10} {'measured':>10} {'meas/pred':>9} "
          f"{'bound':<10}")
    for step in lowered.steps:
        k = step.kernel
        if k is None or (k.op, step.node.out.shape) in seen or k.op.split(".")[1] in ("arange", "new_ones",
                                                                                      "zeros", "ge"):
            continue
        seen.add((k.op, step.node.out.shape))
        program = select(k, target)
        predicted = cost_program(program, uarch).cycles / (ghz * 1e9)
        buffers = [np.zeros(b.size, b.dtype.numpy) if b.is_output else np.ones(b.size, b.dtype.numpy)
                   for b in program.buffers]
        asm, sym = emit(program, target), symbol(program.name)
        run_x86_64(asm, sym, buffers, isolate=False)  # build and warm up
        measured = max(best_of(lambda: run_x86_64(asm, sym, buffers, isolate=False), 3) - overhead, 1e-9)
        print(f"{step.node.name:<16} {k.op.removeprefix('aten.'):<22} {'x'.join(map(str, step.node.out.shape)):<14} "
              f"{predicted * 1e3:8.3f}ms {measured * 1e3:8.3f}ms {measured / predicted:9.2f} "
              f"{cost_program(program, uarch).bound:<10}")
    x = torch.randn(args.seq, 384)
    w = torch.randn(384, 384)
    t = best_of(lambda: torch.nn.functional.linear(x, w), 20)
    print(f"\nPyTorch F.linear {args.seq}x384x384, one thread: {t * 1e3:.3f} ms (blocked SIMD GEMM)")


if __name__ == "__main__":
    main()
