"""`isasim trace --training` and `isasim compare --training`, rendered: a fine-tuning step per target
(engine/training.py) as a table, JSON, CSV or markdown."""

from __future__ import annotations

import csv
import io
import json

from rich import box
from rich.console import Console
from rich.table import Table

from isasim.engine.training import TrainingReport
from isasim.models.training import PHASES


def render_table(r: TrainingReport, console: Console, wide: bool = False) -> None:
    """A row per target; the narrow layout fits 100 columns, `wide` adds kernels and instructions."""
    console.print(f"{r.model} fine-tuning step: batch {r.batch} x seq {r.seq}, AdamW "
                  f"(lr {r.optimizer.get('lr')}, weight decay {r.optimizer.get('weight_decay')}); the run: "
                  f"{r.epochs} epochs x {r.steps_per_epoch} steps ({r.train_sentences} training sentences)")
    if r.lora:
        console.print(f"LoRA rank {r.lora['r']}, alpha {r.lora['alpha']:g} on {', '.join(r.lora['targets'])}: "
                      f"{r.trained_params:,} trained parameters (adapters and classifier head) of "
                      f"{r.trained_params + r.frozen_params:,} ({lora_share(r):.2%}); full step: every parameter "
                      f"trained")
    split = [t for t in r.targets if t.cores > 1]
    if split:
        console.print("every kernel split across " + ", ".join(f"{t.cores} {t.uarch} cores" for t in split)
                      + " (OpenMP's static schedule; beyond one socket, both sockets of the server; "
                      "'isasim scale --training' shows how each count scales)")
    dp = r.targets[0].multi_gpu if r.targets else None
    if dp and dp.parallel == "data":
        console.print(f"data parallel on {dp.gpus} GPUs over {dp.link}: {dp.per_gpu_batch} sentences each; the "
                      f"{dp.allreduce_bytes / 1e6:,.1f} MB of float32 gradients all-reduced in a ring each step, in "
                      "25 MB buckets while backward runs (DDP); 'all-reduce ms' is the whole, 'waits ms' what the "
                      "step waits for after backward (in 'step ms')")
    elif dp:
        console.print(f"tensor parallel on {dp.gpus} GPUs over {dp.link} (Megatron-LM): each holds 1/{dp.gpus} of "
                      f"every layer's heads and linears and runs the whole batch; {dp.allreduces} all-reduces per "
                      f"step (2 forward, 2 backward per layer), {dp.allreduce_bytes / 1e6:,.1f} MB of float32 "
                      "activations and their gradients, each waited for ('waits ms', in 'step ms'; 'forward ms' "
                      "and 'backward ms' are the computing)")
    table = Table(box=box.HEAVY_HEAD if wide else box.SIMPLE_HEAD, collapse_padding=not wide)
    columns = [c for c in ("target", "uarch", "kernels", "instructions", "forward ms", "backward ms", "optimizer ms",
                           "all-reduce ms", "waits ms", "step ms", "full ms", "saving", "backward / forward",
                           "fine-tuning run")
               if (wide or c not in ("kernels", "instructions"))
               and (r.lora or c not in ("full ms", "saving"))
               and (dp or c not in ("all-reduce ms", "waits ms"))
               and not ((r.lora or dp) and c == "backward / forward" and not wide)]
    for col in columns:
        table.add_column(col, justify="left" if col in ("target", "uarch") else "right", no_wrap=col == "uarch",
                         min_width=max(map(len, col.split())))
    for t in r.targets:
        ms = {p: t.cycles[p] / (t.clock_ghz * 1e6) for p in PHASES}
        cells = {"target": t.target, "uarch": t.uarch, "kernels": str(t.kernels), "instructions": f"{t.instructions:,}",
                 "forward ms": f"{ms['forward']:,.2f}", "backward ms": f"{ms['backward']:,.2f}",
                 "optimizer ms": f"{ms['optimizer']:,.2f}", "step ms": f"{t.step_ms:,.2f}",
                 "backward / forward": f"{t.cycles['backward'] / max(t.cycles['forward'], 1e-9):.2f}x",
                 "fine-tuning run": _duration(t.run_s)}
        if t.multi_gpu:
            cells["all-reduce ms"] = f"{t.multi_gpu.allreduce_ms:,.2f}"
            cells["waits ms"] = f"{t.multi_gpu.exposed_ms:,.2f}"
        if t.full_step_ms is not None:
            cells["full ms"] = f"{t.full_step_ms:,.2f}"
            cells["saving"] = f"{t.full_step_ms / t.step_ms:.2f}x"
        table.add_row(*(cells[c] for c in columns))
    console.print(table)
    console.print("Dropout is 0 in the captured step (its masks are not costed); the optimizer is AdamW one "
                  "parameter at a time (torch's foreach=False), a kernel per operation.")
    if r.lora:
        console.print("LoRA's step drops the frozen weights' gradient GEMMs and their AdamW updates, but still "
                      "carries every input gradient back through the frozen layers to the first adapter: so it "
                      "saves far less than its share of trained parameters.")


def lora_share(r: TrainingReport) -> float:
    """The trained parameters' share of all (LoRA's adapters and head, of the model with them)."""
    return r.trained_params / max(r.trained_params + r.frozen_params, 1)


def _duration(s: float) -> str:
    if s >= 3600:
        return f"{s / 3600:.1f} h"
    if s >= 60:
        return f"{s / 60:.1f} min"
    return f"{s:.2f} s"


def render_json(r: TrainingReport) -> str:
    return json.dumps(r.to_dict(), indent=2) + "\n"


def render_csv(r: TrainingReport) -> str:
    buf = io.StringIO()
    w = csv.writer(buf)
    full = ["full_step_ms"] if r.lora else []
    dp = ["gpus", "parallel", "allreduce_ms", "waits_ms"] if r.targets and r.targets[0].multi_gpu else []
    cores = ["cores"] if any(t.cores > 1 for t in r.targets) else []
    w.writerow(["target", "uarch", "kernels", "instructions", *(f"{p}_cycles" for p in PHASES), "step_ms",
                "run_s", *full, *dp, *cores])
    for t in r.targets:
        d = t.multi_gpu
        w.writerow([t.target, t.uarch, t.kernels, t.instructions, *(round(t.cycles[p], 1) for p in PHASES),
                    round(t.step_ms, 4), round(t.run_s, 3), *([round(t.full_step_ms, 4)] if full else []),
                    *([d.gpus, d.parallel, round(d.allreduce_ms, 4), round(d.exposed_ms, 4)] if dp else []),
                    *([t.cores] if cores else [])])
    return buf.getvalue()


def render_markdown(r: TrainingReport) -> str:
    extra = " full step ms | full / LoRA |" if r.lora else ""
    lines = ["| target | uarch | forward ms | backward ms | optimizer ms | step ms | fine-tuning run |" + extra,
             "|---|---|---|---|---|---|---|" + ("---|---|" if r.lora else "")]
    for t in r.targets:
        ms = {p: t.cycles[p] / (t.clock_ghz * 1e6) for p in PHASES}
        full = f" {t.full_step_ms:,.2f} | {t.full_step_ms / t.step_ms:.2f}x |" if r.lora else ""
        lines.append(f"| {t.target} | {t.uarch} | {ms['forward']:,.2f} | {ms['backward']:,.2f} | "
                     f"{ms['optimizer']:,.2f} | {t.step_ms:,.2f} | {_duration(t.run_s)} |" + full)
    return "\n".join(lines) + "\n"
