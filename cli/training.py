"""`isasim trace MODEL --training` and `isasim compare MODEL --training`: one fine-tuning step per target, split
into forward, backward and optimizer, and the whole fine-tuning run it implies (epochs x steps per epoch over
the shipped movie/TV training split) — the seed article's CPU-versus-GPU question, answered with numbers."""

from __future__ import annotations

import csv
import io
import json
from dataclasses import asdict, dataclass

from rich.console import Console
from rich.table import Table

from isasim.cli.reports import TraceReport
from isasim.models.training import PHASES


@dataclass
class StepCost:
    target: str
    uarch: str
    clock_ghz: float
    kernels: int
    instructions: int
    cycles: dict[str, float]  # per phase
    step_ms: float
    run_s: float  # the whole fine-tuning run: epochs x steps per epoch steps


@dataclass
class TrainingReport:
    model: str
    seq: int
    batch: int
    epochs: int
    train_sentences: int
    steps_per_epoch: int
    optimizer: dict
    targets: list[StepCost]


def summarise(report: TraceReport, epochs: int, train_sentences: int) -> TrainingReport:
    steps = -(-train_sentences // report.batch)
    rows = []
    for t in report.targets:
        cycles = {p: sum(r.cycles for r in t.ops if r.module.split(".")[0] == p) for p in PHASES}
        step_s = sum(cycles.values()) / (t.clock_ghz * 1e9)
        rows.append(StepCost(t.target, t.uarch, t.clock_ghz, len(t.ops), t.instructions, cycles, step_s * 1e3,
                             step_s * steps * epochs))
    return TrainingReport(report.model, report.seq, report.batch, epochs, train_sentences, steps,
                          report.config.get("training", {}), rows)


def render_table(r: TrainingReport, console: Console) -> None:
    console.print(f"{r.model} fine-tuning step: batch {r.batch} x seq {r.seq}, AdamW "
                  f"(lr {r.optimizer.get('lr')}, weight decay {r.optimizer.get('weight_decay')}); the run: "
                  f"{r.epochs} epochs x {r.steps_per_epoch} steps ({r.train_sentences} training sentences)")
    table = Table()
    for col in ("target", "uarch", "kernels", "instructions", "forward ms", "backward ms", "optimizer ms",
                "step ms", "backward / forward", "fine-tuning run"):
        table.add_column(col, justify="left" if col in ("target", "uarch") else "right")
    for t in r.targets:
        ms = {p: t.cycles[p] / (t.clock_ghz * 1e6) for p in PHASES}
        table.add_row(t.target, t.uarch, str(t.kernels), f"{t.instructions:,}", f"{ms['forward']:,.2f}",
                      f"{ms['backward']:,.2f}", f"{ms['optimizer']:,.2f}", f"{t.step_ms:,.2f}",
                      f"{t.cycles['backward'] / max(t.cycles['forward'], 1e-9):.2f}x", _duration(t.run_s))
    console.print(table)
    console.print("Dropout is 0 in the captured step (its masks are not costed); the optimizer is AdamW one "
                  "parameter at a time (torch's foreach=False), a kernel per operation.")


def _duration(s: float) -> str:
    if s >= 3600:
        return f"{s / 3600:.1f} h"
    if s >= 60:
        return f"{s / 60:.1f} min"
    return f"{s:.2f} s"


def render_json(r: TrainingReport) -> str:
    return json.dumps(asdict(r), indent=2) + "\n"


def render_csv(r: TrainingReport) -> str:
    buf = io.StringIO()
    w = csv.writer(buf)
    w.writerow(["target", "uarch", "kernels", "instructions", *(f"{p}_cycles" for p in PHASES), "step_ms",
                "run_s"])
    for t in r.targets:
        w.writerow([t.target, t.uarch, t.kernels, t.instructions, *(round(t.cycles[p], 1) for p in PHASES),
                    round(t.step_ms, 4), round(t.run_s, 3)])
    return buf.getvalue()


def render_markdown(r: TrainingReport) -> str:
    lines = ["| target | uarch | forward ms | backward ms | optimizer ms | step ms | fine-tuning run |",
             "|---|---|---|---|---|---|---|"]
    for t in r.targets:
        ms = {p: t.cycles[p] / (t.clock_ghz * 1e6) for p in PHASES}
        lines.append(f"| {t.target} | {t.uarch} | {ms['forward']:,.2f} | {ms['backward']:,.2f} | "
                     f"{ms['optimizer']:,.2f} | {t.step_ms:,.2f} | {_duration(t.run_s)} |")
    return "\n".join(lines) + "\n"
