"""Write docs/tour.md: a guided tour of what BERT costs on each target, made from real isasim output.

    .venv/bin/python docs/make_tour.py [--model bert-base] [--seq 128] [--out docs]

Every block in the tour is the output of the isasim command printed above it, run by this script; rerun it
after a change to the cost model and review the diff.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import sys
from pathlib import Path

from isasim.cli.main import main as isasim
from isasim.isa.gpu import load_gpu
from isasim.isa.machine import load_uarch


def run(*argv: str) -> str:
    """The command's standard output (tables rendered 100 columns wide, as a pipe gets them)."""
    os.environ["COLUMNS"] = "100"
    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        code = isasim(list(argv))
    if code != 0:
        raise SystemExit(f"isasim {' '.join(argv)} failed with exit status {code}")
    return buf.getvalue()


def block(cmd: str, text: str, lang: str = "") -> str:
    return f"`{cmd}`\n\n```{lang}\n{text.rstrip()}\n```\n"


def terms(*names: str) -> str:
    """A line of links into docs/glossary.md, for the terms a section uses."""
    return "\nTerms: " + ", ".join(f"[{n}](glossary.md#{anchor(n)})" for n in names) + ".\n"


def anchor(heading: str) -> str:
    """The anchor GitHub gives a heading."""
    return "-".join("".join(c for c in heading.lower() if c.isalnum() or c in " -").split())


def excerpt(table: str, first: str, keep: int | None = None) -> str:
    """The table's header, the group that starts with `first` (or `keep` of its rows), an elision mark, and
    the total row with the summary after it: a trace too long to show whole."""
    lines = [ln.rstrip() for ln in table.splitlines()]
    head = next(i for i, ln in enumerate(lines) if ln.lstrip().startswith("op "))
    start = next(i for i, ln in enumerate(lines) if ln.lstrip().startswith(first))
    end = next(i for i in range(start, len(lines)) if not lines[i].strip())
    end = min(end, start + keep) if keep else end
    total = next(i for i, ln in enumerate(lines) if ln.lstrip().startswith("total"))
    return "\n".join(lines[:head + 2] + lines[start:end] + ["  ⋮"] + lines[total:])


KINDS = (("vmovups", "load"), ("vbroadcastss", "broadcast"), ("vfmadd", "fma"), ("vpdpbusd", "dot"),
         ("tileloadd", "tile load"), ("tdp", "tile multiply"),
         ("add", "pointer"),
         ("lea", "pointer"), ("sub", "latch"), ("jnz", "latch"))


def annotated(listing: list[dict]) -> str:
    """The loop's instructions, with a comment over each group: its loads, its FMAs, the latch."""
    runs: list[tuple[str, list[str]]] = []
    for ln in listing:
        kind = next((k for prefix, k in KINDS if ln["instruction"].startswith(prefix)), "other")
        if runs and runs[-1][0] == kind:
            runs[-1][1].append(ln["instruction"])
        else:
            runs.append((kind, [ln["instruction"]]))
    out: list[str] = []
    for i, (kind, lines) in enumerate(runs):
        n, after = len(lines), runs[i + 1] if i + 1 < len(runs) else ("", [])
        if kind == "load" and n == 1 and after[0] == "fma":
            out.append(f"# the next row of 16 floats, and {len(after[1])} FMAs with it")
        elif kind == "fma" and runs[i - 1][0] == "load" and len(runs[i - 1][1]) == 1:
            pass  # said with its load
        elif kind in ("load", "broadcast"):
            what = "16 lanes of a row" if kind == "load" else "one 32-bit value into all 16 lanes"
            plural = "" if n == 1 else "s"
            out.append(f"# {n} {'vector load' if kind == 'load' else 'broadcast'}{plural}: {what}"
                       + (" each" if n > 1 else ""))
        elif kind == "fma":
            out.append(f"# {n} FMAs, each into its own accumulator: independent chains the ports overlap")
        elif kind == "dot":
            out.append(f"# {n} dot products of four byte pairs per lane into int32 accumulators")
        elif kind == "tile load":
            out.append(f"# {n} tile loads: rows of the input, then rows of the packed weight (a stride apart)")
        elif kind == "tile multiply":
            out.append(f"# {n} tile multiplies, each into its own accumulator tile, one every 16 cycles")
        elif kind == "pointer":
            out.append("# the pointers move on along k")
        elif kind == "latch":
            out.append("# the loop latch: count down and branch back (sub and jnz fuse into one uop)")
        out += lines
    return "\n".join(out)


EXERCISES = (
    ("isasim trace minilm --seq 512 --target avx512",
     "Run it again with `--seq 128`. By how much do the attention matmuls and softmax grow, against the linear "
     "layers, and why (count each one's FLOPs in terms of the sequence length)?"),
    ("isasim explain minilm --op linear --target avx2 --uarch zen4",
     "Which ports decide on Zen 4, and which on Skylake-X (drop `--uarch`)? What does that say about each "
     "core's FMA units?"),
    ("isasim explain minilm --op layer_norm --target simt --uarch h100",
     "What limits the layer norm's occupancy, which bound decides, and what does the advice say would move it?"),
    ("isasim trace minilm --target neon --uarch neoverse-v1",
     "Against `--uarch neoverse-n1`, which op families get faster on V1, which do not, and why?"),
    ("isasim check minilm --seq 16 --target avx2 --target neon --on-host",
     "Is each target's machine code bit-identical to isasim's executor? Which ran natively and which under "
     "qemu, and what would this host need to run avx512's?"),
    ("isasim trace minilm --precision int8 --target avx2 --uarch zen3",
     "Which op families now take the cycles, and if the int8 linear layers became free, how much faster "
     "than float32 could this forward get (Amdahl's law, from the shares in `compare --precision int8`)?"),
    ("isasim trace minilm --training --batch 16 --seq 64 --target avx512 --target simt",
     "Which phase of a fine-tuning step (forward, backward, optimizer) dominates on each, and why is the "
     "optimizer so large on the GPU?"),
    ("isasim trace minilm --training --lora 8 --batch 16 --seq 64 --target avx512 --target neon",
     "LoRA trains 0.3% of the parameters. Which phases shrink on each target, which do not, and why is the step "
     "only about 1.7-2x cheaper?"),
    ("isasim scale minilm --target avx2 --uarch zen3 --cores 1,8,16,64",
     "Where does the Zen 3 socket stop scaling, which bound takes over, and why does a batch of 8 (`--batch 8`) "
     "scale further?"),
)


def sections(model: str, seq: int, out: Path) -> list[str]:
    m, s = model, str(seq)
    trace = json.loads(run("trace", m, "--seq", s, "--target", "x86-64", "--format", "json"))["targets"][0]
    linear = next(op for op in trace["ops"] if op["op"] == "aten.linear.default")
    scalar = json.loads(run("explain", m, "--seq", s, "--op", "linear", "--target", "x86-64", "--format", "json"))[0]
    simd = json.loads(run("explain", m, "--seq", s, "--op", "linear", "--target", "avx512", "--format", "json"))[0]
    cmp = json.loads(run("compare", m, "--seq", s, "--format", "json", "--plot", str(out / "compare.png")))
    rows = {(r["target"], r["uarch"]): r for r in cmp["rows"]}
    x86, avx = rows[("x86-64", "skylake-x")], rows[("avx512", "skylake-x")]
    n1, v1 = rows[("aarch64", "neoverse-n1")], rows[("aarch64", "neoverse-v1")]
    fmadd = {u: load_uarch(u).timing("fmadd").rthroughput for u in ("neoverse-n1", "neoverse-v1")}
    of_peak = lambda r: r["flop_per_cycle"] / r["peak_flop_per_cycle"]  # noqa: E731
    return [
        f"# What {m} costs, instruction by instruction\n\nA tour for teaching, generated by `docs/make_tour.py` "
        f"from real isasim output ({m}, sequence length {seq}, batch 1). Every number below is printed by the "
        f"command shown with it; every term the tables print is explained in the [glossary](glossary.md). "
        f"Exercises close the tour.\n",
        "## 1. The graph, op by op\n\nisasim captures the model with `torch.export`, lowers every op to a loop "
        "nest, and counts the instructions the scalar x86-64 target runs. A BERT layer is four linear layers "
        "of the attention, two attention matmuls, softmax, two layer norms, and the feed-forward pair with "
        "GELU between. The trace groups the ops by layer (layers that cost the same fold into one line) and "
        "sums them all in the last row; here, the first layer and that total, with the rest elided (⋮):\n\n"
        + block(f"isasim trace {m} --seq {s} --target x86-64",
                excerpt(run("trace", m, "--seq", s, "--target", "x86-64"), "layer 0"))
        + terms("instructions", "cycles", "bound", "bytes at each level", "matmul FLOPs",
                "floating-point operations", "view ops", "attention mask"),
        f"## 2. Why the scalar GEMM is slow\n\nThe first linear layer takes {linear['instructions']:,} "
        f"instructions and {linear['cycles']:,.0f} cycles. `explain` shows its inner loop: each instruction "
        f"with its latency, throughput and ports (and where those numbers come from), the bounds, what decides, "
        f"and a timeline of a few iterations:\n\n"
        + block(f"isasim explain {m} --seq {s} --op linear --target x86-64",
                run("explain", m, "--seq", s, "--op", "linear", "--target", "x86-64"))
        + f"\nOne accumulator: every FMA waits {scalar['bound']['latency']:g} cycles for the previous one, though "
        f"the ports could take one every {scalar['bound']['ports']:g}; the timeline shows each FMA's `=` "
        f"waiting for the one before.\n"
        + terms("latency", "reciprocal throughput", "port", "issue", "uop", "loop-carried dependency",
                "timeline"),
        f"## 3. What SIMD and register blocking change\n\nOn AVX-512 the same layer becomes a micro-kernel: "
        f"{sum(1 for ln in simd['listing'] if ln['mnemonic'].startswith('vfmadd'))} independent FMA chains of "
        f"16 lanes each, and the loop is decided by `{simd['bound']['decides']}`. Its loop, with a comment over "
        f"each group of instructions:\n\n"
        + block(f"isasim explain {m} --seq {s} --op linear --target avx512", annotated(simd["listing"]), "asm")
        + f"\n{simd['advice']}\n" + terms("vector lanes", "port", "bound"),
        f"## 4. Every target side by side\n\nScalar Skylake-X reaches {x86['flop_per_cycle']:.2f} FLOP per "
        f"cycle, {of_peak(x86):.0%} of its FMA peak; AVX-512 on the same core {avx['flop_per_cycle']:.1f}, "
        f"{of_peak(avx):.0%} of peak, {avx['speedup_over_scalar_x86']:.0f}x faster:\n\n"
        + block(f"isasim compare {m} --seq {s} --format markdown", run("compare", m, "--seq", s, "--format",
                                                                        "markdown"))
        + f"\nWhy does scalar Neoverse V1 show {of_peak(v1):.1%} of its peak, against {of_peak(n1):.1%} on N1? "
        f"V1 has four FP pipes where N1 has two (`fmadd` issues every {fmadd['neoverse-v1']:g} cycles against "
        f"{fmadd['neoverse-n1']:g}), so its peak is twice N1's; but the scalar GEMM is bound by one FMA chain's "
        f"latency on both, so it runs at the same FLOP per cycle ({v1['flop_per_cycle']:.3f} against "
        f"{n1['flop_per_cycle']:.3f}): half the fraction of a doubled peak.\n"
        + "\n![roofline and cycles by op family](compare.png)\n\n`--plot compare.png` drew the chart: left, "
        "each op family of each target (on its default core) under that core's compute and DRAM ceilings, one "
        "line style per target; right, where each target's cycles go.\n"
        + terms("of peak", "speed-up", "arithmetic intensity"),
        gpu_section(m, s, rows),
        trust_section(),
        host_section(),
        int8_section(m, s),
        cores_section(m, s),
        "## 10. Exercises\n\nEach exercise is a command to run and a question its output answers.\n\n"
        + "\n".join(f"{i}. `{cmd}`\n\n   {question}\n" for i, (cmd, question) in enumerate(EXERCISES, 1))
        + terms("fine-tuning step", "LoRA", "on-host"),
    ]


def cores_section(m: str, s: str) -> str:
    argv = ("scale", m, "--seq", s, "--target", "avx512", "--uarch", "sapphirerapids", "--cores", "1,2,4,8,16,32,56")
    points = json.loads(run(*argv, "--format", "json"))["points"]
    last = points[-1]
    return (
        "## 9. Many cores, many GPUs\n\nA server runs the model on every core of its socket. `isasim scale` splits each "
        "kernel's parallel loops across the cores (a GEMM's rows, its columns or blocks of both, whichever the "
        "cost model finds fastest; a kernel too small to pay for its fork stays on one core), costs each core's "
        "chunk, and costs once what the cores share: the socket's DRAM bandwidth and each kernel's fork and "
        "join. Here on the 56 cores of a Xeon 8480+:\n\n"
        + block("isasim " + " ".join(argv), run(*argv))
        + f"\nOn {last['cores']} cores the forward is {last['speedup']:.0f}x faster, a parallel efficiency of "
        f"{last['efficiency']:.0%}. The GEMMs keep scaling; the ops that only stream their tensors through "
        f"memory ({last['slowest_family']}: {last['slowest_family_speedup']:.1f}x) stop where the socket's DRAM "
        "bandwidth, shared by every core, is full. `check --cores N` runs every chunk and holds each split "
        "kernel to the whole kernel's bits on one core.\n\n"
        + gpus_part(m, s) + terms("parallel efficiency", "bound", "all-reduce"))


def gpus_part(m: str, s: str) -> str:
    argv = ("scale", m, "--seq", s, "--target", "simt", "--gpus", "1,2,4,8", "--batch", "32")
    points = json.loads(run(*argv, "--format", "json"))["points"]
    last = points[-1]
    return (
        "Fine-tuning spreads over GPUs instead: `--gpus` splits a training step's batch across the GPUs of one "
        "server, and their gradients are summed with an all-reduce over NVLink while backward still runs, as "
        "PyTorch's DistributedDataParallel does:\n\n"
        + block("isasim " + " ".join(argv), run(*argv))
        + f"\nOn {last['gpus']} GPUs each runs {last['per_gpu_batch']} sentences and the step is "
        f"{last['speedup']:.1f}x faster, not 8x: the all-reduce hides behind backward all but "
        f"{last['waits_ms']:.2f} ms, but AdamW ({last['optimizer_ms']:.1f} ms) runs whole on every GPU and the "
        "smaller batches fill each GPU less.\n\n" + megatron_part(m, s, next(p for p in points if p["gpus"] == 4)))


def megatron_part(m: str, s: str, data4: dict) -> str:
    argv = ("trace", m, "--seq", s, "--training", "--target", "simt", "--batch", "32", "--gpus", "4", "--parallel",
            "tensor")
    step = json.loads(run(*argv, "--format", "json"))["targets"][0]
    split = step["multi_gpu"]
    return (
        "Or split every layer instead of the batch, as Megatron-LM does (`--parallel tensor`): each GPU holds a "
        "quarter of every layer's heads and linear layers and runs the whole batch, and the partial sums are "
        "all-reduced twice forward and twice backward per layer, each on the critical path:\n\n"
        + block("isasim " + " ".join(argv), run(*argv))
        + f"\nThe step takes {step['step_ms']:.1f} ms against data parallelism's {data4['seconds'] * 1e3:.1f} ms on "
        f"the same 4 GPUs: its {split['allreduces']} all-reduces wait {split['exposed_ms']:.1f} ms that nothing "
        "hides, and AdamW, a kernel per parameter with the embeddings whole on every GPU, shrinks less than the "
        "GEMMs do. Tensor parallelism is "
        "for models whose weights do not fit one GPU; BERT's fit one easily.\n")


HOST_RECORDING = Path(__file__).parent / "host-zen5.txt"  # `isasim host minilm --repeat 10`, as printed there


def host_section() -> str:
    """`isasim host` as recorded on the development host. A host's timings move from run to run, so this block
    is a recording, not re-run by the tests (its command is not written right above it, as checked blocks'
    are); refresh it with `COLUMNS=100 isasim host minilm --repeat 10 > docs/host-zen5.txt` on that host."""
    return ("## 7. The model against a real machine\n\nA prediction is worth what it agrees with. `isasim host MODEL` "
            "names the core it runs on (CPUID's vendor, family and model) and the described core nearest to it, "
            "measures the clock with a chain of dependent adds (the figure in /proc/cpuinfo is not the clock a "
            "busy core runs at) and the vector FMA rate (lower than described when another thread shares the FP "
            "pipes), then calls every kernel's machine code natively, in rounds, on buffers that start a cache "
            "line as PyTorch's tensors do, and sets the fewest cycles against the predicted ones. On this "
            "project's development host, an AMD EPYC virtual machine with two Zen 5 cores, on 2026-12-01, "
            "`isasim host minilm --repeat 10` printed this (a recording: timings move between runs, so the tests "
            "do not re-run it):\n\n```text\n" + HOST_RECORDING.read_text().rstrip()
            + "\n```\n\nThe scalar code agrees: its linear layers are one FMA chain per output, and a chain's "
            "latency is what the core really pays, but for the stretch at each chain's end that the next outputs' "
            "chains overlap, as far as the reorder buffer holds them (`benchmarks/chain_overlap.py` measures how "
            "far for every chain length). Attention's Q.K^T, chains of only 32 FMAs, runs slower than predicted: "
            "there the chain's bound and the ports' are close, and the model takes the larger as if they did not "
            "interfere. The vector GEMMs are bound by the FMA ports and agree. Of the linear layers AVX-512's "
            "128x384x1536 is the furthest: its block of four input rows and six weight rows (60 KB) does not fit the 48 KB L1; "
            "the weights' 36 KB stay there while the input rows pass (the loops are ordered for this core's L1), "
            "but the model's LRU cache loses them and predicts an L2 bound that the real L1 partly beats. "
            "Attention's P.V reads V's rows 1536 bytes apart, and they crowd a few of L1's sets. The README's "
            "\"Measured\" section "
            "gives the evidence for each, and the figures of an earlier Zen 3 host.\n" + terms("bound", "cycles"))


INT8_PAIRS = (("x86-64", "zen3"), ("avx2", "zen3"), ("avx512", "sapphirerapids"), ("neon", "neoverse-n1"))
BF16_PAIRS = (("avx512", "sapphirerapids"), ("avx512", "zen4"), ("neon", "neoverse-v1"))


def precision_ms(m: str, s: str, target: str, uarch: str, precision: str) -> float:
    t = json.loads(run("trace", m, "--seq", s, "--target", target, "--uarch", uarch, "--precision", precision,
                       "--format", "json"))["targets"][0]
    return t["seconds"] * 1e3


def gemm_cycles(m: str, s: str, target: str, uarch: str, precision: str) -> tuple[float, float]:
    """(the linear layers' cycles, all cycles) of one forward."""
    t = json.loads(run("trace", m, "--seq", s, "--target", target, "--uarch", uarch, "--precision", precision,
                       "--format", "json"))["targets"][0]
    return sum(o["cycles"] for o in t["ops"] if "linear" in o["op"] and "round" not in o["op"]), t["cycles"]


def amx_part(m: str, s: str) -> str:
    """The amx target: the GEMMs on tiles against float32 AVX-512 on the same core, and what decides then."""
    f_gemm, f_all = gemm_cycles(m, s, "avx512", "sapphirerapids", "fp32")
    rows = ["| precision | linear layers (Mcycles) | vs fp32 AVX-512 | forward (Mcycles) | vs fp32 AVX-512 |",
            "|---|---:|---:|---:|---:|", f"| fp32 on avx512 | {f_gemm / 1e6:.1f} | 1.00x | {f_all / 1e6:.1f} | 1.00x |"]
    for p in ("int8", "bf16"):
        g, a = gemm_cycles(m, s, "amx", "sapphirerapids", p)
        rows.append(f"| {p} on amx | {g / 1e6:.1f} | {f_gemm / g:.1f}x | {a / 1e6:.1f} | {f_all / a:.1f}x |")
    ffn = json.loads(run("explain", m, "--seq", s, "--op", "linear_4", "--target", "amx", "--precision", "int8",
                         "--format", "json"))[0]
    return ("\n### Matrix engines: AMX\n\nThe `amx` target (Sapphire Rapids; int8 and bf16 only, so the float32 "
            "reports leave it out) runs the linear layers on AMX tiles: eight registers of up to 16 rows of 64 bytes. "
            "One `tdpbusd` multiplies a 16 x 64 int8 tile by a 64 x 16 one into 16 x 16 int32 sums, 16,384 "
            "multiply-adds, and the tile unit starts one every 16 cycles: 2048 int8 operations per cycle, 32 "
            "times the 64 float32 ones of two AVX-512 FMA ports (bf16's `tdpbf16ps`, 1024). The packed weights "
            "are already in the layout the B tile needs. Everything else runs on AVX-512, as the dequantizing "
            "epilogue does. bert-base's linear layers and the whole forward on Sapphire Rapids, from `isasim "
            f"trace {m} --seq {s} --target amx --precision P`:\n\n" + "\n".join(rows)
            + "\n\nThe tile loop itself is the tile unit's: four loads, four multiplies, 64 cycles per k step. "
            "Past it, the whole layer waits on memory, and the model says by how much:\n\n"
            + block(f"isasim explain {m} --seq {s} --op linear_4 --target amx --precision int8",
                    annotated(ffn["listing"]), "asm")
            + f"\n{ffn['advice']}\n\nSo the linear layers gain less than the 32x of the arithmetic, and the forward "
            "much less: what stays float32 (attention, softmax, layer norm, GELU) and the quantize ops now take "
            "most of the cycles (Amdahl's law).\n" + terms("AMX tile"))


def bf16_part(m: str, s: str) -> str:
    """--precision bf16: the dot-product instruction's rate decides, per core."""
    rows = ["| target | uarch | fp32 ms | bf16 ms | speed-up |", "|---|---|---:|---:|---:|"]
    for target, uarch in BF16_PAIRS:
        f, b = (precision_ms(m, s, target, uarch, p) for p in ("fp32", "bf16"))
        rows.append(f"| {target} | {uarch} | {f:.2f} | {b:.2f} | {f / b:.2f}x |")
    return ("\n### bf16\n\n`--precision bf16` rounds each linear layer's weight (offline) and input (at run time) to "
            "bfloat16 and sums the products in float32, two k at a time: `vdpbf16ps` on AVX-512 cores with "
            "AVX512-BF16 (Sapphire Rapids, Zen 4), `bfdot` on Arm cores with BF16 (Neoverse V1); AMX tiles and a "
            "GPU's tensor cores (`mma ... .bf16` on simt, as fp16 above) have it too. The scalar and AVX2 targets "
            "do not, and are left out with a note. The instructions round differently: Intel's "
            "does two fused multiply-adds, each to nearest even; Arm's adds the pair first and rounds every step "
            "to odd, so the two targets' outputs differ in their last bits, and each executor reproduces its "
            "own hardware's (NEON's checked against qemu). How much faster bf16 runs is the dot product's rate "
            "on each core, from uops.info and LLVM's tables:\n\n" + "\n".join(rows)
            + "\n\nA 512-bit `vdpbf16ps` does 32 multiply-adds. Zen 4 issues one per cycle, where its float32 "
            "FMAs do 16: twice the rate. Sapphire Rapids needs two cycles per `vdpbf16ps` (four micro-ops), while "
            "its two FMA ports do 32 float32 multiply-adds per cycle: bf16 on AVX-512 is slower there, and that "
            "core serves bf16 on its AMX tiles instead. On Neoverse V1 a `bfdot` also does twice an `fmla`'s "
            "multiply-adds, but the model finds the bf16 GEMMs bound by L2, not by `bfdot`: the packed weight is "
            "read in rows 12 KB apart, 96 bytes (parts of two cache lines) per k step, and a column block's "
            "lines do not stay in the 64 KB L1 while the next rows of the input pass. Packing the weight into "
            "contiguous micro-panels, as BLAS libraries do, is the fix, not yet made.\n"
            + terms("bfloat16", "round to odd"))


def int8_section(m: str, s: str) -> str:
    """--precision int8: each target against its own fp32 on the same core, and the VNNI loop."""
    rows = ["| target | uarch | fp32 ms | int8 ms | speed-up | linear layers' share (fp32 -> int8) | quantize share |",
            "|---|---|---:|---:|---:|---:|---:|"]
    for target, uarch in INT8_PAIRS:
        got = {}
        for p in ("fp32", "int8"):
            t = json.loads(run("trace", m, "--seq", s, "--target", target, "--uarch", uarch, "--precision", p,
                               "--format", "json"))["targets"][0]
            share = lambda *words: sum(o["cycles"] for o in t["ops"]  # noqa: E731
                                       if any(w in o["op"] for w in words)) / t["cycles"]
            got[p] = (t["seconds"] * 1e3, share("linear"), share("minmax", "quant"))
        (f_ms, f_lin, _), (q_ms, q_lin, q_q) = got["fp32"], got["int8"]
        rows.append(f"| {target} | {uarch} | {f_ms:.2f} | {q_ms:.2f} | {f_ms / q_ms:.2f}x | {f_lin:.0%} -> "
                    f"{q_lin:.0%} | {q_q:.1%} |")
    vnni = json.loads(run("explain", m, "--seq", s, "--op", "linear_int8", "--target", "avx512", "--precision",
                          "int8", "--format", "json"))[0]
    return ("## 8. Fewer bits: int8 and bf16\n\n`--precision int8` runs the model as PyTorch's dynamic quantization "
            "does: "
            "each linear layer's weight quantized once, offline, to int8 per output channel; its input quantized "
            "per tensor at run time (each row's max and min, combined into a scale and a zero point, then a "
            "pass that rounds each element to 7 bits); the products summed exactly in int32 by the target's "
            "dot-product instructions; the result "
            "turned back into float32 in the GEMM's epilogue. Everything else stays float32. Each target against "
            "its own float32, on the same core (AVX-512 on Sapphire Rapids, whose VNNI int8 needs; Skylake-X "
            "lacks it), from `isasim trace " + m + " --seq " + s + " --target T --uarch U --precision P`:\n\n"
            + "\n".join(rows)
            + "\n\nThe int8 GEMM's loop on AVX-512: each `vpdpbusd` multiplies 64 byte pairs and adds them in "
            "fours into 16 int32 lanes. Sapphire Rapids runs it on port 0 only (LLVM's model), one per cycle: 64 "
            "multiply-adds against two 16-lane FMAs' 32, so the GEMMs gain 2x, not the 4x the bytes suggest. "
            "Amdahl's law does the rest: what stays float32 (attention, softmax, layer norm, GELU) keeps its "
            "cycles, and the quantize ops (vectorised: a row's max and min, then a multiply, round, clamp and "
            "a narrowing store per vector) add a few percent:\n\n"
            + block(f"isasim explain {m} --seq {s} --op linear_int8 --target avx512 --precision int8",
                    annotated(vnni["listing"]), "asm")
            + f"\n{vnni['advice']}\n" + terms("quantization", "zero point", "dot-product instruction")
            + bf16_part(m, s) + amx_part(m, s))


def trust_section() -> str:
    """`check` on four targets. Only what every host computes alike is shown: PyTorch's own fp32 kernels differ
    by CPU, so the errors' digits do too (their bound is what the check asserts)."""
    argv = ["check", "minilm", "--seq", "32", "--target", "x86-64", "--target", "avx512", "--target", "neon",
            "--target", "simt", "--format", "json"]
    report = json.loads(run(*argv))
    shown = {"tolerance": report["tolerance"], "passed": report["passed"],
             "targets": [{k: t[k] for k in ("target", "uarch", "passed", "instructions_executed",
                                            "counts_match_cost_model")} for t in report["targets"]]}
    worst = max(t["max_abs_err"] for t in report["targets"])
    return ("## 6. Why you can trust the numbers\n\nThe same programs that are counted are executed: `isasim check` "
            "runs every lowered kernel on real weights and compares with PyTorch, and checks that the executor's "
            "instruction counts equal the cost model's (on the GPU: warp instructions, run by the whole grid in "
            f"lockstep). A target passes when the final hidden states are within `tolerance` of PyTorch's (the "
            f"largest error here was {worst:.1e}; its digits vary with the CPU PyTorch runs on, whose own fp32 "
            "kernels differ by instruction set) and the counts agree; drop `--format json` for a table with "
            "each target's largest error and its worst op:\n\n"
            + block("isasim " + " ".join(argv), json.dumps(shown, indent=2), "json")
            + terms("final error", "worst op", "on-host"))


def gpu_section(m: str, s: str, rows: dict) -> str:
    """The same model as GPU kernels: launches, occupancy, and what bounds a GEMM and a layer norm."""
    gpu = rows[("simt", "a100")]
    gemm = json.loads(run("explain", m, "--seq", s, "--op", "linear", "--target", "simt", "--format", "json"))[0]
    norm = json.loads(run("explain", m, "--seq", s, "--op", "layer_norm", "--target", "simt", "--format",
                          "json"))[0]
    return (f"## 5. The same model on a GPU\n\nOn the `simt` target every op is a kernel launch: a grid of "
            f"blocks of 32-thread warps running one PTX instruction stream. GEMMs stage tiles of both operands in "
            f"shared memory; softmax and layer norm give each row a warp, which sums with warp shuffles; the "
            f"rest is a thread per element. The A100 model predicts {gpu['seconds'] * 1e3:.2f} ms, "
            f"{gpu['flop_per_cycle'] / gpu['peak_flop_per_cycle']:.0%} of the FP32 peak; note the launch "
            f"overhead deciding most small kernels, and the occupancy column:\n\n"
            + block(f"isasim trace {m} --seq {s} --target simt",
                    excerpt(run("trace", m, "--seq", s, "--target", "simt"), "layer 0"))
            + f"\nThe first linear layer: {gemm['strategy']}, {gemm['grid']} blocks of {gemm['block']} threads:\n\n"
            + block(f"isasim explain {m} --seq {s} --op linear --target simt --format json",
                    json.dumps({k: gemm[k] for k in ("occupancy", "decides", "advice")}, indent=2), "json")
            + f"\nA layer norm is a warp per row: with {norm['grid']} blocks on {load_gpu('a100').sms} SMs, latency "
            f"is what occupancy has to hide:\n\n"
            + block(f"isasim explain {m} --seq {s} --op layer_norm --target simt --format json",
                    json.dumps({k: norm[k] for k in ("occupancy", "decides", "advice")}, indent=2), "json")
            + terms("launch", "grid and block", "registers and shared memory", "occupancy", "strategy", "pipe",
                    "sectors", "wavefronts") + tensor_part(m, s))


def tensor_part(m: str, s: str) -> str:
    """--precision fp16: the linear layers on tensor cores, per GPU, and why batch 1 gains little."""
    rows = ["| GPU | fp32 ms | fp16 ms | speed-up |", "|---|---:|---:|---:|"]
    for gpu in ("a100", "h100", "h200"):
        f, h = (precision_ms(m, s, "simt", gpu, p) for p in ("fp32", "fp16"))
        rows.append(f"| {gpu} | {f:.2f} | {h:.2f} | {f / h:.2f}x |")
    ffn = json.loads(run("explain", m, "--seq", s, "--op", "linear_4", "--target", "simt", "--uarch", "h200",
                         "--precision", "fp16", "--format", "json"))[0]
    return ("\n### Tensor cores: fp16\n\n`--precision fp16` (the `simt` target only) stores every activation in "
            "fp16 (each op still computes in float32, converting as it loads and stores, as PyTorch's own fp16 "
            "kernels do, a thread per pair of neighbouring elements) and runs each linear layer and attention's two "
            "matmuls on the tensor cores: blocks of eight warps copy tiles of both operands (128, 64 or 32 rows, whichever the cost model finds fastest) into shared "
            "memory with `cp.async`, three slices in flight, and each warp loads its fragments with `ldmatrix` and "
            "multiplies them with `mma.sync.aligned.m16n8k16`. From `isasim trace " + m + " --seq " + s
            + " --target simt --uarch G --precision P`:\n\n" + "\n".join(rows)
            + f"\n\nAt batch 1 the feed-forward's first linear layer is {ffn['grid']} blocks on "
            f"{load_gpu('h200').sms} SMs, {ffn['decides']} decides:\n\n"
            + block(f"isasim explain {m} --seq {s} --op linear_4 --target simt --uarch h200 "
                    "--precision fp16 --format json",
                    json.dumps({k: ffn[k] for k in ("occupancy", "decides", "advice")}, indent=2), "json")
            + "\nOn a real H200 the first form of these kernels (float32 activations, one slice at a time, no "
            "ldmatrix) ran the linear layers at batch 128 4.4 times faster than the float32 ones of the time (which read "
            "shared memory a word at a time; the README's Measured "
            "section, from `benchmarks/cuda_run.py`), their outputs differing from isasim's in the last bits, since "
            "the hardware sums an mma's products in its own order; the pipelined kernels have not yet run on a "
            "GPU.\n" + terms("tensor core"))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="bert-base")
    ap.add_argument("--seq", type=int, default=128)
    ap.add_argument("--out", type=Path, default=Path(__file__).parent)
    args = ap.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "tour.md").write_text("\n".join(sections(args.model, args.seq, args.out)))
    print(f"wrote {args.out / 'tour.md'} and {args.out / 'compare.png'}", file=sys.stderr)


if __name__ == "__main__":
    main()
