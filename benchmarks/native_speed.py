"""Predicted against measured: isasim's cycles for each emitted x86-64 kernel (scalar, AVX2, AVX-512 where
the host has it) next to the wall time of that machine code on this host, next to PyTorch (one thread) on
the GEMMs, and the SIMD-over-scalar speed-up predicted against measured, for the GEMMs and the whole forward.

    .venv/bin/python benchmarks/native_speed.py [--model minilm] [--seq 128] [--uarch zen4] [--target T ...]

The prediction is converted to time at the host's clock as /proc/cpuinfo reports it (turbo and frequency
scaling make that approximate). Kernels run in-process (no fork), best of several calls, warm caches; the
ctypes call overhead, measured on the smallest kernel, is taken off each time.
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
from isasim.isa.native import host_supports, run_x86_64
from isasim.isa.targets import TARGETS
from isasim.backends import backend_for
from isasim.lowering.pipeline import lower_graph
from isasim.models import capture, registry

SKIP = ("arange", "new_ones", "zeros", "ge")  # mask set-up kernels of a few hundred bytes


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


def call_overhead(lowered, target) -> float:
    tiny = min(lowered.kernels, key=lambda k: sum(b.size for b in k.buffers))
    prog = backend_for(target).select(tiny, target)
    bufs = [np.zeros(b.size, b.dtype.numpy) for b in prog.buffers]
    asm, sym = emit(prog, target), symbol(prog.name)
    run_x86_64(asm, sym, bufs, isolate=False)
    return best_of(lambda: run_x86_64(asm, sym, bufs, isolate=False), 20)


def measure_target(lowered, target, uarch, ghz: float) -> dict:
    """Per distinct (op, shape): predicted and measured seconds; and the forward's totals."""
    overhead = call_overhead(lowered, target)
    per: dict = {}
    total_pred = total_meas = 0.0
    print(f"\n{target.name}: predictions for {uarch.name}; call overhead {overhead * 1e3:.3f} ms (subtracted)")
    print(f"{'kernel':<16} {'op':<22} {'shape':<14} {'predicted':>10} {'measured':>10} {'meas/pred':>9} bound")
    for step in lowered.steps:
        k = step.kernel
        if k is None or k.op.split(".")[1] in SKIP:
            continue
        key = (k.op, step.node.out.shape)
        if key not in per:
            program = backend_for(target).select(k, target)
            c = cost_program(program, uarch)
            buffers = [np.zeros(b.size, b.dtype.numpy) if b.is_output else np.ones(b.size, b.dtype.numpy)
                       for b in program.buffers]
            asm, sym = emit(program, target), symbol(program.name)
            run_x86_64(asm, sym, buffers, isolate=False)  # build and warm up
            measured = max(best_of(lambda: run_x86_64(asm, sym, buffers, isolate=False), 3) - overhead, 1e-9)
            per[key] = (c.cycles / (ghz * 1e9), measured, step.node.name)
            print(f"{step.node.name:<16} {k.op.removeprefix('aten.'):<22} "
                  f"{'x'.join(map(str, step.node.out.shape)):<14} {per[key][0] * 1e3:8.3f}ms "
                  f"{measured * 1e3:8.3f}ms {measured / per[key][0]:9.2f} {c.bound}")
        total_pred += per[key][0]
        total_meas += per[key][1]
    return {"per": per, "forward": (total_pred, total_meas)}


def gemm_shapes(lowered) -> list[tuple]:
    out = []
    for step in lowered.steps:
        if step.kernel is not None and step.kernel.op in ("aten.linear.default", "aten.addmm.default"):
            key = (step.kernel.op, step.node.out.shape)
            if key not in [o[0] for o in out]:
                out.append((key, step.kernel))
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="minilm")
    ap.add_argument("--seq", type=int, default=128)
    ap.add_argument("--uarch", default="zen4")
    ap.add_argument("--target", action="append", help="x86-64 targets (default: x86-64, avx2, avx512)")
    args = ap.parse_args()
    import torch

    torch.set_num_threads(1)
    uarch, ghz = load_uarch(args.uarch), host_ghz()
    cap = capture.capture(registry.resolve(args.model), args.seq, 1, with_values=True)
    lowered = lower_graph(cap.graph)
    print(f"host {ghz:.2f} GHz ({args.model}, seq {args.seq})")
    results = {}
    for name in args.target or ["x86-64", "avx2", "avx512"]:
        t = TARGETS[name]
        if not host_supports(t.isa, t.host_features):
            print(f"\n{name}: skipped: this CPU lacks {', '.join(t.host_features)}")
            continue
        results[name] = measure_target(lowered, t, uarch, ghz)

    print("\nGEMMs against PyTorch F.linear (one thread, same shapes, bias included):")
    print(f"{'shape (MxNxK)':<16} {'PyTorch':>9} " + " ".join(f"{n:>18}" for n in results))
    gemm_pred = {n: 0.0 for n in results}
    gemm_meas = {n: 0.0 for n in results}
    for (op, shape), kernel in gemm_shapes(lowered):
        m, n = int(np.prod(shape[:-1])), shape[-1]
        kdim = kernel.phases[0].extent  # the reduction over k
        x, w, b = torch.randn(m, kdim), torch.randn(n, kdim), torch.randn(n)
        torch_t = best_of(lambda: torch.nn.functional.linear(x, w, b), 20)
        cells = []
        for name, res in results.items():
            pred, meas, _ = res["per"][(op, shape)]
            count = sum(1 for s in lowered.steps if s.kernel is not None and (s.kernel.op, s.node.out.shape) == (op, shape))
            gemm_pred[name] += pred * count
            gemm_meas[name] += meas * count
            cells.append(f"{meas * 1e3:7.3f}ms ({torch_t / meas:5.1%})")
        print(f"{m}x{n}x{kdim:<10} {torch_t * 1e3:7.3f}ms " + " ".join(f"{c:>18}" for c in cells))
    print("  (percentage: PyTorch's time / ours, i.e. the fraction of PyTorch's speed reached)")

    if "x86-64" in results:
        base = results["x86-64"]
        print("\nSpeed-up over scalar x86-64, predicted vs measured:")
        for name, res in results.items():
            if name == "x86-64":
                continue
            gp, gm = gemm_pred["x86-64"] / gemm_pred[name], gemm_meas["x86-64"] / gemm_meas[name]
            fp = base["forward"][0] / res["forward"][0]
            fm = base["forward"][1] / res["forward"][1]
            print(f"  {name}: GEMMs predicted {gp:5.1f}x measured {gm:5.1f}x ({gm / gp - 1:+.0%}); "
                  f"whole forward predicted {fp:5.1f}x measured {fm:5.1f}x ({fm / fp - 1:+.0%})")
    for name, res in results.items():
        p, m = res["forward"]
        print(f"  {name} forward: predicted {p * 1e3:.1f} ms, measured {m * 1e3:.1f} ms (sum of its kernels)")


if __name__ == "__main__":
    main()
