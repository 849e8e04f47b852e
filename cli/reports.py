"""Reports as plain dataclasses: what `trace` and `check` computed, ready to render or serialise.

Building a report never prints; long work reports progress through a callback.
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass, field
from typing import Callable

import numpy as np

from isasim.isa.cost import KernelCost
from isasim.isa.machine import Uarch
from isasim.isa.targets import Target, get_any_target
from isasim.lowering.backends import cost_kernel, expected_counts, is_simt, load_machine
from isasim.lowering.kernel import Kernel, canonical
from isasim.lowering.pipeline import LoweredGraph, materialize, run_graph
from isasim.isa.errors import UserError
from isasim.models.graph import Ref

Progress = Callable[[str, int, int], None]  # (what, done, total)


def layer_of(module: str) -> str:
    m = re.search(r"encoder\.layer\.(\d+)", module)
    if m:
        return f"layer {m.group(1)}"
    return module.split(".")[0] if module else "(top)"


def pick_targets(names: list[str] | None, uarchs: list[str] | None) -> list[tuple[Target, Uarch]]:
    """Each requested target with its microarchitecture (a CPU core, or a GPU for simt): the first --uarch of
    its ISA, else its default."""
    from isasim.isa.targets import ALL_TARGETS
    targets = [get_any_target(n) for n in (names or list(ALL_TARGETS))]
    chosen = [load_machine(u) for u in (uarchs or [])]
    for u in chosen:
        if not any(t.isa == u.isa for t in targets):
            raise UserError(f"--uarch {u.name} is an {u.isa} core, but no {u.isa} target was chosen: "
                            f"add --target for it or drop --uarch {u.name}")
    out = []
    for t in targets:
        match = [u for u in chosen if u.isa == t.isa]
        out.append((t, match[0] if match else load_machine(t.default_uarch)))
    return out


@dataclass
class OpRow:
    name: str
    op: str
    module: str
    layer: str
    shape: str
    instructions: int
    cycles: float
    bound: str
    bytes: dict[str, int]
    flops: int
    fp_ops: int
    simt: dict | None = None  # GPU kernels: launch geometry, registers, occupancy and its limiter, sectors


@dataclass
class TargetTrace:
    target: str
    uarch: str
    clock_ghz: float
    instructions: int
    cycles: float
    seconds: float
    flops: int
    fp_ops: int
    bytes: dict[str, int]
    bounds: dict[str, float]  # cycles of the ops each bound decided
    ops: list[OpRow] = field(default_factory=list)


@dataclass
class TraceReport:
    model: str
    seq: int
    batch: int
    params: int
    flops: int  # matrix-multiply FLOPs, counted as torch's FlopCounterMode counts them
    views: int  # ops that only re-describe storage and cost nothing
    config: dict
    targets: list[TargetTrace]

    def to_json(self) -> dict:
        return asdict(self)


def trace(lowered: LoweredGraph, targets: list[tuple[Target, Uarch]], progress: Progress | None = None
          ) -> TraceReport:
    graph = lowered.graph
    kernels = lowered.kernels
    results = []
    total = len(kernels) * len(targets)
    done = 0
    for target, uarch in targets:
        rows = []
        memo: dict[Kernel, KernelCost] = {}  # the same op in every layer is costed once
        for step in lowered.steps:
            k = step.kernel
            if k is None:
                continue
            key = canonical(k)
            if key not in memo:
                memo[key] = cost_kernel(k, target, uarch)
            c = memo[key]
            n = step.node
            rows.append(OpRow(n.name, n.op, n.module, layer_of(n.module), "x".join(map(str, n.out.shape)) or "scalar",
                              c.instructions, c.cycles, c.bound, c.bytes, c.flops, c.fp_ops,
                              getattr(c, "simt", None)))
            done += 1
            if progress:
                progress(f"costing {target.name}", done, total)
        cycles = sum(r.cycles for r in rows)
        bounds: dict[str, float] = {}
        for r in rows:
            key = r.bound.split()[0]
            bounds[key] = bounds.get(key, 0.0) + r.cycles
        results.append(TargetTrace(
            target.name, uarch.name, uarch.clock_ghz, sum(r.instructions for r in rows), cycles,
            cycles / (uarch.clock_ghz * 1e9), sum(r.flops for r in rows), sum(r.fp_ops for r in rows),
            {lv: sum(r.bytes[lv] for r in rows) for lv in ("l1", "l2", "llc", "dram")}, bounds, rows))
    cfg = graph.config
    return TraceReport(cfg.get("model", graph.model), cfg.get("seq", 0), cfg.get("batch", 0), cfg.get("params", 0),
                       sum(k.flops for k in kernels), len(lowered.steps) - len(kernels), dict(cfg), results)


@dataclass
class OpCheck:
    name: str
    op: str
    max_abs_err: float


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
    # --on-host: the emitted machine code itself, run natively or under qemu, every kernel in turn
    on_host: dict | None = None
    # --dataset: a classifier's predicted labels against PyTorch's (agreement) and the true ones (accuracy)
    label_agreement: float | None = None
    accuracy: float | None = None


@dataclass
class CheckReport:
    model: str
    seq: int
    batch: int
    tolerance: float
    passed: bool
    targets: list[TargetCheck]

    def to_json(self) -> dict:
        return asdict(self)


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

    if native.host_isa() == target.isa and not native.host_supports(target.isa, target.host_features):
        raise UserError(f"--on-host: this CPU cannot run {target.name} code (it lacks "
                        f"{', '.join(f for f in target.host_features if not native.host_supports(target.isa, (f,)))}"
                        f"): drop --on-host for {target.name}, or run it on a CPU that has them")
    if not native.can_run(target.isa, target.host_features):
        raise UserError(f"--on-host: this machine can run neither {target.isa} code nor qemu for it: "
                        f"run 'bash .ci/install-tools' or drop --on-host")
    n = len(lowered.kernels)
    done = 0

    def tick(step, _):
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


def check(lowered: LoweredGraph, targets: list[tuple[Target, Uarch]], reference: dict[str, list[np.ndarray]],
          final: np.ndarray, tolerance: float = 1e-4, progress: Progress | None = None,
          on_host: bool = False, labels: np.ndarray | None = None) -> CheckReport:
    """Execute every kernel for each target on the graph's real values; compare every op and the final
    output (hidden state or logits) with PyTorch, and the executor's dynamic counts with the cost model's.
    With `labels` (one per row of a classifier's logits), the predicted labels must all agree with
    PyTorch's; the accuracy against `labels` is reported."""
    graph = lowered.graph
    n_kernels = len(lowered.kernels)
    simt = [t.name for t, _ in targets if is_simt(t)]
    if on_host and simt:
        raise UserError(f"--on-host runs machine code on this CPU; {simt[0]} code needs an NVIDIA GPU: drop "
                        f"--on-host, or check {simt[0]} without it (its PTX is checked by ptxas in `isasim emit`)")
    out = []
    for target, uarch in targets:
        executed = 0
        counts_match = True
        done = 0

        def on_step(step, events):
            nonlocal executed, counts_match, done
            if events is None:
                return
            executed += events.total
            counts_match = counts_match and expected_counts(step.kernel, target, uarch) == dict(events.instructions)
            done += 1
            if progress:
                progress(f"executing {target.name}", done, n_kernels)

        storages = run_graph(lowered, target, on_step, machine=uarch)
        op_errs = []
        for step in lowered.steps:
            for i, want in enumerate(reference.get(step.node.name, [])):
                got = materialize(lowered.context.views[Ref(step.node.name, i)], storages)
                op_errs.append(OpCheck(step.node.name, step.node.op, _errors(got, want)[0]))
        got = materialize(lowered.context.views[graph.outputs[0]], storages)
        abs_err, rel_err = _errors(got, final)
        op_errs.sort(key=lambda o: -o.max_abs_err)
        host = _on_host(lowered, target, storages, final, tolerance, progress) if on_host else None
        passed = abs_err <= tolerance and (host is None or host["passed"])
        agree = acc = None
        if labels is not None:
            predicted = got.reshape(final.shape).argmax(-1)
            agree = float(np.mean(predicted == final.argmax(-1)))
            acc = float(np.mean(predicted == labels))
            passed = passed and agree == 1.0
        out.append(TargetCheck(target.name, uarch.name, abs_err, rel_err, passed, executed,
                               counts_match, op_errs[:5], host, agree, acc))
    cfg = graph.config
    return CheckReport(cfg.get("model", graph.model), cfg.get("seq", 0), cfg.get("batch", 0), tolerance,
                       all(t.passed and t.counts_match_cost_model for t in out), out)
