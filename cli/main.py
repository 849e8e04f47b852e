"""The `isasim` command: trace (cost every op on every target), check (execute and compare with PyTorch),
sweep (a grid of configurations on Dask: cli/sweep.py), targets (what can be simulated, and where the numbers
come from)."""

from __future__ import annotations

import argparse
import os
import sys
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

from isasim.cli.scale import core_count
from isasim.isa.errors import UserError

if TYPE_CHECKING:  # rich loads inside main(), where an early Ctrl-C is caught like any other
    from rich.console import Console

EXIT_USAGE = 2


class _Parser(argparse.ArgumentParser):
    def error(self, message: str):  # one line, no usage dump: say what is wrong and where to look
        raise UserError(f"{message} (see '{self.prog} --help')")


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("model", help="bert-base, bert-large, minilm, or a folder with config.json + model.safetensors")
    p.add_argument("--target", action="append", metavar="T",
                   help="a target to simulate (repeatable; default: all). See 'isasim targets'")
    p.add_argument("--uarch", action="append", metavar="U",
                   help="microarchitecture for the targets of its ISA (repeatable; default: each target's own)")
    p.add_argument("--seq", type=int, default=128, help="sequence length (default 128; check --text: the text's)")
    p.add_argument("--batch", type=int, default=1, help="batch size (default 1)")
    p.add_argument("--seed", type=int, default=0, help="seed for token ids and seeded weights (default 0)")


def _precision(p: argparse.ArgumentParser) -> None:
    p.add_argument("--precision", choices=("fp32", "bf16", "int8", "fp16"), default="fp32",
                   help="fp32 (default); int8: the linear layers quantized as PyTorch's dynamic quantization "
                   "does (int8 weights per output channel, made offline; activations per tensor at run time, "
                   "7-bit as fbgemm's reduce_range; int32 accumulation on dot-product instructions: AVX2 "
                   "vpmaddubsw, AVX512-VNNI vpdpbusd, NEON sdot, AMX tdpbusd, the tensor cores' mma .s8 on "
                   "simt); bf16: the linear layers' operands rounded to bfloat16, products summed in float32 "
                   "(AVX512-BF16 vdpbf16ps, Arm BF16 bfdot, AMX tdpbf16ps, mma .bf16 on simt), the avx512, "
                   "neon, amx and simt targets only; amx runs int8 and bf16 only; fp16: the linear layers on "
                   "the GPU's tensor cores (mma.sync m16n8k16, fp16 operands, float32 sums), the simt target "
                   "only")


def _cores(p: argparse.ArgumentParser, what: str) -> None:
    p.add_argument("--cores", type=core_count, default=1, metavar="N",
                   help=f"{what} split across N cores of one socket (or 'all': the socket's count; beyond it, the "
                   "two sockets of a server where the core's file describes one), each kernel's parallel loop cut "
                   "into one chunk per core as OpenMP's static schedule does; CPU targets only (default 1)")


def _wide(p: argparse.ArgumentParser) -> None:
    p.add_argument("--wide", action="store_true",
                   help="tables with every column (bytes at each memory level, registers, ...), 200 columns wide "
                   "when piped; the default layout fits 100 columns")


def _gpus(p: argparse.ArgumentParser, training: bool) -> None:
    p.add_argument("--gpus", type=int, default=1, metavar="N",
                   help="N GPUs of one server: the forward pass split by Megatron-LM's tensor parallelism (each "
                   "layer's heads and feed-forward columns shared out, two all-reduces per layer)"
                   + ("; with --training, the step's batch split (data parallel, as PyTorch's "
                      "DistributedDataParallel) and its gradients all-reduced, or with --parallel tensor every "
                      "layer split, two all-reduces forward and two backward per layer" if training else "")
                   + "; GPU targets only")
    p.add_argument("--parallel", choices=("data", "tensor") if training else ("tensor",),
                   help="with --gpus: how the work is split (default: data with --training, else tensor)")
    p.add_argument("--link", choices=("nvlink", "pcie"), default="nvlink",
                   help="with --gpus: what carries the all-reduces (default nvlink: NVSwitch in an 8-GPU server)")


def _training_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--training", action="store_true",
                   help="cost one fine-tuning step instead of a forward pass: forward, backward and the AdamW "
                   "update of a 2-label classifier, per target, and the whole fine-tuning run it implies")
    p.add_argument("--epochs", type=int, help="with --training: epochs of the run (default 3)")
    p.add_argument("--lora", type=int, metavar="R",
                   help="with --training: the step of LoRA adapters of rank R (peft), next to the full step")
    p.add_argument("--lora-alpha", type=float, metavar="A", help="with --lora: the adapters' scale is A / R "
                   "(default A = 2R)")
    p.add_argument("--lora-targets", metavar="NAMES", help="with --lora: the linear layers to adapt, "
                   "comma-separated from query, key, value, dense (default query,value)")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="isasim", description="ISA-level simulator and cost model for BERT: capture the graph "
                     "from PyTorch, lower every op to machine instructions, count and execute them.",
                     epilog="Every term the tables print (latency, port, bound, sectors, occupancy, ...) is "
                     "explained in docs/glossary.md; docs/tour.md is a guided tour, docs/api.md the Python API.")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    t = sub.add_parser("trace", help="count instructions, cycles and bytes per op, per layer, per target",
                       description="Cost every op of the model's forward pass on each target (no execution).")
    _common(t)
    _precision(t)
    t.add_argument("--format", choices=("table", "json", "csv"), default="table")
    _wide(t)
    t.add_argument("-o", "--output", type=Path, help="write the report to this file instead of stdout")
    t.add_argument("--chrome-trace", type=Path, metavar="FILE",
                   help="also write the kernels as Chrome trace events (open in Perfetto or chrome://tracing)")
    _training_args(t)
    _gpus(t, training=True)
    _cores(t, "every kernel costed")
    t.add_argument("--core-aten", action="store_true",
                   help="decompose to core ATen (addmm, bmm, native_layer_norm, ...) before lowering: slower "
                   "capture, and eval-mode dropout becomes a clone that is costed")

    c = sub.add_parser("check", help="execute the lowered programs on real inputs and compare with PyTorch",
                       description="Run every lowered op on each target with real weights and inputs; compare "
                       "every op and the final hidden states with PyTorch. Exit 0 only if all targets pass.")
    _common(c)
    c.add_argument("--text", help="input text, tokenised with the bert-base-uncased vocabulary; the tokens are "
                   "shown, the sequence is as long as they are (unless --seq is given), and a classifier's "
                   "predicted label is shown per target next to PyTorch's")
    c.set_defaults(seq=None)  # check: 128, or the text's length
    _precision(c)
    c.add_argument("--format", choices=("table", "json"), default="table")
    _wide(c)
    c.add_argument("--tolerance", type=float, default=1e-4,
                   help="max abs error on the final hidden states (default 1e-4)")
    c.add_argument("--on-host", action="store_true",
                   help="also assemble every kernel and run the machine code (x86-64 natively, AArch64 under "
                   "qemu-aarch64); its results must equal the executor's bit for bit")
    c.add_argument("--dataset", choices=("train", "dev", "test"),
                   help="a classifier saved by `isasim finetune`: run every sentence of this split of the "
                   "movie/TV dataset as one batch (this sets --batch, and --seq to the longest sentence); "
                   "every predicted label must agree with PyTorch's")
    _cores(c, "every kernel executed")
    _gpus(c, training=False)
    c.add_argument("--jobs", type=int, default=None,
                   help="targets checked at once, each in its own process (default: one per core, no more than "
                   "the targets and the memory allow; 1: all in this process)")

    e = sub.add_parser("emit", help="write every kernel as a standalone assembly file plus manifest.json",
                       description="Emit each lowered kernel as a GNU as file (a function under the platform "
                       "ABI taking its buffers' addresses), with llvm-mca region markers around its hottest "
                       "loop, and manifest.json with argument order and isasim's predicted cycles.")
    _common(e)
    _precision(e)
    e.add_argument("--op", help="only kernels of this node name or op (e.g. linear_3, gelu)")
    e.add_argument("-o", "--output", type=Path, required=True, help="directory to write into")

    x = sub.add_parser("explain", help="one kernel's hottest loop: instructions, their costs, a timeline, "
                       "and the bound that decides", description="Teach what one kernel's inner loop costs and "
                       "why: each instruction's latency, throughput, ports and their source; port pressure; "
                       "the deciding bound and what would move it; a cycle-by-cycle timeline.")
    _common(x)
    _precision(x)
    x.add_argument("--op", required=True, help="a node name (e.g. linear_3) or an op (e.g. gelu); first match")
    x.add_argument("--iterations", type=int, default=4, help="iterations in the timeline (default 4)")
    x.add_argument("--format", choices=("table", "json"), default="table")
    _wide(x)
    x.add_argument("--chrome-trace", type=Path, metavar="FILE",
                   help="also write the timeline as Chrome trace events, a track per port (Perfetto)")

    cm = sub.add_parser("compare", help="every target and microarchitecture side by side, and cycles by op family",
                        description="What the model's forward pass costs on every target x microarchitecture: "
                        "instructions, cycles, time, FLOP/cycle against peak, bytes per level, arithmetic "
                        "intensity, speed-up over scalar x86-64, the dominant bound; then each op family's "
                        "share of the cycles.")
    cm.add_argument("model", help="bert-base, bert-large, minilm, or a folder with config.json")
    cm.add_argument("--seq", type=int, default=128, help="sequence length (default 128)")
    cm.add_argument("--batch", type=int, default=1, help="batch size (default 1)")
    cm.add_argument("--seed", type=int, default=0, help=argparse.SUPPRESS)
    _precision(cm)
    cm.add_argument("--format", choices=("table", "markdown", "csv", "json"), default="table")
    _wide(cm)
    cm.add_argument("--plot", type=Path, metavar="FILE.png",
                    help="also draw a roofline per op family and the cycles by op family (matplotlib)")
    _training_args(cm)
    _gpus(cm, training=True)

    ft = sub.add_parser("finetune", help="fine-tune a BERT to tell movie from TV-show sentences (the shipped "
                        "dataset) and save it", description="BertForSequenceClassification on the base model's "
                        "encoder, AdamW and cross-entropy on models/data/movie_tv (see its DATA_CARD.md); dev "
                        "accuracy per epoch, test accuracy at the end; saved as safetensors with "
                        "save_pretrained, ready for `isasim check FOLDER --dataset test`.")
    ft.add_argument("--base", default="minilm", help="the encoder to start from (default minilm)")
    ft.add_argument("--epochs", type=int, default=3)
    ft.add_argument("--batch", type=int, default=16)
    ft.add_argument("--lr", type=float, help="AdamW's learning rate (default 2e-5; with --lora 5e-4)")
    ft.add_argument("--seq", type=int, default=32, help="tokens per sentence, padded (default 32)")
    ft.add_argument("--seed", type=int, default=0)
    ft.add_argument("-o", "--output", type=Path, required=True, help="folder to save the fine-tuned model in")
    ft.add_argument("--lora", type=int, metavar="R", help="train LoRA adapters of rank R (peft) and the classifier "
                    "head only; the folder gets the merged model and adapter/ the adapter")
    ft.add_argument("--lora-alpha", type=float, metavar="A", help="with --lora: the adapters' scale is A / R "
                    "(default A = 2R)")
    ft.add_argument("--lora-targets", metavar="NAMES", help="with --lora: the linear layers to adapt, "
                    "comma-separated from query, key, value, dense (default query,value)")

    h = sub.add_parser("host", help="this machine against the model: its core and real clock, and every kernel's "
                       "machine code timed natively next to its predicted time",
                       description="Identify this host's core (CPUID as /proc/cpuinfo reports it) and the described "
                       "microarchitecture nearest to it, measure its clock with a chain of dependent adds, run "
                       "every emitted kernel natively (warm, in --repeat rounds over all kernels, the clock "
                       "measured again around every call) and print its predicted and measured time, their "
                       "ratio and the deciding bound; then the median |ratio - 1| over kernels of at least 1% "
                       "of the forward, the time-weighted error and the forward's ratio. "
                       "x86-64 hosts; targets default to those the host runs.")
    _common(h)
    _precision(h)
    h.add_argument("--repeat", type=int, default=5,
                   help="rounds over every kernel, three timed calls each after a warm-up; the fewest cycles "
                   "count (default 5)")
    h.add_argument("--format", choices=("table", "json"), default="table")
    h.add_argument("--all", action="store_true", help="every kernel (default: those of 1%% of the forward or more)")
    h.add_argument("--plot", type=Path, metavar="FILE.png",
                   help="also draw measured against predicted time, one point per kernel, log-log (matplotlib)")

    sc = sub.add_parser("scale", help="the model on 1, 2, 4, ... cores of a socket or GPUs of a server: speed-up, "
                        "efficiency and what stops scaling",
                        description="Cost the model's forward pass (with --training: a fine-tuning step) on each "
                        "core count of one CPU socket (or two, where the core's file describes a two-socket server), "
                        "every kernel's parallel loops split across the cores (OpenMP's static schedule), and print "
                        "time, speed-up, parallel efficiency, the deciding bound and the op family that scales worst "
                        "at each point; the socket's core count, shared last-level caches, DRAM bandwidth, links "
                        "between sockets and fork/join cost come from the core's uarch file, with sources. With "
                        "--gpus, a fine-tuning step split by its batch across the GPUs of one server (--parallel "
                        "data), or the forward pass (with --training: the fine-tuning step) split by Megatron-LM's "
                        "tensor parallelism (--parallel tensor), with the all-reduces over --link.")
    sc.add_argument("model", help="bert-base, bert-large, minilm, or a folder with config.json")
    sc.add_argument("--target", required=True, metavar="T", help="one CPU target (see 'isasim targets')")
    sc.add_argument("--uarch", metavar="U", help="the core (default: the target's own)")
    sc.add_argument("--cores", metavar="LIST",
                    help="core counts, comma-separated; 'all' is the socket's (default 1,2,4,8,all)")
    sc.add_argument("--gpus", metavar="LIST", help="instead of --cores: GPU counts, e.g. 1,2,4,8, over which a "
                    "fine-tuning step of --batch sentences is split (data parallel; a GPU target)")
    sc.add_argument("--parallel", choices=("data", "tensor"),
                    help="with --gpus: data (default: a fine-tuning step, its batch split) or tensor (each layer "
                    "split as Megatron-LM splits it: the forward pass, or with --training the fine-tuning step)")
    sc.add_argument("--link", choices=("nvlink", "pcie"), default="nvlink",
                    help="with --gpus: what carries the all-reduces (default nvlink)")
    sc.add_argument("--training", action="store_true",
                    help="a fine-tuning step (forward, backward, AdamW) at each point instead of the forward pass: "
                    "on --cores, or on --gpus with --parallel tensor (--parallel data always costs one)")
    sc.add_argument("--seq", type=int, default=128, help="sequence length (default 128)")
    sc.add_argument("--batch", type=int, default=1, help="batch size (default 1)")
    sc.add_argument("--seed", type=int, default=0, help=argparse.SUPPRESS)
    _precision(sc)
    sc.add_argument("--format", choices=("table", "json"), default="table")
    sc.add_argument("--plot", type=Path, metavar="FILE.png", help="also draw the speed-up against ideal (matplotlib)")

    sw = sub.add_parser("sweep", help="a grid of models x seqs x batches x precisions x targets, costed as Dask "
                        "tasks, one row per point in a CSV", description="Cost every point of a grid as `isasim "
                        "trace` would (its totals: instructions, cycles, seconds, the deciding bound, bytes per "
                        "level, each op family's share of the cycles), each point a task on a Dask cluster: a "
                        "local one of worker processes by default, or --scheduler. Rows are appended to -o as "
                        "points finish; points already in it are skipped, so a killed sweep resumes where it "
                        "stopped. A failing point is recorded with its one-line error and the sweep goes on "
                        "(exit status 1 if any failed). Every list flag is repeatable and takes commas.",
                        epilog="On several machines: run `dask scheduler` on one, `dask worker tcp://HOST:8786` on "
                        "each (with isasim installed), then `isasim sweep ... --scheduler tcp://HOST:8786`.")
    sw.add_argument("--model", action="append", metavar="M", required=True,
                    help="bert-base, bert-large, minilm, or a folder with config.json (repeatable)")
    sw.add_argument("--seq", action="append", metavar="LIST", help="sequence lengths, e.g. 32,64,128 (default 128)")
    sw.add_argument("--batch", action="append", metavar="LIST", help="batch sizes, e.g. 1,8,32 (default 1)")
    sw.add_argument("--target", action="append", metavar="T",
                    help="targets (default: all, as is 'all'); a target a core or precision cannot run is left "
                    "out with a note")
    sw.add_argument("--uarch", action="append", metavar="U",
                    help="cores: every target runs on each one of its instruction set (default: its own)")
    sw.add_argument("--precision", action="append", metavar="LIST",
                    help="fp32 (default), bf16, int8, fp16: see 'isasim trace --help'")
    sw.add_argument("--cores", action="append", metavar="LIST",
                    help="core counts of each CPU target's socket, e.g. 1,8,all (default 1): see 'isasim scale'; "
                    "a GPU target is costed once")
    sw.add_argument("--seed", type=int, default=0, help=argparse.SUPPRESS)
    sw.add_argument("-o", "--output", type=Path, required=True,
                    help="the table: CSV, or JSON lines when it ends in .jsonl (or with --format)")
    sw.add_argument("--format", choices=("csv", "jsonl"), help="the table's format (default: by -o's suffix)")
    sw.add_argument("--plot", type=Path, metavar="FILE.png",
                    help="also draw time against seq per target (log-log) and the fastest target per (seq, batch)")
    sw.add_argument("--scheduler", metavar="ADDRESS", help="an existing Dask cluster's scheduler, tcp://HOST:8786")
    sw.add_argument("--workers", type=int, help="worker processes of the local cluster (default: this machine's "
                    "cores)")
    sw.add_argument("--serial", action="store_true", help="no cluster: every point in this process, in order")
    sw.add_argument("--retry-failed", action="store_true",
                    help="run again the points whose rows in -o record a failure (default: they count as done)")

    sub.add_parser("targets", help="list targets and microarchitectures with the sources of their numbers")
    return parser


@contextmanager
def _progress(enabled: bool):
    """A progress bar on stderr for long work; silent when stderr is not a terminal."""
    if not enabled:
        yield None
        return
    from rich.console import Console
    from rich.progress import (BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn,
                               TimeRemainingColumn)

    with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                  TextColumn("eta"), TimeRemainingColumn(), console=Console(stderr=True), transient=True) as bar:
        tasks: dict[str, int] = {}

        def update(what: str, done: int, total: int) -> None:
            if what not in tasks:
                tasks[what] = bar.add_task(what, total=total)
            bar.update(tasks[what], completed=done)

        yield update


def cmd_trace(args, out: Console) -> int:
    from isasim import api
    from isasim.cli import output, render

    if args.training:
        return _training(args, out, every_machine=False)
    _no_epochs_without_training(args)
    for flag, path in (("-o", args.output), ("--chrome-trace", args.chrome_trace)):
        if path:
            output.check_writable(path, flag)
    with _progress(sys.stderr.isatty()) as progress:
        report = api.trace(args.model, args.target, args.uarch, seq=args.seq, batch=args.batch, seed=args.seed,
                           core_aten=args.core_aten, precision=args.precision, cores=args.cores, gpus=args.gpus,
                           parallel=args.parallel or "tensor", link=args.link, progress=progress)
    if args.chrome_trace:
        output.write_text(args.chrome_trace, render.trace_chrome(report))
        _wrote(args.chrome_trace, "the kernels as Chrome trace events (open in Perfetto)")
    if args.format == "json":
        text = render.to_json(report)
    elif args.format == "csv":
        text = render.trace_csv(report)
    else:
        text = None
    if args.output:
        if text is None:
            from rich.console import Console

            with output.replacing(args.output) as f:
                render.trace_tables(report, Console(file=f, width=200 if args.wide else 100), args.wide)
        else:
            output.write_text(args.output, text)
        _wrote(args.output, f"the report ({args.format})")
    elif text is not None:
        sys.stdout.write(text if text.endswith("\n") else text + "\n")
    else:
        render.trace_tables(report, out, args.wide)
    return 0


def _wrote(path: Path, what: str) -> None:
    """One line naming a file a command wrote, on stderr (stdout may be carrying data)."""
    print(f"isasim: wrote {what} to {path}", file=sys.stderr)


def _no_epochs_without_training(args) -> None:
    if args.epochs is not None:
        raise UserError("--epochs sizes a fine-tuning run: add --training")
    if args.lora is not None or args.lora_alpha is not None or args.lora_targets is not None:
        raise UserError("--lora costs a LoRA fine-tuning step: add --training")


def _training(args, out: Console, every_machine: bool) -> int:
    """trace/compare --training: one fine-tuning step per target, and the run (epochs x steps) it implies."""
    from isasim import api
    from isasim.cli import training

    if getattr(args, "core_aten", False) or getattr(args, "chrome_trace", None) or getattr(args, "output", None):
        raise UserError("--training prints its summary only: drop --core-aten, --chrome-trace and -o")
    if args.precision != "fp32":
        raise UserError(f"--training costs a float32 fine-tuning step: drop --precision {args.precision}")
    render = {"table": lambda r: training.render_table(r, out, getattr(args, "wide", False)),
              "json": training.render_json,
              "csv": training.render_csv, "markdown": training.render_markdown}[args.format]
    with _progress(sys.stderr.isatty()) as progress:
        report = api.training_step(args.model, getattr(args, "target", None), getattr(args, "uarch", None),
                                   seq=args.seq, batch=args.batch, seed=args.seed,
                                   epochs=3 if args.epochs is None else args.epochs, every_machine=every_machine,
                                   lora=args.lora, lora_alpha=args.lora_alpha, lora_targets=args.lora_targets,
                                   gpus=args.gpus, parallel=args.parallel or "data", link=args.link,
                                   cores=getattr(args, "cores", 1), progress=progress)
    text = render(report)
    if text:
        sys.stdout.write(text)
    return 0


def cmd_emit(args, out: Console) -> int:
    from isasim import api

    with _progress(sys.stderr.isatty()) as progress:
        emitted = api.emit(args.model, args.output, args.target, args.uarch, seq=args.seq, batch=args.batch,
                           seed=args.seed, op=args.op, precision=args.precision, progress=progress)
    for t in emitted.targets:
        kinds = sorted({Path(k["file"]).suffix for k in t.manifest["kernels"]})
        if any(k.get("ptxas") for k in t.manifest["kernels"]):
            kinds.append(".cubin from ptxas")
        out.print(f"{len(t.manifest['kernels'])} {t.target} kernels for {t.uarch} in {t.folder} "
                  f"({', '.join(kinds + ['manifest.json'])})", soft_wrap=True)
    return 0


def cmd_explain(args, out: Console) -> int:
    import json

    from isasim import api
    from isasim.cli import output
    from isasim.cli.explain import chrome_trace, render

    if args.chrome_trace:
        output.check_writable(args.chrome_trace, "--chrome-trace")
    results = api.explain(args.model, args.op, args.target, args.uarch, seq=args.seq, batch=args.batch,
                          seed=args.seed, iterations=args.iterations, precision=args.precision)
    if args.chrome_trace:
        output.write_text(args.chrome_trace, json.dumps(chrome_trace(results)))
        _wrote(args.chrome_trace, "the timeline as Chrome trace events (open in Perfetto)")
    if args.format == "json":
        sys.stdout.write(json.dumps([r.to_dict() for r in results], indent=2) + "\n")
    else:
        for r in results:
            render(r, out, args.wide)
    return 0


def cmd_compare(args, out: Console) -> int:
    from isasim import api
    from isasim.cli import compare

    if args.training:
        if args.plot:
            raise UserError("--plot draws the forward pass's roofline: drop it with --training")
        return _training(args, out, every_machine=True)
    _no_epochs_without_training(args)
    if args.gpus != 1:
        raise UserError("compare --gpus costs a fine-tuning step split across GPUs: add --training (for a "
                        "forward pass split across GPUs: isasim trace --gpus N)")
    if args.plot:
        from isasim.cli.output import check_plot

        check_plot(args.plot)
    with _progress(sys.stderr.isatty()) as progress:
        result = api.compare(args.model, seq=args.seq, batch=args.batch, seed=args.seed, precision=args.precision,
                             progress=progress)
    if args.plot:
        from isasim.cli.plot import plot_comparison

        plot_comparison(result, args.plot)
        _wrote(args.plot, "the roofline and the cycles by op family")
    if args.format == "table":
        compare.render_table(result, out, args.wide)
    else:
        render = {"markdown": compare.render_markdown, "csv": compare.render_csv, "json": compare.render_json}
        sys.stdout.write(render[args.format](result))
    return 0


def cmd_check(args, out: Console) -> int:
    from isasim import api
    from isasim.cli import render

    with _progress(sys.stderr.isatty()) as progress:
        report = api.check(args.model, args.target, args.uarch, seq=args.seq, batch=args.batch, seed=args.seed,
                           text=args.text, tolerance=args.tolerance, on_host=args.on_host, dataset=args.dataset,
                           jobs=args.jobs, precision=args.precision, cores=args.cores, gpus=args.gpus,
                           parallel=args.parallel or "tensor", link=args.link, progress=progress)
    if args.format == "json":
        sys.stdout.write(render.to_json(report) + "\n")
    else:
        render.check_table(report, out, args.wide)
    return 0 if report.passed else 1


def cmd_finetune(args, out: Console) -> int:
    from isasim.models.finetune import finetune
    from isasim.models.lora import lora

    adapters = None
    if args.lora is not None:
        adapters = lora(args.lora, args.lora_alpha, args.lora_targets)
    elif args.lora_alpha is not None or args.lora_targets is not None:
        raise UserError("--lora-alpha and --lora-targets shape LoRA adapters: add --lora RANK")
    with _progress(sys.stderr.isatty()) as progress:
        r = finetune(args.base, args.output, args.epochs, args.batch, args.lr, args.seq, args.seed, progress,
                     adapters)
    out.print(f"trained {r.trained_params:,} parameters of the classifier's {r.model_params:,} "
              f"({r.trained_params / r.model_params:.2%})" + (f": LoRA rank {adapters.r}, alpha {adapters.alpha:g} "
                                                               f"on {', '.join(adapters.targets)}, and the head"
                                                               if adapters else ""))
    for e, (loss, acc) in enumerate(zip(r.epoch_loss, r.dev_accuracy), 1):
        out.print(f"epoch {e}: train loss {loss:.4f}, dev accuracy {acc:.1%}")
    saved = "model.safetensors (LoRA merged), config.json, finetune.json, adapter/" if adapters else \
        "model.safetensors, config.json, finetune.json"
    out.print(f"test accuracy {r.test_accuracy:.1%}; saved to {r.output} ({saved})")
    return 0


def cmd_host(args, out: Console) -> int:
    from isasim import api
    from isasim.cli import render

    if args.plot:
        from isasim.cli.output import check_plot

        check_plot(args.plot)  # before the work it would waste
    with _progress(sys.stderr.isatty()) as progress:
        report = api.host(args.model, args.target, args.uarch, seq=args.seq, batch=args.batch, seed=args.seed,
                          repeat=args.repeat, precision=args.precision, progress=progress)
    if args.format == "json":
        sys.stdout.write(render.to_json(report) + "\n")
    else:
        render.host_table(report, out, every=args.all)
    if args.plot:
        from isasim.cli.plot_host import plot_host

        plot_host(report, args.plot)
        _wrote(args.plot, "measured against predicted time per kernel")
    return 0


def _sweep(args, out: Console) -> int:
    from isasim.cli.sweep import cmd_sweep

    return cmd_sweep(args, out)


def cmd_scale(args, out: Console) -> int:
    from isasim import api
    from isasim.cli import scale
    from isasim.cli.output import check_plot

    if args.plot:
        check_plot(args.plot)
    with _progress(sys.stderr.isatty()) as progress:
        gpus = scale.gpu_list(args.gpus) if args.gpus else None
        cores = scale.core_list(args.cores or ("1,2,4,8,all" if gpus is None else ""), allow_empty=gpus is not None)
        report = api.scale(args.model, args.target, args.uarch, cores=cores, gpus=gpus,
                           parallel=args.parallel or "data",
                           link=args.link, seq=args.seq, batch=args.batch, seed=args.seed,
                           precision=args.precision, training=args.training, progress=progress)
    if args.plot:
        scale.plot(report, args.plot)
        _wrote(args.plot, "the speed-up against ideal")
    if args.format == "json":
        sys.stdout.write(scale.to_json(report) + "\n")
    else:
        scale.render_table(report, out)
    return 0


def cmd_targets(args, out: Console) -> int:
    from rich.table import Table

    from isasim.backends import all_machines, load_machine, machine_names
    from isasim.isa.targets import ALL_TARGETS

    table = Table(title="targets", title_justify="left")
    for col in ("target", "ISA", "microarchitectures (default first)", "what it emits"):
        table.add_column(col)
    for t in ALL_TARGETS.values():
        names = [t.default_uarch] + [n for n in machine_names(t) if n != t.default_uarch]
        table.add_row(t.name, t.isa, ", ".join(names), t.description)
    out.print(table)
    for name in all_machines():
        m = load_machine(name)
        out.print(f"[bold]{m.name}[/] ({m.summary()}): {m.description}")
        for s in m.sources:
            out.print(f"   {s}")
    return 0


def main(argv: list[str] | None = None) -> int:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")  # the hub is never needed: models come from disk
    try:
        from rich.console import Console

        args = build_parser().parse_args(argv)
        # Tables fit 100 columns (--wide: 200) when written to a pipe or file; a terminal gives its own width.
        width = None if sys.stdout.isatty() else 200 if getattr(args, "wide", False) else \
            int(os.environ.get("COLUMNS", "0") or 0) or 100
        out = Console(width=width)
        handler = {"trace": cmd_trace, "check": cmd_check, "emit": cmd_emit, "explain": cmd_explain,
                   "compare": cmd_compare, "finetune": cmd_finetune,
                   "host": cmd_host, "targets": cmd_targets, "sweep": _sweep, "scale": cmd_scale}[args.command]
        if getattr(args, "parallel", None) and (getattr(args, "gpus", 1) is None
                                                or getattr(args, "cores", 1) not in (1, None)):
            raise UserError(f"--parallel {args.parallel} says how to split the work across GPUs: add --gpus "
                            f"{'1,2,4' if args.command == 'scale' else 'N'} (--cores splits a CPU's kernels)")
        precision = getattr(args, "precision", "fp32")
        asked_all = not getattr(args, "target", None) and args.command not in ("host", "compare", "sweep", "scale")
        notes = []
        if asked_all and (getattr(args, "uarch", None) or precision != "fp32") and not getattr(args, "training", 0):
            from isasim.engine.targets import left_out

            notes = left_out(args.uarch, precision)  # every target was asked for: say which are left out
        code = handler(args, out)
        for note in notes:  # (after the work: a command that fails says only what went wrong)
            print(f"isasim: note: {note}", file=sys.stderr)
        return code
    except UserError as e:
        print(f"isasim: error: {e}", file=sys.stderr)
        return EXIT_USAGE
    except OSError as e:  # an output path that cannot be written, a disk that is full
        print(f"isasim: error: {e.strerror or e}: {e.filename or ''}".rstrip(": "), file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print("isasim: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
