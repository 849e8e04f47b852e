"""Render reports for people (rich tables) and for programs (JSON, CSV)."""

from __future__ import annotations

import csv
import io
import json
import re

from rich import box
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from isasim.engine.check import CheckReport
from isasim.engine.trace import LEVELS, TraceReport


def human(n: float, decimals: int | None = None) -> str:
    """1.23M, 4.56K; below a thousand, `decimals` places (default: none for whole numbers, else one)."""
    for unit, size in (("T", 1e12), ("G", 1e9), ("M", 1e6), ("K", 1e3)):
        if abs(n) >= size:
            return f"{n / size:.2f}{unit}"
    if decimals is not None:
        return f"{n:.{decimals}f}"
    return f"{n:.0f}" if float(n).is_integer() else f"{n:.1f}"


# The ops torch.export records outside any module in a forward pass: HF's attention-mask construction
MASK_OPS = {"arange", "new_ones", "ge", "le", "lt", "gt", "and", "__and__", "index", "zeros", "where", "add", "sub",
            "mul", "expand", "view", "unsqueeze", "to", "_to_copy", "slice", "full", "ones", "rsub", "eq", "ne"}


def short_op(op: str) -> str:
    return op.removeprefix("aten.").removeprefix("isasim.").removesuffix(".default")


def op_name(op: str) -> str:
    """The op without its namespace and overload (aten.add.Tensor -> add), for narrow tables; JSON and CSV keep
    the whole name."""
    return short_op(op).split(".")[0]


def _group(name: str, rows) -> tuple[tuple[str, str], str]:
    """(the group row: its name and what it stands for, the module prefix its rows share and do not repeat)."""
    if name.startswith("layer"):
        m = re.search(r"^(.*encoder\.layer\.\d+)", rows[0].module)
        prefix = m.group(1) if m else ""
        return (name, f"[dim]{prefix}.*[/]" if prefix else ""), prefix
    if name == "(top)" and all(op_name(r.op) in MASK_OPS for r in rows):
        return ("attention mask", "[dim]from attention_mask[/]"), ""
    return (name, f"[dim]{name}.*[/]"), name


def _in_group(module: str, prefix: str) -> str:
    """A module path without the group's prefix (the group row shows it once)."""
    if prefix and (module == prefix or module.startswith(prefix + ".")):
        return module[len(prefix) + 1:]
    return module


# (header, cell, right-aligned, wide layout only)
CPU_COLUMNS = (
    ("op", lambda r: op_name(r.op), False, False), ("module", None, False, False),
    ("shape", lambda r: r.shape, False, False), ("instrs", lambda r: human(r.instructions), True, False),
    ("cycles", lambda r: human(r.cycles), True, False), ("bound", lambda r: r.bound.label, False, False),
    *((f"{lv.upper()} B", lambda r, lv=lv: human(r.bytes[lv]), True, lv != "dram") for lv in LEVELS),
)
_LIMITER = {"registers": "regs", "shared memory": "smem", "grid": "grid"}


def _launch(cell):
    """A column of a kernel's launch: empty on a row that launches none (an all-reduce between GPUs)."""
    return lambda r: cell(r) if r.simt is not None else ""


SIMT_COLUMNS = (  # L2 bytes and microseconds: in JSON and CSV
    ("op", lambda r: op_name(r.op), False, False), ("module", None, False, False),
    ("shape", lambda r: r.shape, False, True),
    ("grid x blk", _launch(lambda r: f"{r.simt['grid']}x{r.simt['block']}"), True, False),
    ("regs", _launch(lambda r: str(r.simt["registers"])), True, True),
    ("smem", _launch(lambda r: human(r.simt["shared_bytes"])), True, True),
    ("occupancy", _launch(lambda r: f"{r.simt['occupancy']:.0%} {_LIMITER.get(r.simt['limiter'], r.simt['limiter'])}"),
     True, False),
    ("warp ins", lambda r: human(r.instructions), True, True),
    ("sect/req", _launch(lambda r: f"{r.simt['sectors_per_request']:.1f}"), True, False),
    ("bank x", _launch(lambda r: f"{r.simt['bank_conflict_factor']:.2f}" if r.simt["shared_requests"] else "-"), True,
     True),
    ("DRAM B", lambda r: human(r.bytes["dram"]), True, True),
    ("cycles", lambda r: human(r.cycles), True, False), ("bound", lambda r: r.bound.label, False, False),
)


def _table(title: str, columns, wide: bool) -> tuple[Table, list]:
    shown = [c for c in columns if wide or not c[3]]
    table = Table(title=title, title_justify="left", box=box.HEAVY_HEAD if wide else box.SIMPLE_HEAD,
                  pad_edge=wide, collapse_padding=not wide)
    for header, _, right, _ in shown:
        table.add_column(header, justify="right" if right else "left", overflow="fold")
    return table, shown


def trace_tables(report: TraceReport, console: Console, wide: bool = False) -> None:
    """Each target's ops grouped by layer; the narrow layout fits 100 columns, `wide` adds every byte column
    (and, on a GPU, registers, shared memory, bank conflicts)."""
    console.print(f"[bold]{report.model}[/] seq {report.seq} batch {report.batch}: "
                  f"{report.params:,} parameters, {report.flops:,} matmul FLOPs; "
                  f"{report.views} view ops move no data")
    for t in report.targets:
        gpu = bool(t.ops) and t.ops[0].simt is not None
        title = f"{t.target} on {t.uarch} @ {t.clock_ghz} GHz" + (" (per kernel launch)" if gpu else "") + \
            (f", {t.cores} cores" if t.cores > 1 else "") + \
            (f", one of {t.gpus} GPUs (tensor parallel)" if t.gpus > 1 else "")
        table, shown = _table(title, SIMT_COLUMNS if gpu else CPU_COLUMNS, wide)
        for first, rows, repeats in _layers(t.ops):
            (title, what), prefix = _group(first, rows)
            table.add_row(f"[bold]{title}[/]", what)
            for r in rows:
                table.add_row(*(_in_group(r.module, prefix) if cell is None else cell(r) for _, cell, _, _ in shown))
            if repeats:
                table.add_row(f"[italic]{repeats[0]}-{repeats[-1].split()[-1]}[/]",
                              f"[italic]each as {first} (x{len(repeats)})[/]")
            table.add_section()
        total = {"op": "total", "instrs": human(t.instructions), "warp ins": human(t.instructions),
                 "cycles": human(t.cycles), "bound": _main_bound(t.bounds), "DRAM B": human(t.bytes["dram"]),
                 "grid x blk": f"{len(t.ops)} kernels", **{f"{lv.upper()} B": human(t.bytes[lv]) for lv in LEVELS}}
        table.add_row(*(total.get(header, "") for header, *_ in shown), style="bold")
        console.print(table)
        what = (f"{len(t.ops)} kernel launches, {t.instructions:,} warp instructions" if gpu else
                f"{t.instructions:,} instructions")
        console.print(f"  {what}, {t.cycles:,.0f} cycles = {t.seconds * 1e3:.3f} ms; {t.fp_ops:,} floating-point "
                      "operations; cycles by bound: " + ", ".join(f"{k} {v / max(t.cycles, 1):.0%}" for k, v in
                                                                  sorted(t.bounds.items(), key=lambda kv: -kv[1])))


def _layers(ops) -> list[tuple[str, list, list[str]]]:
    """Rows grouped by layer; the run of layers that follow one and cost exactly the same (BERT's encoder
    layers) is folded into it, so the table shows each distinct layer once (JSON and CSV keep every op)."""
    groups: list[tuple[str, list]] = []
    for r in ops:
        if not groups or groups[-1][0] != r.layer:
            groups.append((r.layer, []))
        groups[-1][1].append(r)

    def key(rows):
        return [(r.op, r.module.split(".", 3)[-1], r.shape, r.instructions, r.cycles, r.bound.label,
                 tuple(r.bytes.values())) for r in rows]

    out: list[tuple[str, list, list[str]]] = []
    for name, rows in groups:
        if out and name.startswith("layer") and out[-1][0].startswith("layer") and key(out[-1][1]) == key(rows):
            out[-1][2].append(name)
        else:
            out.append((name, rows, []))
    return out


def _main_bound(bounds: dict[str, float]) -> str:
    return max(bounds.items(), key=lambda kv: kv[1])[0] if bounds else ""


# GPU kernels only (empty for CPU targets); instructions are then warp instructions
SIMT_CSV = ("grid", "block", "registers", "shared_bytes", "occupancy", "limiter", "sectors", "sectors_per_request",
            "wavefronts", "bank_conflict_factor")


def trace_csv(report: TraceReport) -> str:
    buf = io.StringIO()
    w = csv.writer(buf)
    w.writerow(["target", "uarch", "layer", "name", "op", "module", "shape", "instructions", "cycles", "bound",
                *(f"bytes_{lv}" for lv in LEVELS), "flops", "fp_ops", *SIMT_CSV])
    for t in report.targets:
        for r in t.ops:
            w.writerow([t.target, t.uarch, r.layer, r.name, r.op, r.module, r.shape, r.instructions,
                        f"{r.cycles:.1f}", r.bound.label, *(r.bytes[lv] for lv in LEVELS), r.flops, r.fp_ops,
                        *((r.simt[k] for k in SIMT_CSV) if r.simt else ("",) * len(SIMT_CSV))])
    return buf.getvalue()


def check_table(report: CheckReport, console: Console, wide: bool = False) -> None:
    int8, low = report.precision == "int8", report.precision != "fp32"
    against = "the int8 reference (PyTorch with each quantized linear layer in numpy, models/quantize.py)" \
        if int8 else "float32 PyTorch's" if low else "PyTorch's"
    added = {"int8": "each quantization op", "bf16": "each bf16 op (rounding, linear)",
             "fp16": "each fp16 linear (tensor cores)"}.get(report.precision)
    table = Table(title=f"{report.model} seq {report.seq} batch {report.batch}{' ' + report.precision if low else ''}: "
                        "the lowered programs, executed, against PyTorch", title_justify="left",
                  box=box.HEAVY_HEAD if wide else box.SIMPLE_HEAD, collapse_padding=not wide,
                  caption=f"final: the model's output against {against}"
                          + (f"; vs fp32: against float32 PyTorch's; {report.precision} ops: {added} against its "
                             "reference on this target's own inputs, rounded as its instructions round (pass: all "
                             "bit-identical; the final error is not held to the tolerance, as a float rounding "
                             "upstream can move a value across a rounding boundary)" if low else
                             f" (pass: abs err <= {report.tolerance:g})")
                          + "; counts: the executor's instructions against the cost model's; worst op: the largest "
                          "error of any op, relative to its largest value (errors grow through matmuls; for "
                          "reading only)", caption_justify="left")
    cols = ("target", "uarch", "final abs err") + (("vs fp32", f"{report.precision} ops") if low
                                                   else ("final rel err",)) + (
        "instructions executed", "counts", "worst op", "result")
    for col in cols:
        numbers = col in ("target", "uarch", "worst op", "instructions executed")  # never split
        table.add_column(col, overflow="fold", no_wrap=numbers,
                         justify="right" if "err" in col or "executed" in col else "left")
    for t in report.targets:
        worst = t.worst_ops[0] if t.worst_ops else None
        middle = (f"{t.max_abs_err_fp32:.1e}", f"{'exact' if t.ops_exact else 'DIFFER'} ({t.ops_checked})") \
            if low else (f"{t.max_rel_err:.1e}",)
        table.add_row(t.target, t.uarch, f"{t.max_abs_err:.1e}", *middle,
                      f"{t.instructions_executed:,}", "equal" if t.counts_match_cost_model else "DIFFER",
                      f"{worst.name} {worst.max_rel_err:.0e}" if worst else "",
                      "[green]pass[/]" if t.passed else "[red]FAIL[/]")
    if report.tokens:
        console.print(f"tokens ({len(report.tokens)}): " + escape(" ".join(report.tokens)), highlight=False)
    console.print(table)
    if report.reference_prediction:
        console.print("predicted: " + "; ".join(
            f"{who} [bold]{p['label']}[/] {p['probability']:.1%}" for who, p in
            [("PyTorch", report.reference_prediction)] + [(t.target, t.prediction) for t in report.targets]))
    console.print(f"checked in {report.jobs} process{'es' if report.jobs > 1 else ''}: "
                  + ", ".join(f"{t.target} {t.seconds:.0f} s" for t in report.targets)
                  + f"; peak memory of a process {report.peak_rss_bytes / 1e9:.1f} GB", highlight=False)
    whose = "float32 PyTorch's" if low else "PyTorch's"
    for t in report.targets:
        if t.label_agreement is not None:
            console.print(f"  {t.target}: predicted labels agree with {whose} on {t.label_agreement:.1%} of "
                          f"{report.batch} sentences; accuracy {t.accuracy:.1%}")
        if t.gpus > 1:
            console.print(f"  {t.target}: each layer split across {t.gpus} GPUs (tensor parallel), "
                          f"{t.split_kernels} kernels run as one shard per GPU, the partial sums added in GPU order")
        if t.cores > 1:
            same = "every one bit-identical to the whole kernel on one core" if t.bit_identical_to_one_core else \
                "some DIFFER from the whole kernel on one core"
            console.print(f"  {t.target}: each kernel on {t.cores} cores, {t.split_kernels} of them split into "
                          f"chunks; {same}")
        h = t.on_host
        if h and "skipped" in h:
            console.print(f"  {t.target} machine code: not run here: {h['skipped']}")
        elif h:
            same = "bit-identical to the executor" if h["bit_identical_to_executor"] else \
                f"DIFFERS from the executor in {', '.join(h['differing_kernels'])}"
            console.print(f"  {t.target} machine code, run {h['ran']}: {h['kernels']} kernels, {same}; "
                          f"max abs err vs {'the int8 reference' if int8 else 'PyTorch'} {h['max_abs_err']:.2e}")
    for anchor, what in ((report.pytorch_dynamic_int8, "int8 (quantize_dynamic)"),
                         (report.pytorch_autocast_bf16, "bf16 (CPU autocast)"),
                         (report.pytorch_half_fp16, "fp16 (model.half() on the CPU)")):
        if anchor:
            console.print(f"  PyTorch's own {what}: labels agree with float32 PyTorch's on "
                          f"{anchor['label_agreement']:.1%}; accuracy {anchor['accuracy']:.1%}; logits' max abs err "
                          f"{anchor['max_abs_err']:.1e}")


def trace_chrome(report: TraceReport) -> str:
    """Kernels as Chrome trace events (open in Perfetto or chrome://tracing): one process per target, each
    kernel a slice as long as its predicted time at the core's clock."""
    events = []
    for pid, t in enumerate(report.targets):
        events.append({"ph": "M", "name": "process_name", "pid": pid, "args": {"name": f"{t.target} on {t.uarch}"}})
        ts = 0.0
        for r in t.ops:
            dur = r.cycles / (t.clock_ghz * 1e3)  # microseconds
            events.append({"ph": "X", "pid": pid, "tid": 0, "ts": ts, "dur": dur, "name": short_op(r.op),
                           "cat": r.layer, "args": {"node": r.name, "module": r.module, "shape": r.shape,
                                                    "instructions": r.instructions, "cycles": r.cycles,
                                                    "bound": r.bound.label, "bytes": r.bytes}})
            ts += dur
    return json.dumps({"traceEvents": events, "displayTimeUnit": "ms"})


def to_json(report) -> str:
    return json.dumps(report.to_dict(), indent=2)


def host_table(report, console: Console, every: bool = False) -> None:
    """`isasim host`: the host, then per target its kernels, predicted against measured, and the summary."""
    from isasim.engine.host import SHARE

    h, clock = report.host, report.host["clock"]
    console.print(f"host: {h['name']}: {h['core']} (vendor {h['vendor']}, family {h['family']}, model "
                  f"{h['model']}); {', '.join(h['flags'])}", highlight=False)
    console.print(f"  predicted on {h['uarch']}: {h['why']}", highlight=False)
    console.print(f"  clock {clock['ghz']:.2f} GHz measured (dependent adds; multiplies say {clock['mul_ghz']:.2f}); "
                  f"/proc/cpuinfo says {clock['reported_ghz']} GHz", highlight=False)
    if clock.get("fma_per_cycle"):
        shared = clock["fma_per_cycle"] < 0.9 * clock["fma_described"]
        console.print(f"  vector FMA: {clock['fma_per_cycle']:.2f} per cycle measured, {clock['fma_described']:.2f} "
                      f"described" + (": another thread shares the FP pipes (an SMT sibling or a neighbour on a "
                                      "shared host), so vector kernels run slower than predicted" if shared else ""),
                      highlight=False)
    for t in report.targets:
        table = Table(title=f"{t.target} on {t.uarch}: {report.model} seq {report.seq} (predicted at the clock "
                      "measured around each kernel)", title_justify="left", box=box.SIMPLE_HEAD, collapse_padding=True)
        for col in ("kernel", "op", "calls", "GHz", "predicted", "measured", "meas/pred", "share", "bound"):
            table.add_column(col, justify="right" if col not in ("kernel", "op", "bound") else "left",
                             no_wrap=True)
        for k in t.kernels:
            if every or k.share >= SHARE:
                table.add_row(k.name, k.op.split(".")[0], str(k.calls), f"{k.clock_ghz:.2f}", _us(k.predicted_s),
                              _us(k.measured_s), f"{k.ratio:.2f}", f"{k.share:.1%}", k.bound)
        console.print(table)
        console.print(f"  median |measured/predicted - 1| {t.median_error:.0%} over kernels of {SHARE:.0%} or more; "
                      f"time-weighted error {t.weighted_error:.0%}; forward measured/predicted "
                      f"{t.forward_ratio:.2f}", highlight=False)


def _us(seconds: float) -> str:
    return f"{seconds * 1e6:,.1f} µs"
