"""Predicted against measured, and against PyTorch: every emitted x86-64 kernel (scalar, AVX2, AVX-512 where
the host has it) timed natively by `isasim host` (engine/host.py: the host's core and nearest uarch, its clock
measured, each kernel warm, in rounds, at the clock measured around it), then the GEMMs next to PyTorch's one-thread `F.linear` on
the same shapes, and the SIMD-over-scalar speed-up predicted against measured.

    .venv/bin/python benchmarks/native_speed.py [--model minilm] [--seq 128] [--uarch zen4] [--target T ...]
                                                [--precision int8|bf16]

With `--precision int8` the int8 GEMMs are set against PyTorch's own dynamic quantization
(`torch.ao.quantization.quantize_dynamic` of an nn.Linear, one thread), which quantizes its input inside the
call: so each of ours counts its own kernel plus the three that quantize its input (min/max, parameters,
bytes). With `--precision bf16` they are set against a bf16 nn.Linear on a bf16 input (oneDNN, on AMX where
the CPU has it), and each of ours counts the kernel that rounds its input to bf16 too. bf16 needs a host with
AVX512-BF16 (or AMX for `--target amx`); elsewhere `isasim host` says which extension is missing.
"""

from __future__ import annotations

import argparse

import numpy as np

import warnings

from isasim import api
from isasim.engine.graphs import in_precision
from isasim.engine.host import best_of
from isasim.lowering.kernel import canonical
from isasim.lowering.pipeline import lower_graph
from isasim.models import capture, registry

GEMMS = ("aten.linear.default", "aten.addmm.default", "isasim.linear_int8", "isasim.linear_bf16")


def gemm_shapes(lowered) -> list[tuple]:
    """(first node's name, output shape, kernel) of each distinct linear layer: the same output shape with
    another reduction length (the feed-forward's down-projection against the attention's) is another one."""
    out, seen = [], set()
    for step in lowered.steps:
        if step.kernel is not None and step.kernel.op in GEMMS:
            key = (step.kernel.op, step.node.out.shape, step.kernel.phases[0].extent)
            if key not in seen:
                seen.add(key)
                out.append((step.node.name, step.node.out.shape, step.kernel))
    return out


def reduction_length(kernel) -> int:
    """K: the int8 GEMM reduces over K/4 words of four bytes, the bf16 one over K/2 pairs."""
    k = kernel.phases[0].extent
    return {"isasim.linear_int8": 4, "isasim.linear_bf16": 2}.get(kernel.op, 1) * k


def quantizing(lowered, name: str) -> list[str]:
    """The nodes that quantize the input of int8 linear `name`: its bytes, their parameters, the rows' min/max;
    of bf16 linear `name`: its rounding to bf16."""
    nodes = {s.node.name: s.node for s in lowered.steps}
    xq = nodes[name].args[0].name
    if nodes[name].op == "isasim.linear_bf16":
        return [xq]
    params = nodes[xq].args[1].name
    return [xq, params, nodes[params].args[0].name]


def torch_linear(k: int, n: int, precision: str):
    import torch

    lin = torch.nn.Linear(k, n)
    if precision == "fp32":
        return lin
    if precision == "bf16":
        lin = lin.to(torch.bfloat16)
        return lambda x: lin(x.to(torch.bfloat16))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return torch.ao.quantization.quantize_dynamic(torch.nn.Sequential(lin), {torch.nn.Linear},
                                                      dtype=torch.qint8)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="minilm")
    ap.add_argument("--seq", type=int, default=128)
    ap.add_argument("--uarch", help="the uarch to predict with (default: the nearest to this host)")
    ap.add_argument("--target", action="append", help="x86-64 targets (default: those this host runs)")
    ap.add_argument("--precision", choices=("fp32", "int8", "bf16"), default="fp32")
    args = ap.parse_args()
    import torch

    torch.set_num_threads(1)
    report = api.host(args.model, args.target, args.uarch, seq=args.seq, precision=args.precision)
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
    lowered = lower_graph(in_precision(capture.capture(registry.resolve(args.model), args.seq, 1).graph,
                                       args.precision))
    timed: dict = {}  # a kernel -> the name its group is timed under: its first node's (engine/host.py)
    for st in lowered.steps:
        if st.kernel is not None:
            timed.setdefault(canonical(st.kernel), st.node.name)
    int8 = args.precision != "fp32"  # ours count the kernels that quantize (int8) or round (bf16) their input
    print("\nGEMMs against PyTorch " + {"int8": "quantize_dynamic(nn.Linear), its input quantized inside the "
                                         "call; ours with the kernels that quantize its input",
                                         "bf16": "bf16 nn.Linear on a bf16 input; ours with the kernel that "
                                         "rounds its input", "fp32": "F.linear"}[args.precision]
          + " (one thread, same shapes, bias included):")
    print(f"{'shape (MxNxK)':<16} {'PyTorch':>9} " + " ".join(f"{n:>18}" for n in results))
    gemm_pred = {n: 0.0 for n in results}
    gemm_meas = {n: 0.0 for n in results}
    steps = {s.node.name: s for s in lowered.steps}
    for name, shape, kernel in gemm_shapes(lowered):
        m, n = int(np.prod(shape[:-1])), shape[-1]
        kdim = reduction_length(kernel)
        x, layer = torch.randn(m, kdim), torch_linear(kdim, n, args.precision)
        with torch.no_grad():
            torch_t = best_of(lambda: layer(x), 20)
        cells = []
        for target, per in results.items():
            k = per[name]
            gemm_pred[target] += k.predicted_s * k.calls
            gemm_meas[target] += k.measured_s * k.calls
            ours = k.measured_s + (sum(per[timed[canonical(steps[q].kernel)]].measured_s
                                       for q in quantizing(lowered, name)) if int8 else 0.0)
            cells.append(f"{ours * 1e3:7.3f}ms ({torch_t / ours:5.1%})")
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
    import sys

    from isasim.isa.errors import UserError

    try:
        main()
    except UserError as e:  # (this host lacks what the precision needs, say): one line, as the CLI says it
        sys.exit(f"native_speed: {e}")
