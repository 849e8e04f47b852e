"""The SIMT model on BERT, next to the roofline and published GPU numbers (prints figures; asserts nothing).

    .venv/bin/python benchmarks/gpu_bert.py            # batch 1 and 128, both GPUs, and the seq sweep
    .venv/bin/python benchmarks/gpu_bert.py --quick    # batch 1 only, no sweep


1. bert-base at seq 128, batch 1 and batch 128: isasim's predicted forward time (every kernel, launches
   included) next to the roofline bound for the whole forward - max(FLOPs / FP32 peak, weight bytes / DRAM
   bandwidth) - and next to TensorRT's published FP16 times on an A100-40GB (NVIDIA/TensorRT demo/BERT
   README: 0.67 ms at batch 1, 16.14 ms at batch 128). isasim runs FP32 on CUDA cores; TensorRT FP16 on
   tensor cores, whose peak is 16x the FP32 CUDA-core peak on an A100 (312 against 19.5 TFLOP/s), so a
   compute-bound forward should come out at least ~16x slower than TensorRT's, while a launch- and
   latency-bound one (batch 1) should be much closer.
2. A sweep over sequence lengths: for each op family, the bound that decides most of its cycles and its
   FLOPs per DRAM byte, showing where each kernel moves from memory- (or latency-) bound to compute-bound.
3. bert-base in fp16 on the A100's tensor cores (--precision fp16: every activation in fp16, the GEMMs on
   tensor cores) next to TensorRT's FP16 times, with a row per remaining cause of the gap: the linear layers
   against the tensor peak, each op family TensorRT fuses away, and the kernel launches.
4. bert-base in int8 (--precision int8: mma.m16n8k32 .s8, the activations quantized at run time) next to
   TensorRT's INT8 time at batch 1 (0.58 ms, the same README), with the same rows and the quantize ops'.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections import defaultdict

from isasim.engine.compare import family
from isasim.engine.graphs import in_precision
from isasim.engine.trace import trace
from isasim.isa.dtype import DType
from isasim.isa.gpu import load_gpu
from isasim.isa.targets import GPU_TARGETS
from isasim.lowering.pipeline import lower_graph
from isasim.models import capture, registry

TENSORRT_FP16_MS = {1: 0.67, 128: 16.14}  # bert-base seq 128 on A100-40GB, NVIDIA/TensorRT demo/BERT README
TENSORRT_INT8_MS = {1: 0.58}  # the same README's INT8 row, batch 1
GOAL = 1.5  # the fp16 prediction at batch 128 within this factor of TensorRT's


def forward(model: str, seq: int, batch: int, gpu: str, precision: str = "fp32"):
    graph = in_precision(capture.capture(registry.resolve(model), seq, batch).graph, precision)
    start = time.perf_counter()
    report = trace(lower_graph(graph), [(GPU_TARGETS["simt"], load_gpu(gpu))])
    return report, time.perf_counter() - start


def roofline_ms(report, gpu) -> tuple[float, float]:
    """(compute bound, weight-traffic bound) in ms: FLOPs at the FP32 FMA peak; every weight read once."""
    peak = 2 * gpu.fp32_lanes() * gpu.sms * gpu.clock_ghz * 1e9
    return report.flops / peak * 1e3, report.params * 4 / (gpu.dram_gb_per_s * 1e9) * 1e3


def headline(batches: list[int]) -> None:
    print("## bert-base seq 128: predicted forward time on the SIMT model\n")
    print("| GPU | batch | kernels | isasim (ms) | of which launch (ms) | roofline FP32 (ms) | weights at DRAM "
          "bandwidth (ms) | TensorRT FP16 (ms) | isasim / TensorRT | deciding bounds | costed in (s) |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for gpu_name in ("a100", "h100"):
        gpu = load_gpu(gpu_name)
        for batch in batches:
            report, took = forward("bert-base", 128, batch, gpu_name)
            t = report.targets[0]
            ms = t.seconds * 1e3
            launch = len(t.ops) * gpu.launch_overhead_us / 1e3
            compute, weights = roofline_ms(report, gpu)
            trt = TENSORRT_FP16_MS.get(batch) if gpu_name == "a100" else None
            bounds = ", ".join(f"{k} {v / t.cycles:.0%}" for k, v in sorted(t.bounds.items(), key=lambda kv: -kv[1])
                               if v / t.cycles >= 0.02)
            print(f"| {gpu_name} | {batch} | {len(t.ops)} | {ms:.2f} | {launch:.2f} | {compute:.2f} | {weights:.2f} | "
                  f"{trt if trt else '-'} | {f'{ms / trt:.1f}x' if trt else '-'} | {bounds} | {took:.0f} |")
            sys.stdout.flush()


def sweep(seqs: list[int]) -> None:
    gpu = load_gpu("a100")
    print("\n## Sweep on a100, bert-base batch 1: per op family, the bound deciding most of its cycles "
          "(and FLOPs per DRAM byte)\n")
    rows: dict[str, dict[int, str]] = defaultdict(dict)
    for seq in seqs:
        report, _ = forward("bert-base", seq, 1, "a100")
        by_family: dict[str, dict] = defaultdict(lambda: {"bounds": defaultdict(float), "fp": 0, "dram": 0})
        for op in report.targets[0].ops:
            f = by_family[family(op.op)]
            f["bounds"][op.bound.label] += op.cycles
            f["fp"] += op.fp_ops
            f["dram"] += op.bytes["dram"]
        for fam, f in by_family.items():
            bound = max(f["bounds"].items(), key=lambda kv: kv[1])[0]
            rows[fam][seq] = f"{bound} ({f['fp'] / max(f['dram'], 1):.1f})"
        print(f"seq {seq}: {report.targets[0].seconds * 1e3:.2f} ms", file=sys.stderr)
    print("| op family | " + " | ".join(f"seq {s}" for s in seqs) + " |")
    print("|---|" + "---|" * len(seqs))
    for fam in sorted(rows):
        print(f"| {fam} | " + " | ".join(rows[fam].get(s, "-") for s in seqs) + " |")
    print(f"\nA100 ridge point: {2 * gpu.fp32_lanes() * gpu.sms / gpu.dram_bytes_per_cycle:.1f} FLOP per DRAM "
          "byte (FP32 FMA peak over DRAM bandwidth); 'latency' means too few warps to hide memory latency, "
          "'launch' that the kernel is shorter than its launch overhead.")


def precision_gap(batches: list[int], precision: str = "fp16") -> None:
    """--precision fp16 or int8 on the A100 next to TensorRT's, and a row per cause of what is left."""
    gpu = load_gpu("a100")
    name, published = {"fp16": ("FP16", TENSORRT_FP16_MS), "int8": ("INT8", TENSORRT_INT8_MS)}[precision]
    print(f"\n## bert-base seq 128 in {precision} (tensor cores) on a100, next to TensorRT {name}\n")
    print(f"| batch | isasim {precision} (ms) | TensorRT {name} (ms) | isasim / TensorRT |")
    print("|---|---|---|---|")
    causes = {}
    for batch in batches:
        report, _ = forward("bert-base", 128, batch, "a100", precision)
        t = report.targets[0]
        ms = t.seconds * 1e3
        trt = published.get(batch)
        print(f"| {batch} | {ms:.2f} | {trt or '-'} | {f'{ms / trt:.2f}x' if trt else '-'} |")
        sys.stdout.flush()
        if precision == "fp16" and batch == 128:
            goal = "met" if ms / trt <= GOAL else "not met"
            print(f"\n(issue 15's goal, within {GOAL}x of TensorRT at batch 128 in fp16: {ms / trt:.2f}x, {goal})\n")
        by_family: dict[str, float] = defaultdict(float)
        for op in t.ops:
            by_family[family(op.op)] += op.cycles / (gpu.clock_ghz * 1e6)
        gemm_flops = sum(op.flops for op in t.ops if family(op.op) == "GEMM")
        causes[batch] = (by_family, gemm_flops, len(t.ops))
    for batch, (by_family, gemm_flops, kernels) in causes.items():
        launch = kernels * gpu.launch_overhead_us / 1e3
        dtype = DType.I8 if precision == "int8" else DType.F16
        peak = gpu.peak_ops_per_cycle(GPU_TARGETS["simt"].peak_unit(dtype)) * gpu.clock_ghz * 1e9  # a100.toml
        at_peak = gemm_flops / peak * 1e3
        print(f"\nWhere the time goes at batch {batch} (ms, launch overhead included per kernel):\n")
        print("| cause | ms |")
        print("|---|---|")
        print(f"| linear layers on tensor cores (mma.sync, a 3-stage cp.async pipeline, ldmatrix fragments; "
              f"TensorRT: fused bias and activation epilogues) | {by_family['GEMM']:.2f} |")
        print(f"| ... the same operations at the dense {name} tensor peak, {peak / 1e12:.0f} T/s | {at_peak:.2f} |")
        rest = {f: v for f, v in by_family.items() if f != "GEMM" and v > 0}
        for fam, v in sorted(rest.items(), key=lambda kv: -kv[1]):
            print(f"| {_cause(fam, precision)} | {v:.2f} |")
        print(f"| of all the above: {kernels} kernel launches at {gpu.launch_overhead_us} us (TensorRT fuses "
              f"elementwise chains into the GEMMs' epilogues and runs far fewer) | {launch:.2f} |")


def _cause(family_name: str, precision: str) -> str:
    """What a family of kernels is, in `precision`, next to what TensorRT runs instead."""
    if family_name == "quantize":
        return "the activations' min/max and rounding to bytes, a kernel each (TensorRT: calibrated offline, fused)"
    if precision == "fp16" and family_name == "attention matmuls":
        return "attention matmuls on tensor cores, a kernel each (TensorRT: one fused attention kernel)"
    if precision == "fp16":
        return (f"{family_name}: fp16 in memory, float32 arithmetic on CUDA cores, a kernel each (TensorRT: "
                f"fused into its neighbours)")
    return f"{family_name} in float32 on CUDA cores (TensorRT: fp16, fused)"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="batch 1 only, no sweep")
    args = parser.parse_args()
    headline([1] if args.quick else [1, 128])
    precision_gap([1] if args.quick else [1, 128], "fp16")
    precision_gap([1] if args.quick else [1, 128], "int8")
    if not args.quick:
        sweep([32, 64, 128, 256, 384, 512])


if __name__ == "__main__":
    main()
