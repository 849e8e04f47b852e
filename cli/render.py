"""Render reports for people (rich tables) and for programs (JSON, CSV)."""

from __future__ import annotations

import csv
import io
import json

from rich.console import Console
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


def trace_tables(report: TraceReport, console: Console) -> None:
    console.print(f"[bold]{report.model}[/] seq {report.seq} batch {report.batch}: "
                  f"{report.params:,} parameters, {report.flops:,} matmul FLOPs; "
                  f"{report.views} view ops move no data")
    for t in report.targets:
        if t.ops and t.ops[0].simt is not None:
            _simt_table(t, console)
            continue
        table = Table(title=f"{t.target} on {t.uarch} @ {t.clock_ghz} GHz", title_justify="left")
        for col in ("op", "module", "shape", "instrs", "cycles", "bound"):
            table.add_column(col, justify="right" if col in ("instrs", "cycles") else "left")
        for lv in LEVELS:
            table.add_column(f"{lv} B", justify="right")
        for first, rows, repeats in _layers(t.ops):
            table.add_row(f"[bold]{first}[/]")
            for r in rows:
                module = r.module.split(".", 3)[-1] if r.layer.startswith("layer") else r.module
                table.add_row(short_op(r.op), module, r.shape, human(r.instructions), human(r.cycles), r.bound.label,
                              *(human(r.bytes[lv]) for lv in LEVELS))
            if repeats:
                table.add_row(f"[italic]{repeats[0]}-{repeats[-1].split()[-1]}[/]",
                              f"[italic]each as {first} (x{len(repeats)})[/]")
            table.add_section()
        table.add_row("total", "", "", human(t.instructions), human(t.cycles), _main_bound(t.bounds),
                      *(human(t.bytes[lv]) for lv in LEVELS), style="bold")
        console.print(table)
        console.print(f"  {t.instructions:,} instructions, {t.cycles:,.0f} cycles = {t.seconds * 1e3:.2f} ms; "
                      f"{t.fp_ops:,} floating-point operations; cycles by bound: "
                      + ", ".join(f"{k} {v / max(t.cycles, 1):.0%}" for k, v in
                                  sorted(t.bounds.items(), key=lambda kv: -kv[1])))


SIMT_COLUMNS = ("op", "module", "shape", "grid x blk", "regs", "smem", "occupancy", "warp ins", "sect/req",
                "bank x", "DRAM B", "cycles", "bound")  # L2 bytes and microseconds: in JSON and CSV
_LIMITER = {"registers": "regs", "shared memory": "smem", "grid": "grid"}


def _simt_row(r) -> list[str]:
    g = r.simt
    module = r.module.split(".", 3)[-1] if r.layer.startswith("layer") else r.module
    return [short_op(r.op), module, r.shape, f"{g['grid']}x{g['block']}", str(g["registers"]),
            human(g["shared_bytes"]), f"{g['occupancy']:.0%} {_LIMITER.get(g['limiter'], g['limiter'])}",
            human(r.instructions), f"{g['sectors_per_request']:.1f}",
            f"{g['bank_conflict_factor']:.2f}" if g["shared_requests"] else "-", human(r.bytes["dram"]),
            human(r.cycles), r.bound.label]


def _simt_table(t, console: Console) -> None:
    """A GPU's kernels: launch geometry, the registers isasim estimates, shared memory per block, occupancy
    with its limiting resource, warp instructions, sectors per global request, shared-memory wavefronts per
    request (1.00 = no bank conflicts), L2 and DRAM bytes, cycles, microseconds and the deciding bound."""
    table = Table(title=f"{t.target} on {t.uarch} @ {t.clock_ghz} GHz (per kernel launch)", title_justify="left")
    for col in SIMT_COLUMNS:
        table.add_column(col, justify="left" if col in ("op", "module", "shape", "bound") else "right",
                         no_wrap=col != "module", min_width=12 if col == "module" else None)
    for first, rows, repeats in _layers(t.ops):
        table.add_row(f"[bold]{first}[/]")
        for r in rows:
            table.add_row(*_simt_row(r))
        if repeats:
            table.add_row(f"[italic]{repeats[0]}-{repeats[-1].split()[-1]}[/]",
                          f"[italic]each as {first} (x{len(repeats)})[/]")
        table.add_section()
    table.add_row("total", "", "", f"{len(t.ops)} kernels", "", "", "", human(t.instructions), "", "",
                  human(t.bytes["dram"]), human(t.cycles), _main_bound(t.bounds), style="bold")
    console.print(table)
    console.print(f"  {len(t.ops)} kernel launches, {t.instructions:,} warp instructions, {t.cycles:,.0f} cycles = "
                  f"{t.seconds * 1e3:.3f} ms; {t.fp_ops:,} floating-point operations; cycles by bound: "
                  + ", ".join(f"{k} {v / max(t.cycles, 1):.0%}" for k, v in
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


def short_op(op: str) -> str:
    return op.removeprefix("aten.").removesuffix(".default")


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


def check_table(report: CheckReport, console: Console) -> None:
    table = Table(title=f"{report.model} seq {report.seq} batch {report.batch}: lowered programs vs PyTorch "
                        f"(pass: max abs error <= {report.tolerance:g})", title_justify="left")
    for col in ("target", "uarch", "max abs err", "max rel err", "instructions executed", "counts = cost model",
                "worst op", "result"):
        table.add_column(col)
    for t in report.targets:
        worst = t.worst_ops[0] if t.worst_ops else None
        table.add_row(t.target, t.uarch, f"{t.max_abs_err:.2e}", f"{t.max_rel_err:.2e}",
                      f"{t.instructions_executed:,}", "yes" if t.counts_match_cost_model else "NO",
                      f"{worst.name} {worst.max_abs_err:.1e}" if worst else "",
                      "[green]pass[/]" if t.passed else "[red]FAIL[/]")
    console.print(table)
    for t in report.targets:
        if t.label_agreement is not None:
            console.print(f"  {t.target}: predicted labels agree with PyTorch's on {t.label_agreement:.1%} of "
                          f"{report.batch} sentences; accuracy {t.accuracy:.1%}")
        h = t.on_host
        if h:
            same = "bit-identical to the executor" if h["bit_identical_to_executor"] else \
                f"DIFFERS from the executor in {', '.join(h['differing_kernels'])}"
            console.print(f"  {t.target} machine code, run {h['ran']}: {h['kernels']} kernels, {same}; "
                          f"max abs err vs PyTorch {h['max_abs_err']:.2e}")


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
