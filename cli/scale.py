"""`isasim scale`: the forward pass or a fine-tuning step on 1, 2, 4, ... cores or GPUs, as a table, JSON, and
a plot of speed-up against ideal."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING

from isasim.isa.errors import UserError

if TYPE_CHECKING:
    from rich.console import Console

    from isasim.engine.scale import ScaleReport


def core_count(text: str) -> int | str:
    """--cores: a count, or "all" (the socket's, from its uarch file)."""
    if text == "all":
        return text
    try:
        return int(text)
    except ValueError:
        raise UserError(f"--cores {text!r} is not a number: give a count of cores or 'all'") from None


def core_list(text: str, allow_empty: bool = False) -> list[int | str] | None:
    """--cores 1,2,4,all (None where empty and allowed: --gpus is given instead)."""
    out = [core_count(v.strip()) for v in text.split(",") if v.strip()]
    if not out and not allow_empty:
        raise UserError("--cores lists no core counts: give some, e.g. --cores 1,2,4,8")
    return out or None


def gpu_list(text: str) -> list[int]:
    """--gpus 1,2,4,8"""
    try:
        out = [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise UserError(f"--gpus {text!r}: give GPU counts as numbers, e.g. --gpus 1,2,4,8") from None
    if not out:
        raise UserError("--gpus lists no GPU counts: give some, e.g. --gpus 1,2,4,8")
    return out


def render_table(report: ScaleReport, console: Console) -> None:
    from rich.table import Table

    if report.link:
        return _gpu_table(report, console)
    s = report.socket
    two = any(p.cores > s["cores"] for p in report.points)
    shape = f"fine-tuning step, batch {report.batch} x seq {report.seq}" if report.training else \
        f"seq {report.seq} batch {report.batch}"
    table = Table(title=f"{report.model} {shape} on {report.target}, {report.uarch} "
                  f"@ {report.clock_ghz} GHz; socket: {s['part']}, {s['cores']} cores, {s['llc_cores']} per LLC, "
                  f"{s['dram_gb_s']:g} GB/s DRAM"
                  + (f"; beyond {s['cores']} cores, {s['sockets']} sockets, memory interleaved across them, "
                     f"{s['remote_gb_s']:g} GB/s each way between them" if two else ""), title_justify="left",
                  caption="speed-up over the first point (scaled to one core); efficiency: speed-up / cores; "
                  "bound: what decided most of the cycles; scales worst: the op family with the lowest speed-up "
                  "and what holds it back (imbalance: too few iterations to share; shared dram: the socket's "
                  "bandwidth; " + ("remote dram: the other socket's memory, over the links between them; "
                                   if two else "") +
                  "sync: each kernel's fork and join; one core: kernels too small to pay for a fork)",
                  caption_justify="left")
    for col in ("cores", "time", "speed-up", "efficiency", "bound", "scales worst"):
        table.add_column(col, justify="right" if col in ("cores", "time", "speed-up", "efficiency") else "left")
    for p in report.points:
        table.add_row(str(p.cores), f"{p.seconds * 1e3:.3f} ms", f"{p.speedup:.2f}x", f"{p.efficiency:.0%}",
                      f"{p.bound} {p.bounds[p.bound]:.0%}",
                      f"{p.slowest_family} {p.slowest_family_speedup:.1f}x ({p.slowest_family_bound})"
                      if p.slowest_family else "")
    console.print(table)


def _gpu_table(report: ScaleReport, console: Console) -> None:
    from rich.table import Table

    link, data = report.link, report.training
    what = "fine-tuning step" if data else "forward pass"
    how = "data parallel" if report.parallel == "data" else "tensor parallel (Megatron-LM)"
    parts = ("compute: forward and backward, which shrink with each GPU's batch; optimizer: AdamW, which every "
             "GPU runs whole; all-reduce: what the step waits for after backward") if report.parallel == "data" \
        else ("compute: forward and backward, which shrink with each GPU's share of every layer; optimizer: AdamW, "
              "on each GPU's share of the parameters, the embeddings and layer norms whole on every GPU; "
              "all-reduce: the four a layer, which nothing hides")
    caption = ("speed-up over the first point (scaled to one GPU); efficiency: speed-up / GPUs; bound: what most "
               f"of the step is ({parts})") if data \
        else ("speed-up over the first point (scaled to one GPU); efficiency: speed-up / GPUs; all-reduce: the "
              "two per layer that add the row-parallel linears' partial sums, which the next op waits for; bound: "
              "the kind of bound that decided the most cycles (link: the all-reduces)")
    table = Table(title=f"{report.model} {what}, batch {report.batch} x seq {report.seq}, on {report.target}, "
                  f"{report.uarch}: {how} over {link['name']} ({link['busbw_gb_s']:g} GB/s all-reduce bus "
                  "bandwidth)", title_justify="left", caption=caption, caption_justify="left")
    columns = ("GPUs", "batch each", "step ms", "speed-up", "efficiency", "all-reduce ms", "waits ms", "AdamW ms",
               "bound") if data else ("GPUs", "forward ms", "speed-up", "efficiency", "all-reduce ms", "bound")
    for col in columns:
        table.add_column(col, justify="left" if col == "bound" else "right", min_width=max(map(len, col.split())))
    for p in report.points:
        cells = {"GPUs": str(p.gpus), "batch each": str(p.per_gpu_batch), "step ms": f"{p.seconds * 1e3:,.2f}",
                 "forward ms": f"{p.seconds * 1e3:,.3f}", "speed-up": f"{p.speedup:.2f}x",
                 "efficiency": f"{p.efficiency:.0%}", "all-reduce ms": f"{p.allreduce_ms:,.2f}",
                 "waits ms": f"{p.waits_ms:,.2f}", "AdamW ms": f"{p.optimizer_ms:,.2f}", "bound": p.bound}
        table.add_row(*(cells[c] for c in columns))
    console.print(table)


def to_json(report: ScaleReport) -> str:
    """The contract: {model, target, uarch, points: [{cores, seconds, speedup, efficiency, bound}]} and more."""
    return json.dumps(report.to_dict(), indent=2)


def plot(report: ScaleReport, path: Path) -> None:
    from isasim.cli.plot import pyplot, save

    plt = pyplot(path)
    fig, ax = plt.subplots(figsize=(7, 5))
    cores = [p.gpus if report.link else p.cores for p in report.points]
    ax.plot(cores, cores, color="black", lw=1, ls="--", label="ideal")
    ax.plot(cores, [p.speedup for p in report.points], marker="o", label=f"{report.target} on {report.uarch}")
    for n, p in zip(cores, report.points):
        ax.annotate(p.bound, (n, p.speedup), textcoords="offset points", xytext=(4, -10), fontsize=7)
    what = "GPUs" if report.link else "cores"
    ax.set(xscale="log", yscale="log", xlabel=what, ylabel=f"speed-up over one {what[:-1]}",
           title=f"{report.model}{' fine-tuning step,' if report.training else ''} seq {report.seq} batch "
                 f"{report.batch}: speed-up against ideal")
    ax.set_xticks(cores, [str(c) for c in cores])
    ax.grid(True, which="both", alpha=0.3)
    ax.legend()
    save(plt, fig, path)
