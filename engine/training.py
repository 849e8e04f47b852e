"""A fine-tuning step's cost per target, split into forward, backward and optimizer, and the whole
fine-tuning run it implies (epochs x steps per epoch over the shipped movie/TV training split): the seed
article's CPU-versus-GPU question, answered with numbers. With LoRA (models/lora.py), each target's full
step sits next to its LoRA step, so the saving is read per target."""

from __future__ import annotations

from dataclasses import dataclass

from isasim.engine.trace import TraceReport
from isasim.models.training import PHASES
from isasim.report import ModelReport


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
    full_step_ms: float | None = None  # with LoRA: the same target's step when every parameter is trained


@dataclass
class TrainingReport(ModelReport):
    epochs: int
    train_sentences: int
    steps_per_epoch: int
    optimizer: dict
    targets: list[StepCost]
    trained_params: int = 0  # what AdamW updates
    frozen_params: int = 0  # with LoRA: the base model's weights, read but not trained

    @property
    def lora(self) -> dict | None:
        return self.optimizer.get("lora")

    def records(self) -> list[dict]:
        """One row per target: each phase's milliseconds, the step's, and the whole run's seconds (with LoRA,
        the full step's milliseconds too)."""
        return [{"target": t.target, "uarch": t.uarch, "kernels": t.kernels, "instructions": t.instructions,
                 **{f"{p}_ms": t.cycles[p] / (t.clock_ghz * 1e6) for p in PHASES}, "step_ms": t.step_ms,
                 "run_s": t.run_s, **({"full_step_ms": t.full_step_ms} if self.lora else {})}
                for t in self.targets]


def _phase_cycles(t) -> dict[str, float]:
    return {p: sum(r.cycles for r in t.ops if r.module.split(".")[0] == p) for p in PHASES}


def summarise(report: TraceReport, epochs: int, train_sentences: int,
              full: TraceReport | None = None) -> TrainingReport:
    """A traced training step (models/training.py tags every op with its phase) as a TrainingReport; `full`,
    the same targets' full step, where `report` is a LoRA step."""
    steps = -(-train_sentences // report.batch)
    rows = []
    fulls = full.targets if full is not None else [None] * len(report.targets)
    for t, f in zip(report.targets, fulls):
        cycles = _phase_cycles(t)
        step_s = sum(cycles.values()) / (t.clock_ghz * 1e9)
        full_ms = sum(_phase_cycles(f).values()) / (f.clock_ghz * 1e6) if f is not None else None
        rows.append(StepCost(t.target, t.uarch, t.clock_ghz, len(t.ops), t.instructions, cycles, step_s * 1e3,
                             step_s * steps * epochs, full_ms))
    return TrainingReport(report.model, report.seq, report.batch, epochs, train_sentences, steps,
                          report.config.get("training", {}), rows, int(report.config.get("params", 0)),
                          int(report.config.get("frozen_params", 0)))
