"""Predicted against measured, and against PyTorch: every emitted x86-64 kernel (scalar, AVX2, AVX-512 where
the host has it) timed natively by `isasim host` (engine/host.py: the host's core and nearest uarch, its clock
measured, each kernel warm, in rounds, at the clock measured around it), then the GEMMs next to PyTorch's one-thread `F.linear` on
the same shapes, and the SIMD-over-scalar speed-up predicted against measured.

    .venv/bin/python benchmarks/native_speed.py [--model minilm] [--seq 128] [--uarch zen4] [--target T ...]
"""

from __future__ import annotations

import argparse

import numpy as np

from isasim import api
from isasim.engine.host import best_of
from isasim.lowering.pipeline import lower_graph
from isasim.models import capture, registry


def gemm_shapes(lowered) -> list[tuple]:
    """(first node's name, output shape, kernel) of each distinct linear layer: the same output shape with
    another reduction length (the feed-forward's down-projection against the attention's) is another one."""
    out, seen = [], set()
    for step in lowered.steps:
        if step.kernel is not None and step.kernel.op in ("aten.linear.default", "aten.addmm.default"):
            key = (step.kernel.op, step.node.out.shape, step.kernel.phases[0].extent)
            if key not in seen:
                seen.add(key)
                out.append((step.node.name, step.node.out.shape, step.kernel))
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="minilm")
    ap.add_argument("--seq", type=int, default=128)
    ap.add_argument("--uarch", help="the uarch to predict with (default: the nearest to this host)")
    ap.add_argument("--target", action="append", help="x86-64 targets (default: those this host runs)")
    args = ap.parse_args()
    import torch

    torch.set_num_threads(1)
    report = api.host(args.model, args.target, args.uarch, seq=args.seq)
    h = report.host
    print(f"host: {h['name']}, {h['core']}; predicted on {h['uarch']} ({h['why']}); clock {h['clock']['ghz']:.2f} "
          f"GHz measured, /proc/cpuinfo {h['clock']['reported_ghz']} GHz; vector FMA {h['clock']['fma_per_cycle']} per "
          f"cycle measured, {h['clock']['fma_described']} described")
    results = {}
    for t in report.targets:
        per = {k.name: k for k in t.kernels}
        results[t.target] = per
        print(f"  {t.target} on {t.uarch}: median error {t.median_error:.0%}, time-weighted {t.weighted_error:.0%}, "
              f"forward measured/predicted {t.forward_ratio:.2f}")
    lowered = lower_graph(capture.capture(registry.resolve(args.model), args.seq, 1).graph)

    print("\nGEMMs against PyTorch F.linear (one thread, same shapes, bias included):")
    print(f"{'shape (MxNxK)':<16} {'PyTorch':>9} " + " ".join(f"{n:>18}" for n in results))
    gemm_pred = {n: 0.0 for n in results}
    gemm_meas = {n: 0.0 for n in results}
    for name, shape, kernel in gemm_shapes(lowered):
        m, n = int(np.prod(shape[:-1])), shape[-1]
        kdim = kernel.phases[0].extent  # the reduction over k
        x, w, b = torch.randn(m, kdim), torch.randn(n, kdim), torch.randn(n)
        torch_t = best_of(lambda: torch.nn.functional.linear(x, w, b), 20)
        cells = []
        for target, per in results.items():
            k = per[name]
            gemm_pred[target] += k.predicted_s * k.calls
            gemm_meas[target] += k.measured_s * k.calls
            cells.append(f"{k.measured_s * 1e3:7.3f}ms ({torch_t / k.measured_s:5.1%})")
        print(f"{m}x{n}x{kdim:<10} {torch_t * 1e3:7.3f}ms " + " ".join(f"{c:>18}" for c in cells))
    print("  (percentage: PyTorch's time / ours, i.e. the fraction of PyTorch's speed reached)")

    forward = {t.target: (sum(k.predicted_s * k.calls for k in t.kernels), sum(k.measured_s * k.calls for k in t.kernels))
               for t in report.targets}
    if "x86-64" in results:
        print("\nSpeed-up over scalar x86-64, predicted vs measured:")
        for name in results:
            if name == "x86-64":
                continue
            gp, gm = gemm_pred["x86-64"] / gemm_pred[name], gemm_meas["x86-64"] / gemm_meas[name]
            fp, fm = forward["x86-64"][0] / forward[name][0], forward["x86-64"][1] / forward[name][1]
            print(f"  {name}: GEMMs predicted {gp:5.1f}x measured {gm:5.1f}x ({gm / gp - 1:+.0%}); "
                  f"whole forward predicted {fp:5.1f}x measured {fm:5.1f}x ({fm / fp - 1:+.0%})")
    for name, (p, m) in forward.items():
        print(f"  {name} forward: predicted {p * 1e3:.1f} ms, measured {m * 1e3:.1f} ms (sum of its kernels)")


if __name__ == "__main__":
    main()
