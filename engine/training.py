"""A fine-tuning step's cost per target, split into forward, backward and optimizer, and the whole
fine-tuning run it implies (epochs x steps per epoch over the shipped movie/TV training split): the seed
article's CPU-versus-GPU question, answered with numbers."""

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


@dataclass
class TrainingReport(ModelReport):
    epochs: int
    train_sentences: int
    steps_per_epoch: int
    optimizer: dict
    targets: list[StepCost]

    def records(self) -> list[dict]:
        """One row per target: each phase's milliseconds, the step's, and the whole run's seconds."""
        return [{"target": t.target, "uarch": t.uarch, "kernels": t.kernels, "instructions": t.instructions,
                 **{f"{p}_ms": t.cycles[p] / (t.clock_ghz * 1e6) for p in PHASES}, "step_ms": t.step_ms,
                 "run_s": t.run_s} for t in self.targets]


def summarise(report: TraceReport, epochs: int, train_sentences: int) -> TrainingReport:
    """A traced training step (models/training.py tags every op with its phase) as a TrainingReport."""
    steps = -(-train_sentences // report.batch)
    rows = []
    for t in report.targets:
        cycles = {p: sum(r.cycles for r in t.ops if r.module.split(".")[0] == p) for p in PHASES}
        step_s = sum(cycles.values()) / (t.clock_ghz * 1e9)
        rows.append(StepCost(t.target, t.uarch, t.clock_ghz, len(t.ops), t.instructions, cycles, step_s * 1e3,
                             step_s * steps * epochs))
    return TrainingReport(report.model, report.seq, report.batch, epochs, train_sentences, steps,
                          report.config.get("training", {}), rows)
