"""`check`: execute every lowered kernel on real weights and inputs, target by target, and compare every op
and the final output with PyTorch, and what the executor counted with what the cost model predicts."""

from __future__ import annotations

import hashlib
from collections import Counter
from dataclasses import dataclass

import numpy as np

from isasim.backends import backend_for
from isasim.backends.base import load_memory
from isasim.engine.cores import core_shards, cores_for
from isasim.engine.parallel import can_fork, measured, peak_rss_bytes, run_forked, usable_cores
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
    seconds: float = 0.0  # wall-clock time to execute and compare this target
    peak_rss_bytes: int = 0  # the peak resident memory of the process that ran it
    thread_instructions: int | None = None  # SIMT: the threads that executed each warp instruction, summed
    # --precision int8 or bf16: the final output's largest error against float32 PyTorch (in int8, max_abs_err
    # is against the int8 reference, which the executor must reproduce), and label_agreement is with float32
    # PyTorch's labels
    max_abs_err_fp32: float | None = None
    # int8 and bf16: every op the precision adds (models/quantize.py OPS, models/bf16.py OPS) equal, bit for bit,
    # to its numpy reference computed from the inputs this target's executor gave it (in bf16, rounded as the
    # target's instructions round); the final output is not held to `tolerance`, since a float rounding
    # upstream (PyTorch's own kernels differ by CPU) may move an activation across a rounding boundary of the
    # quantizer, and one step of 1/127 then propagates
    ops_exact: bool | None = None
    ops_checked: int = 0
    # --cores N: each kernel ran as its cores' chunks (engine/cores.py); `split_kernels` of them were split, and
    # every split kernel's outputs equal, bit for bit, what the whole kernel computes on one core
    cores: int = 1
    split_kernels: int | None = None
    bit_identical_to_one_core: bool | None = None
    gpus: int = 1  # tensor parallel: each layer's kernels split across this many GPUs, `split_kernels` of them


@dataclass
class CheckReport(ModelReport):
    tolerance: float
    passed: bool
    targets: list[TargetCheck]
    tokens: list[str] | None = None  # the text as the model read it (check with a text)
    reference_prediction: dict | None = None  # a classifier on a text: PyTorch's label and its probability
    jobs: int = 1  # processes the targets ran in (engine/parallel.py)
    peak_rss_bytes: int = 0  # the largest peak resident memory of any process of the check
    precision: str = "fp32"
    # int8 on a dataset: PyTorch's own torch.ao.quantization.quantize_dynamic of the model, the anchor
    # ({max_abs_err, label_agreement, accuracy} against float32 PyTorch and the true labels); bf16: PyTorch's
    # CPU autocast to bfloat16, the same three figures
    pytorch_dynamic_int8: dict | None = None
    pytorch_autocast_bf16: dict | None = None
    pytorch_half_fp16: dict | None = None  # fp16 on a dataset: PyTorch's model.half() on the CPU, the same figures

    def records(self) -> list[dict]:
        """One row per target."""
        return [{"target": t.target, "uarch": t.uarch, "max_abs_err": t.max_abs_err, "max_rel_err": t.max_rel_err,
                 "passed": t.passed, "instructions_executed": t.instructions_executed,
                 "counts_match_cost_model": t.counts_match_cost_model,
                 "worst_op": t.worst_ops[0].name if t.worst_ops else None, "label_agreement": t.label_agreement,
                 "accuracy": t.accuracy, "seconds": t.seconds, "peak_rss_bytes": t.peak_rss_bytes,
                 "thread_instructions": t.thread_instructions, "max_abs_err_fp32": t.max_abs_err_fp32,
                 "ops_exact": t.ops_exact} for t in self.targets]


def _errors(got: np.ndarray, want: np.ndarray) -> tuple[float, float]:
    if got.size == 0:
        return 0.0, 0.0
    g, w = got.astype(np.float64), want.astype(np.float64)
    with np.errstate(over="ignore", invalid="ignore"):
        if got.dtype == np.float16:  # (--precision fp16) a value beyond fp16's range is held as its infinity,
            # as PyTorch's .half() holds it (an attention mask's float32 minimum): compared so, not as an error
            w = np.where(np.abs(w) > np.finfo(np.float16).max, want.astype(np.float16).astype(np.float64), w)
        diff = np.where(g == w, 0.0, np.abs(g - w))  # (equal infinities differ by nothing)
    finite = np.abs(w)[np.isfinite(w)]
    # relative to the tensor's scale: elementwise ratios explode on values that are nearly zero
    return float(diff.max()), float(diff.max() / max(finite.max() if finite.size else 0.0, 1e-30))


def _digest(values: np.ndarray) -> bytes:
    return hashlib.blake2b(np.ascontiguousarray(values).tobytes(), digest_size=16).digest()


def _on_host(lowered: LoweredGraph, target: Target, machine: Machine, executed: dict[str, bytes],
             final: np.ndarray, tolerance: float | None, progress: Progress | None, shards=None) -> dict:
    """Run the machine code of every kernel, chained on its own results; compare with PyTorch, and each
    kernel's outputs bit for bit with what isasim's executor computed."""
    from isasim.isa import native

    n = len(lowered.kernels)
    done = 0

    differing = []

    def tick(step, program, events):
        nonlocal done
        if step.kernel is not None:
            if any(_digest(storages[b.name]) != executed[b.name] for b in step.kernel.buffers if b.is_output):
                differing.append(step.kernel.name)
            done += 1
            if progress:
                progress(f"running {target.name} machine code", done, n)

    output = lowered.context.views[lowered.graph.outputs[0]]
    storages: dict = {}
    # the programs made for the core the executor ran them for (an AVX2 core with AVX-VNNI gets other code)
    run_graph(lowered, target, tick, native=True, machine=machine, keep=[output.storage], live=storages,
              shards=shards)
    got = materialize(output, storages)
    abs_err, rel_err = _errors(got, final)
    how = "natively" if native.host_supports(target.isa) else "under qemu-aarch64"
    return {"ran": how, "kernels": n, "bit_identical_to_executor": not differing,
            "differing_kernels": differing[:10], "max_abs_err": abs_err, "max_rel_err": rel_err,
            "passed": not differing and (tolerance is None or abs_err <= tolerance)}


def _prediction(logits: np.ndarray, names: dict[int, str]) -> dict:
    """The first row's label and its softmax probability."""
    row = logits.reshape(-1, logits.shape[-1])[0].astype(np.float64)
    p = np.exp(row - row.max())
    p /= p.sum()
    k = int(p.argmax())
    return {"label": names.get(k, str(k)), "probability": float(p[k])}


@dataclass
class _Job:
    """What checking one target needs: everything but the target is shared by all targets."""

    lowered: LoweredGraph
    reference: dict[str, list[np.ndarray]]
    final: np.ndarray
    tolerance: float
    on_host: bool
    skipped: dict[str, str]
    labels: np.ndarray | None
    label_names: dict[int, str] | None
    fp32_final: np.ndarray | None = None  # int8: float32 PyTorch's final output, to report the error against
    cores: int = 1
    gpus: int = 1


def check_target(job: _Job, target: Target, machine: Machine, progress: Progress | None = None) -> TargetCheck:
    """Execute every kernel for one target, comparing each op with PyTorch as soon as it is computed (an
    intermediate storage is released once its last reader has run), and the final output at the end."""
    lowered, final = job.lowered, job.final
    backend = backend_for(target)
    n_kernels = len(lowered.kernels)
    executed = 0
    threads = None  # thread instructions, where the executor counts them (SIMT)
    counts_match = True
    done = 0
    op_errs: list[OpCheck] = []
    low = job.fp32_final is not None  # int8 or bf16
    added, reference_op = _added_ops(lowered.graph.config.get("precision", "fp32"), target)
    exact: list[bool] = []  # int8 and bf16: each added op against its reference on the executor's inputs
    digests: dict[str, bytes] = {}  # each kernel's outputs, for --on-host to compare the machine code's with
    storages: dict = {}
    split: list[bool] = []  # --cores: per split kernel, whether its chunks wrote what one core writes

    def on_step(step, program, events):
        nonlocal executed, threads, counts_match, done
        for i, want in enumerate(job.reference.get(step.node.name, [])):
            got = materialize(lowered.context.views[Ref(step.node.name, i)], storages)
            op_errs.append(OpCheck(step.node.name, step.node.op, *_errors(got, want)))
        if step.node.op in added:
            node = step.node
            want = reference_op(node, [materialize(lowered.context.views[a], storages) for a in node.args])
            got = materialize(lowered.context.views[Ref(node.name)], storages)
            # (held as its storage holds it: in fp16, an activation is rounded to fp16 as it is stored)
            exact.append(np.array_equal(got, want.reshape(got.shape).astype(got.dtype)))
        if events is None:
            return
        executed += events.total
        if hasattr(events, "thread_instructions"):
            threads = (threads or 0) + events.thread_instructions
        programs = program if isinstance(program, tuple) else (program,)
        predicted: Counter = Counter()
        for p in programs:
            predicted.update(backend.counts(p, machine))
        counts_match = counts_match and dict(predicted) == dict(events.instructions)
        if len(programs) > 1:
            split.append(_as_one_core(step.kernel, target, machine, storages) if job.cores > 1 else True)
        if job.on_host:
            digests.update({b.name: _digest(storages[b.name]) for b in step.kernel.buffers if b.is_output})
        done += 1
        if progress:
            progress(f"executing {target.name}", done, n_kernels)

    output = lowered.context.views[lowered.graph.outputs[0]]
    shards = None  # how each kernel is split: the same in the executor's run and the machine code's
    if job.gpus > 1:
        from isasim.engine.tensor_parallel import shards as tensor_shards

        shards = tensor_shards(lowered, job.gpus)
    elif job.cores > 1:
        shards = core_shards(target, machine, job.cores)
    run_graph(lowered, target, on_step, machine=machine, keep=[output.storage], live=storages, shards=shards)
    got = materialize(output, storages)
    storages.clear()
    abs_err, rel_err = _errors(got, final)
    op_errs.sort(key=lambda o: -o.max_rel_err)
    host = None
    if target.name in job.skipped:
        host = {"skipped": job.skipped[target.name], "passed": True}
    elif job.on_host:
        host = _on_host(lowered, target, machine, digests, final, None if low else job.tolerance, progress,
                        shards)
    close = all(exact) if low else abs_err <= job.tolerance
    passed = close and (host is None or host["passed"]) and all(split)
    agree = acc = fp32_err = None
    if job.fp32_final is not None:
        fp32_err = _errors(got, job.fp32_final)[0]
    if job.labels is not None:
        predicted = got.reshape(final.shape).argmax(-1)
        versus = final if job.fp32_final is None else job.fp32_final
        agree = float(np.mean(predicted == versus.argmax(-1)))
        acc = float(np.mean(predicted == job.labels))
        if not low:  # every label of the reference it runs
            passed = passed and bool(np.all(predicted == final.argmax(-1)))
    return TargetCheck(target.name, machine.name, abs_err, rel_err, passed, executed, counts_match, op_errs[:5],
                       host, agree, acc,
                       _prediction(got.reshape(final.shape), job.label_names) if job.label_names else None,
                       thread_instructions=threads, max_abs_err_fp32=fp32_err,
                       ops_exact=all(exact) if low else None, ops_checked=len(exact), cores=job.cores,
                       split_kernels=len(split) if job.cores > 1 or job.gpus > 1 else None,
                       bit_identical_to_one_core=all(split) if job.cores > 1 else None, gpus=job.gpus)


def _as_one_core(kernel, target: Target, machine: Machine, storages: dict) -> bool:
    """Whether the outputs the cores' chunks left in `storages` are, bit for bit, the whole kernel's on one core
    (run here on the same inputs)."""
    backend = backend_for(target)
    whole = backend.select(kernel, target, machine)
    mem = load_memory(whole, storages)
    backend.execute(whole, mem, machine)
    return all(mem.read(b.name).tobytes() == np.ascontiguousarray(storages[b.name]).reshape(-1).tobytes()
               for b in whole.buffers if b.is_output)


def _added_ops(precision: str, target: Target):
    """(the ops `precision` adds to the graph, their numpy reference (node, inputs) -> output on `target`)."""
    if precision == "int8":
        from isasim.models import quantize

        return frozenset(quantize.OPS), quantize.reference_op
    if precision == "bf16":
        from isasim.models import bf16

        dot = target.vector.bf16_dot if target.vector else ("mma" if target.simt else None)
        return frozenset(bf16.OPS), lambda node, inputs: bf16.reference_op(node, inputs, dot)
    if precision == "fp16":
        from isasim.models import fp16

        return frozenset(fp16.OPS), fp16.reference_op
    return frozenset(), None


def _slowest_first(targets: list[tuple[Target, Machine]]) -> list[int]:
    """The order to hand targets to processes: the SIMT executor's grids take longest, so they start first
    and the others fill the remaining processes (the result keeps the given order)."""
    return sorted(range(len(targets)), key=lambda i: backend_for(targets[i][0]).kind != "SIMT GPU")


def default_jobs(targets: int, need_bytes: int | None = None) -> int:
    """Processes for a check: one per usable core, no more than targets, and (given what one process needs
    beyond what forked processes share) no more than memory can hold."""
    from isasim.engine.graphs import available_bytes

    jobs = min(usable_cores(), targets)
    have = available_bytes()
    if need_bytes and have:
        jobs = min(jobs, max(1, have // need_bytes))
    return max(1, jobs)


def check(lowered: LoweredGraph, targets: list[tuple[Target, Machine]], reference: dict[str, list[np.ndarray]],
          final: np.ndarray, tolerance: float = 1e-4, progress: Progress | None = None,
          on_host: bool = False, labels: np.ndarray | None = None,
          label_names: dict[int, str] | None = None, jobs: int = 1, fp32_final: np.ndarray | None = None,
          cores: int | str = 1, gpus: int = 1) -> CheckReport:
    """Execute every kernel for each target on the graph's real values; compare every op and the final
    output (hidden state or logits) with PyTorch, and the executor's dynamic counts with the cost model's.
    With `on_host`, also run each kernel's emitted machine code. With `labels` (one per row of a classifier's
    logits), the predicted labels must all agree with PyTorch's; the accuracy against `labels` is reported.
    `jobs` > 1 checks targets in that many forked processes at once (engine/parallel.py). In int8, `reference`
    and `final` are the int8 reference's (models/reference.py `quantized_outputs`), in bf16 float32 PyTorch's
    (each target rounds its own way), and `fp32_final` float32 PyTorch's, against which the error and the
    label agreement are reported; a target passes when each op the precision adds equals its reference on the
    target's own inputs bit for bit (TargetCheck.ops_exact) and the counts agree. `cores` (a number or "all"):
    each kernel runs as that many cores' chunks, and a target passes only if every split kernel wrote what one
    core writes, bit for bit. `gpus`: each layer split across that many GPUs (engine/tensor_parallel.py), its
    partial sums added in GPU order; held to PyTorch like one GPU."""
    graph = lowered.graph
    precision = graph.config.get("precision", "fp32")
    skipped = {t.name: why for t, m in targets
               if on_host and (why := backend_for(t).can_run_native(t, precision, m))}
    if on_host and len(skipped) == len(targets):
        raise UserError("--on-host: nothing here can run the machine code of "
                        + "; ".join(f"{name} ({why})" for name, why in skipped.items())
                        + ": drop --on-host, or add a target this host runs")
    def job(pair: tuple[Target, Machine]) -> _Job:
        return _Job(lowered, reference, final, tolerance, on_host, skipped, labels, label_names, fp32_final,
                    per_target[pair[0].name], gpus)

    per_target = {t.name: cores_for(m, cores) if cores != 1 else 1 for t, m in targets}
    jobs = max(1, min(jobs, len(targets))) if can_fork() else 1  # (without fork, no sharing: one process)
    if jobs == 1:
        runs = [measured(lambda pair, p: check_target(job(pair), *pair, p), pair, progress) for pair in targets]
    else:
        order = _slowest_first(targets)
        forked = run_forked(lambda pair, p: check_target(job(pair), *pair, p), [targets[i] for i in order], jobs,
                            progress,
                            [f"checking {targets[i][0].name}" for i in order])
        runs = [forked[order.index(i)] for i in range(len(targets))]
    out = []
    for result, seconds, rss in runs:
        result.seconds, result.peak_rss_bytes = seconds, rss
        out.append(result)
    cfg = graph.config
    return CheckReport(cfg.get("model", graph.model), cfg.get("seq", 0), cfg.get("batch", 0), tolerance,
                       all(t.passed and t.counts_match_cost_model for t in out), out,
                       reference_prediction=_prediction(final if fp32_final is None else fp32_final, label_names)
                       if label_names else None,  # (in int8: float32 PyTorch's, as label_agreement is)
                       jobs=jobs, peak_rss_bytes=max([peak_rss_bytes()] + [t.peak_rss_bytes for t in out]),
                       precision=precision)
