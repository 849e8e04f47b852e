"""`check`: execute every lowered kernel on real weights and inputs, target by target, and compare every op
and the final output with PyTorch, and what the executor counted with what the cost model predicts."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from isasim.backends import backend_for
from isasim.engine.run import run_graph
from isasim.engine.targets import Progress
from isasim.isa.errors import UserError
from isasim.isa.hardware import Machine
from isasim.isa.targets import Target
from isasim.lowering.pipeline import LoweredGraph, materialize
from isasim.models.graph import Ref
from isasim.report import ModelReport


@dataclass
class OpCheck:
    name: str
    op: str
    max_abs_err: float
    max_rel_err: float  # relative to the op's largest value: comparable between ops of any scale


@dataclass
class TargetCheck:
    target: str
    uarch: str
    max_abs_err: float
    max_rel_err: float
    passed: bool
    instructions_executed: int
    counts_match_cost_model: bool
    worst_ops: list[OpCheck]
    # on_host: the emitted machine code itself, run natively or under qemu, every kernel in turn; or, where this
    # host cannot run the target's code, {"skipped": why}
    on_host: dict | None = None
    # a dataset: a classifier's predicted labels against PyTorch's (agreement) and the true ones (accuracy)
    label_agreement: float | None = None
    accuracy: float | None = None
    prediction: dict | None = None  # a classifier on a text: {"label", "probability"} from this target's logits


@dataclass
class CheckReport(ModelReport):
    tolerance: float
    passed: bool
    targets: list[TargetCheck]
    tokens: list[str] | None = None  # the text as the model read it (check with a text)
    reference_prediction: dict | None = None  # a classifier on a text: PyTorch's label and its probability

    def records(self) -> list[dict]:
        """One row per target."""
        return [{"target": t.target, "uarch": t.uarch, "max_abs_err": t.max_abs_err, "max_rel_err": t.max_rel_err,
                 "passed": t.passed, "instructions_executed": t.instructions_executed,
                 "counts_match_cost_model": t.counts_match_cost_model,
                 "worst_op": t.worst_ops[0].name if t.worst_ops else None, "label_agreement": t.label_agreement,
                 "accuracy": t.accuracy} for t in self.targets]


def _errors(got: np.ndarray, want: np.ndarray) -> tuple[float, float]:
    if got.size == 0:
        return 0.0, 0.0
    g, w = got.astype(np.float64), want.astype(np.float64)
    diff = np.abs(g - w)
    # relative to the tensor's scale: elementwise ratios explode on values that are nearly zero
    return float(diff.max()), float(diff.max() / max(np.abs(w).max(), 1e-30))


def _on_host(lowered: LoweredGraph, target: Target, executed: dict[str, np.ndarray], final: np.ndarray,
             tolerance: float, progress: Progress | None) -> dict:
    """Run the machine code of every kernel, chained on its own results; compare with PyTorch, and each
    kernel's outputs bit for bit with what isasim's executor computed."""
    from isasim.isa import native

    n = len(lowered.kernels)
    done = 0

    def tick(step, program, events):
        nonlocal done
        if step.kernel is not None and progress:
            done += 1
            progress(f"running {target.name} machine code", done, n)

    storages = run_graph(lowered, target, tick, native=True)
    differing = [s.kernel.name for s in lowered.steps if s.kernel is not None
                 and any(storages[b.name].tobytes() != executed[b.name].tobytes()
                         for b in s.kernel.buffers if b.is_output)]
    got = materialize(lowered.context.views[lowered.graph.outputs[0]], storages)
    abs_err, rel_err = _errors(got, final)
    how = "natively" if native.host_supports(target.isa) else "under qemu-aarch64"
    return {"ran": how, "kernels": n, "bit_identical_to_executor": not differing,
            "differing_kernels": differing[:10], "max_abs_err": abs_err, "max_rel_err": rel_err,
            "passed": not differing and abs_err <= tolerance}


def _prediction(logits: np.ndarray, names: dict[int, str]) -> dict:
    """The first row's label and its softmax probability."""
    row = logits.reshape(-1, logits.shape[-1])[0].astype(np.float64)
    p = np.exp(row - row.max())
    p /= p.sum()
    k = int(p.argmax())
    return {"label": names.get(k, str(k)), "probability": float(p[k])}


def check(lowered: LoweredGraph, targets: list[tuple[Target, Machine]], reference: dict[str, list[np.ndarray]],
          final: np.ndarray, tolerance: float = 1e-4, progress: Progress | None = None,
          on_host: bool = False, labels: np.ndarray | None = None,
          label_names: dict[int, str] | None = None) -> CheckReport:
    """Execute every kernel for each target on the graph's real values; compare every op and the final
    output (hidden state or logits) with PyTorch, and the executor's dynamic counts with the cost model's.
    With `on_host`, also run each kernel's emitted machine code. With `labels` (one per row of a classifier's
    logits), the predicted labels must all agree with PyTorch's; the accuracy against `labels` is reported."""
    graph = lowered.graph
    n_kernels = len(lowered.kernels)
    skipped = {t.name: why for t, _ in targets if on_host and (why := backend_for(t).can_run_native(t))}
    if on_host and len(skipped) == len(targets):
        raise UserError("--on-host: nothing here can run the machine code of "
                        + "; ".join(f"{name} ({why})" for name, why in skipped.items())
                        + ": drop --on-host, or add a target this host runs")
    out = []
    for target, machine in targets:
        backend = backend_for(target)
        executed = 0
        counts_match = True
        done = 0

        def on_step(step, program, events):
            nonlocal executed, counts_match, done
            if events is None:
                return
            executed += events.total
            counts_match = counts_match and backend.counts(program, machine) == dict(events.instructions)
            done += 1
            if progress:
                progress(f"executing {target.name}", done, n_kernels)

        storages = run_graph(lowered, target, on_step, machine=machine)
        op_errs = []
        for step in lowered.steps:
            for i, want in enumerate(reference.get(step.node.name, [])):
                got = materialize(lowered.context.views[Ref(step.node.name, i)], storages)
                op_errs.append(OpCheck(step.node.name, step.node.op, *_errors(got, want)))
        got = materialize(lowered.context.views[graph.outputs[0]], storages)
        abs_err, rel_err = _errors(got, final)
        op_errs.sort(key=lambda o: -o.max_rel_err)
        host = None
        if target.name in skipped:
            host = {"skipped": skipped[target.name], "passed": True}
        elif on_host:
            host = _on_host(lowered, target, storages, final, tolerance, progress)
        passed = abs_err <= tolerance and (host is None or host["passed"])
        agree = acc = None
        if labels is not None:
            predicted = got.reshape(final.shape).argmax(-1)
            agree = float(np.mean(predicted == final.argmax(-1)))
            acc = float(np.mean(predicted == labels))
            passed = passed and agree == 1.0
        out.append(TargetCheck(target.name, machine.name, abs_err, rel_err, passed, executed,
                               counts_match, op_errs[:5], host, agree, acc,
                               _prediction(got.reshape(final.shape), label_names) if label_names else None))
    cfg = graph.config
    return CheckReport(cfg.get("model", graph.model), cfg.get("seq", 0), cfg.get("batch", 0), tolerance,
                       all(t.passed and t.counts_match_cost_model for t in out), out,
                       reference_prediction=_prediction(final, label_names) if label_names else None)
