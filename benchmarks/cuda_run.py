"""isasim's PTX on a real NVIDIA GPU: every distinct kernel of a model, run on the model's real buffers,
its outputs compared bit for bit with isasim's executor, and timed next to the cost model's prediction.

Two halves, because the GPU machine need not have isasim's dependencies (PyTorch, transformers, the weights):

    # here: lower the model for the simt target, execute it in isasim's executor, and write into DIR each
    # distinct kernel's PTX, its input buffers, the executor's outputs and the predicted time for the GPU
    .venv/bin/python benchmarks/cuda_run.py prepare DIR [--model minilm] [--seq 128] [--batch 1] [--gpu h200]
    # on the GPU machine (numpy and the CUDA driver only): load each PTX through the driver, run it, compare
    # the bits, time it with CUDA events; prints a table and writes DIR/result.json (or --json FILE)
    python3 benchmarks/cuda_run.py run DIR [--repeat 50]
    # shapes too large to execute here (bert-base at batch 128): carry no buffers, time on filled inputs
    .venv/bin/python benchmarks/cuda_run.py prepare DIR --model bert-base --batch 128 --timing-only

`run` refuses in one line where there is no driver or no GPU. Kernels are distinct by isasim's canonical form
(lowering/kernel.py: the same op in every layer is one kernel); each is run on the buffers of its first
instance in the forward, and weighs in the totals by its number of instances. A kernel whose buffers exceed
`--kernel-mb` is left out and named (the word-embedding gather reads the whole vocabulary table), so that DIR
stays small enough to carry to the GPU machine.

Timing, per kernel, after warm-up launches:
- measured: `repeat` launches back to back between two CUDA events, per launch: what a stream of kernels
  sees, launch gaps included, as the cost model's figure includes the launch overhead;
- alone: the fastest single launch between its own two events;
- in a graph: per kernel in a CUDA graph of `repeat` launches, without the host's launch calls;
- host call: the host's own time per launch call (ctypes and the driver): where it reaches `measured`, the
  stream was fed no faster than that, and `in a graph` is the GPU's time. Each
kernel re-reads inputs that its previous launch left in L2 (where they fit), where in a forward a layer's
weights come from DRAM once. The SM clock is measured on the GPU (benchmarks/cuda_driver.py), and the
prediction is shown at that clock as well as at the description's.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from cuda_driver import PROBES, Cuda, NoGpu, probe, sm_clock_ghz  # noqa: E402  (runs without isasim installed)

MIN_SHARE = 0.01  # kernels below this share of the predicted forward do not count in the median error


# ---- prepare (here) --------------------------------------------------------------------------------------
def prepare(model: str, seq: int, batch: int, gpu_name: str, outdir: Path, kernel_mb: float,
            timing_only: bool = False, precision: str = "fp32") -> dict:
    """Write DIR: each distinct kernel's PTX and launch, its predicted cycles on the GPU, and (unless
    timing_only) its input buffers from executing the model in isasim's executor, with the executor's outputs.
    timing_only: nothing is executed or carried; `run` fills float inputs with pseudo-random values in
    [-1, 1), integer ones with 0 (valid indices) and masks with true, and checks no bits (for sizes whose
    execution here would take hours: bert-base at batch 128)."""
    from isasim.backends import backend_for
    from isasim.engine.graphs import check_precision, in_precision
    from isasim.engine.run import run_graph
    from isasim.isa.emit_ptx import symbol
    from isasim.isa.gpu import load_gpu
    from isasim.isa.targets import GPU_TARGETS
    from isasim.lowering.kernel import canonical
    from isasim.lowering.pipeline import lower_graph
    from isasim.models import capture, registry

    check_precision(precision)
    outdir.mkdir(parents=True, exist_ok=True)
    target, gpu = GPU_TARGETS["simt"], load_gpu(gpu_name)
    target.features(precision)  # (refuses a precision the GPU target does not run)
    backend = backend_for(target)
    graph = capture.capture(registry.resolve(model), seq, batch, with_values=not timing_only).graph
    lowered = lower_graph(in_precision(graph, precision))
    first: dict = {}  # canonical kernel -> its entry in the manifest
    for step in lowered.steps:
        if step.kernel is not None:
            key = canonical(step.kernel)
            if key in first:
                first[key]["instances"] += 1
            else:
                first[key] = {"name": step.node.name, "op": step.node.op, "instances": 1}
    by_node = {e["name"]: e for e in first.values()}
    kernels = []

    def save(step, program, events=None):
        entry = by_node.get(step.node.name)
        if entry is None or program is None:
            return
        cost = backend.cost(program, gpu)
        entry.update(entry=symbol(program.name), grid=program.launch.grid, block=program.launch.block,
                     strategy=program.launch.strategy, bound=cost.bound.label, predicted_cycles=cost.cycles)
        size = sum(b.size * b.dtype.itemsize for b in program.buffers) / 2**20
        if not timing_only and size > kernel_mb:
            entry["skipped"] = f"its buffers hold {size:.0f} MiB, above --kernel-mb {kernel_mb:g}"
            kernels.append(entry)
            return
        i = len(kernels)
        (outdir / f"k{i:03d}.ptx").write_text(backend.emit(program, target, gpu))
        entry["ptx"] = f"k{i:03d}.ptx"
        entry["arguments"] = []
        for j, b in enumerate(program.buffers):
            arg = {"name": b.name, "role": "output" if b.is_output else "input", "dtype": b.dtype.numpy.str,
                   "elements": b.size}
            if not timing_only:
                np.save(outdir / f"k{i:03d}_{j}.npy", np.ascontiguousarray(live[b.name], b.dtype.numpy).reshape(-1))
                arg["file"] = f"k{i:03d}_{j}.npy"
            entry["arguments"].append(arg)
        kernels.append(entry)

    live: dict = {}
    if timing_only:
        for step in lowered.steps:
            if step.kernel is not None and step.node.name in by_node:
                save(step, backend.select(step.kernel, target, gpu))
    else:
        run_graph(lowered, target, on_step=save, machine=gpu, keep=(), live=live)
    manifest = {"model": model, "seq": seq, "batch": batch, "precision": precision, "gpu": gpu.name,
                "description": gpu.description,
                "ptx_target": gpu.ptx_target, "clock_ghz": gpu.clock_ghz, "checks_bits": not timing_only,
                "kernels": kernels}
    (outdir / "manifest.json").write_text(json.dumps(manifest, indent=1))
    return manifest


def filler(arg: dict) -> np.ndarray:
    """A timing-only input: floats pseudo-random in [-1, 1) (splitmix64 of the index, so the same on every
    numpy), integers 0, masks true."""
    dt, n = np.dtype(arg["dtype"]), arg["elements"]
    if dt.kind == "f":
        with np.errstate(over="ignore"):
            z = np.arange(n, dtype=np.uint64) * np.uint64(0x9E3779B97F4A7C15)
            z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
            z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        return ((z >> np.uint64(40)).astype(np.float32) / np.float32(2**23) - 1).astype(dt)
    return np.ones(n, dt) if dt.kind == "b" else np.zeros(n, dt)


# ---- run (on the GPU machine) ----------------------------------------------------------------------------
def run(outdir: Path, repeat: int) -> dict:
    manifest = json.loads((outdir / "manifest.json").read_text())
    cuda = Cuda()
    device = cuda.device()
    warm_clock = None
    rows = []
    for k in manifest["kernels"]:
        if "skipped" in k:
            rows.append({**k, "bits": "not run"})
            continue
        fn = cuda.function((outdir / k["ptx"]).read_text(), k["entry"])
        arrays = [np.load(outdir / a["file"]) if "file" in a else filler(a) for a in k["arguments"]]
        ptrs = [cuda.alloc(x.nbytes) for x in arrays]
        for a, x, p in zip(k["arguments"], arrays, ptrs):
            cuda.zero(p, x.nbytes) if a["role"] == "output" else cuda.upload(p, x)
        cuda.launch(fn, k["grid"], k["block"], ptrs)
        cuda.synchronize()
        differing, worst = 0, 0.0
        for a, x, p in zip(k["arguments"], arrays, ptrs):
            if a["role"] == "output" and "file" in a:
                got = cuda.download(p, np.empty_like(x))
                same = got.view(np.uint8).reshape(-1) == x.view(np.uint8).reshape(-1)
                if not same.all():
                    bad = ~(got == x) & ~(np.isnan(got) & np.isnan(x)) if got.dtype.kind == "f" else got != x
                    differing += int(bad.sum())
                    if got.dtype.kind == "f" and bad.any():
                        worst = max(worst, float(np.abs(got[bad].astype(np.float64) - x[bad]).max()))
        launch = cuda.launcher(fn, k["grid"], k["block"], ptrs)
        cuda.milliseconds(launch, 5)  # warm: the module loaded, the clock up, the inputs in L2
        if warm_clock is None:
            warm_clock = sm_clock_ghz(cuda, manifest["ptx_target"])
        ms = min(cuda.milliseconds(launch, repeat) for _ in range(3))
        alone = cuda.milliseconds(launch, repeat, each=True)
        graph = cuda.graph_milliseconds(fn, k["grid"], k["block"], ptrs, repeat)
        host = time.perf_counter()
        for _ in range(repeat):
            launch()
        host = (time.perf_counter() - host) / repeat
        cuda.synchronize()
        for p in ptrs:
            cuda.free(p)
        bits = "not checked" if not manifest["checks_bits"] else "identical" if not differing else \
            f"{differing} elements differ (max {worst:.3g})"
        rows.append({**k, "measured_us": ms * 1e3, "alone_us": alone * 1e3, "graph_us": graph * 1e3,
                     "host_call_us": host * 1e6, "bits": bits})
    clock = sm_clock_ghz(cuda, manifest["ptx_target"])
    result = summarise(manifest, rows, device, [warm_clock or clock, clock])
    result["probes"] = [probe(cuda, manifest["ptx_target"], ins, clock, device.sms) for ins in PROBES]
    return result


def summarise(manifest: dict, rows: list[dict], device, clocks: list[float]) -> dict:
    clock = statistics.mean(clocks)
    timed = [r for r in rows if "measured_us" in r]
    for r in timed:
        r["predicted_us"] = r["predicted_cycles"] / (manifest["clock_ghz"] * 1e3)
        r["predicted_us_at_measured_clock"] = r["predicted_cycles"] / (clock * 1e3)
        r["ratio"] = r["measured_us"] / r["predicted_us_at_measured_clock"]
    forward_pred = sum(r["instances"] * r["predicted_us_at_measured_clock"] for r in timed)
    forward_meas = sum(r["instances"] * r["measured_us"] for r in timed)
    big = [r for r in timed if r["instances"] * r["predicted_us_at_measured_clock"] >= MIN_SHARE * forward_pred]
    weighted = sum(r["instances"] * abs(r["measured_us"] - r["predicted_us_at_measured_clock"]) for r in timed)
    return {
        "host": {"gpu": device.name, "sms": device.sms, "compute_capability": device.compute_capability,
                 "peak_clock_ghz": device.peak_clock_ghz, "measured_clock_ghz": clocks},
        "model": manifest["model"], "seq": manifest["seq"], "batch": manifest["batch"], "uarch": manifest["gpu"],
        "precision": manifest.get("precision", "fp32"),
        "description_clock_ghz": manifest["clock_ghz"], "checks_bits": manifest["checks_bits"], "kernels": rows,
        "bit_identical": sum(r["bits"] == "identical" for r in rows), "run": len(timed),
        "not_run": [r["name"] for r in rows if "skipped" in r],
        "median_error": statistics.median(abs(r["ratio"] - 1) for r in big) if big else None,
        "weighted_error": weighted / forward_meas if forward_meas else None,
        "forward_ratio": forward_meas / forward_pred if forward_pred else None,
        "forward_measured_us": forward_meas, "forward_predicted_us": forward_pred,
    }


def show(result: dict) -> None:
    h = result["host"]
    print(f"{h['gpu']} ({h['sms']} SMs, compute capability {h['compute_capability']}): SM clock measured "
          f"{', '.join(f'{c:.3f}' for c in h['measured_clock_ghz'])} GHz (driver's peak {h['peak_clock_ghz']:.3f}); "
          f"predictions for {result['uarch']} (described at {result['description_clock_ghz']} GHz), shown at the "
          f"measured clock\n")
    print(f"{result['model']} seq {result['seq']} batch {result['batch']}, {result['precision']}\n")
    print("| kernel | op | x | grid x block | bound | predicted us | measured us | measured / predicted | alone us "
          "| in a graph us | host call us | bits |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|")
    for r in result["kernels"]:
        if "measured_us" not in r:
            print(f"| {r['name']} | {r['op']} | {r['instances']} | - | - | - | - | - | - | - | - | "
                  f"{r.get('skipped', '')} |")
            continue
        print(f"| {r['name']} | {r['op']} | {r['instances']} | {r['grid']} x {r['block']} | {r['bound']} | "
              f"{r['predicted_us_at_measured_clock']:.2f} | {r['measured_us']:.2f} | {r['ratio']:.2f} | "
              f"{r['alone_us']:.2f} | {r['graph_us']:.2f} | {r['host_call_us']:.2f} | {r['bits']} |")
    if result["checks_bits"]:
        print(f"\nbit-identical to isasim's executor: {result['bit_identical']} of {result['run']} kernels run")
    for p in result.get("probes", ()):
        print(f"{p['instruction']}: latency {p['latency_cycles']:.1f} cycles (one warp, one chain), throughput "
              f"{p['per_clock_per_sm']:.1f} thread-instructions per clock per SM (16 warps per SM, 4 chains each)")
    if result["median_error"] is not None:
        print(f"median |measured/predicted - 1| (kernels >= {MIN_SHARE:.0%} of the forward): "
              f"{result['median_error']:.0%}; time-weighted error {result['weighted_error']:.0%}; forward (kernels "
              f"run, x instances) measured {result['forward_measured_us']:.0f} us, predicted "
              f"{result['forward_predicted_us']:.0f} us, ratio {result['forward_ratio']:.2f}")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = ap.add_subparsers(dest="command", required=True)
    p = sub.add_parser("prepare", help="lower, execute and write the kernels with their buffers (needs isasim)")
    p.add_argument("dir", type=Path)
    p.add_argument("--model", default="minilm")
    p.add_argument("--seq", type=int, default=128)
    p.add_argument("--batch", type=int, default=1)
    p.add_argument("--gpu", default="h200", help="the GPU description to predict for (isa/gpu/)")
    p.add_argument("--kernel-mb", type=float, default=16.0, help="leave out kernels whose buffers exceed this")
    p.add_argument("--precision", default="fp32",
                   help="fp32, or fp16 or bf16 (tensor cores), as `isasim trace` takes it")
    p.add_argument("--timing-only", action="store_true",
                   help="carry no buffers and check no bits: time the kernels on filled inputs (large shapes)")
    r = sub.add_parser("run", help="run, compare and time the prepared kernels (needs an NVIDIA GPU)")
    r.add_argument("dir", type=Path)
    r.add_argument("--repeat", type=int, default=50)
    r.add_argument("--json", type=Path, help="where to write the result (default: DIR/result.json)")
    args = ap.parse_args(argv)
    if args.command == "prepare":
        from isasim.isa.errors import UserError

        try:
            m = prepare(args.model, args.seq, args.batch, args.gpu, args.dir, args.kernel_mb, args.timing_only,
                        args.precision)
        except UserError as e:
            print(f"cuda_run: {e}", file=sys.stderr)
            return 2
        left = [k["name"] for k in m["kernels"] if "skipped" in k]
        print(f"{len(m['kernels'])} distinct kernels of {args.model} in {args.dir}"
              + (f"; left out: {', '.join(left)}" if left else ""))
        return 0
    if not (args.dir / "manifest.json").is_file():
        print(f"cuda_run: {args.dir} holds no manifest.json: run `cuda_run.py prepare {args.dir}` first",
              file=sys.stderr)
        return 2
    try:
        result = run(args.dir, args.repeat)
    except NoGpu as e:
        print(f"cuda_run: {e}", file=sys.stderr)
        return 2
    show(result)
    (args.json or args.dir / "result.json").write_text(json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
