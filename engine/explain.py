"""`explain`: one kernel taught on each target, by its backend (backends/cpu_explain.py for CPU cores,
backends/simt_explain.py for GPUs)."""

from __future__ import annotations

from dataclasses import dataclass

from isasim.backends import backend_for
from isasim.backends.cpu_explain import Explanation
from isasim.backends.simt_explain import SimtExplanation
from isasim.isa.errors import UserError
from isasim.isa.hardware import Machine
from isasim.isa.targets import Target
from isasim.lowering.pipeline import LoweredGraph, Step
from isasim.report import ModelReport


@dataclass
class ExplainReport(ModelReport):
    """One kernel explained on each target: iterate it, or index it, for the explanations in target order."""

    op: str
    explanations: list[Explanation | SimtExplanation]

    def __iter__(self):
        return iter(self.explanations)

    def __len__(self) -> int:
        return len(self.explanations)

    def __getitem__(self, i: int) -> Explanation | SimtExplanation:
        return self.explanations[i]

    def records(self) -> list[dict]:
        """One row per instruction of each explanation's listing."""
        return [row for e in self.explanations for row in e.records()]


def matching_steps(lowered: LoweredGraph, op: str) -> list[Step]:
    """The kernels a node name (linear_3) or an op (gelu, aten.gelu.default) picks, in graph order."""
    steps = [s for s in lowered.steps if s.kernel is not None
             and op in (s.node.name, s.node.op, s.node.op.split(".")[1])]
    if not steps:
        raise UserError(f"no kernel matches --op {op}: give a node name (e.g. linear_3) or an op (e.g. gelu)")
    return steps


def explain(lowered: LoweredGraph, target: Target, machine: Machine, op: str, iterations: int = 4):
    """The first kernel `op` picks, explained on `target` with `machine`'s numbers."""
    step = matching_steps(lowered, op)[0]
    backend = backend_for(target)
    program = backend.select(step.kernel, target, machine)
    return backend.explain(program, step.node, target, machine, iterations)
