"""isasim as a library: the same answers as the `isasim` command, as report objects.

    import isasim
    report = isasim.trace("bert-base", targets=["avx512"], seq=128)
    report.targets[0].cycles, report.targets[0].bounds        # totals, and the cycles each kind of bound decided
    report.targets[0].ops[0].bound                            # Bound(kind='port', cycles=..., where='p05')
    report.to_dict()                                          # what `isasim trace --format json` prints
    report.to_pandas()                                        # a row per op and target (needs pandas)

A model is bert-base, bert-large, minilm, or a folder with config.json (and model.safetensors for real
weights). Targets and machines are named as `isasim targets` lists them: `targets=None` means every target,
each on its default machine; `machines` picks another machine for the targets of its instruction set.
Long work reports through `progress(what, done, total)`. Bad input raises isasim.UserError, whose message
is one line that says what to do.

docs/api.md shows each function with real output.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Sequence

from isasim.engine.graphs import check_precision, check_shape, in_precision, lowered_for_cost
from isasim.engine.targets import Progress, every_pair, pick_targets
from isasim.isa.errors import UserError
from isasim.models.limits import check_finite

if TYPE_CHECKING:
    from isasim.engine.check import CheckReport
    from isasim.engine.compare import Comparison
    from isasim.engine.emit import EmitReport
    from isasim.engine.explain import ExplainReport
    from isasim.engine.host import HostReport
    from isasim.engine.scale import ScaleReport
    from isasim.engine.trace import TraceReport
    from isasim.engine.training import TrainingReport

Names = Sequence[str] | str | None


def _names(names: Names) -> list[str] | None:
    if names is None:
        return None
    names = [names] if isinstance(names, str) else list(names)
    if not names:
        raise UserError("no targets or machines named: give at least one (see `isasim targets`), or None for all")
    return names


def trace(model: str, targets: Names = None, machines: Names = None, *, seq: int = 128, batch: int = 1,
          seed: int = 0, core_aten: bool = False, precision: str = "fp32", cores: int | str = 1, gpus: int = 1,
          parallel: str = "tensor", link: str = "nvlink", progress: Progress | None = None) -> TraceReport:
    """What every op of the model's forward pass costs on each target: instructions, cycles, the deciding
    bound and bytes per memory level, per op and in total. Nothing is executed. `precision` "int8" quantizes
    the linear layers as PyTorch's dynamic quantization does (models/quantize.py). `cores` (a number, or "all":
    the socket's): each kernel split across that many cores of a CPU's socket (engine/cores.py); every target
    then means every CPU target. `gpus` (`parallel` "tensor"): what one of that many GPUs runs and waits for,
    each layer split by Megatron-LM's tensor parallelism with two all-reduces over `link`
    (engine/tensor_parallel.py); every target then means every GPU target."""
    from isasim.engine.trace import trace as run

    check_shape(batch, seed, seq)
    check_precision(precision)
    _no_int8_core_aten(precision, core_aten)
    chosen = _on_cores(pick_targets(_names(targets), _names(machines), precision), targets, cores)
    chosen = _on_gpus(chosen, targets, gpus, parallel, link, batch, training=False)
    if cores != 1 and gpus != 1:
        raise UserError("--cores splits a CPU's kernels and --gpus a GPU's layers: give one")
    lowered = lowered_for_cost(model, seq, batch, seed, core_aten, progress, precision)
    if gpus == 1:
        return run(lowered, chosen, progress, cores)
    from isasim.engine import tensor_parallel

    reports = [tensor_parallel.trace(lowered, t, m, gpus, link, progress) for t, m in chosen]
    reports[0].targets = [r.targets[0] for r in reports]
    return reports[0]


def _on_cores(chosen: list, targets: Names, cores: int | str) -> list:
    """The targets that `cores` cores can run: with more than one, the CPU ones (a named GPU is refused)."""
    from isasim.engine.cores import cores_for

    if cores == 1:
        return chosen
    if targets is None:
        chosen = [(t, m) for t, m in chosen if t.simt is None]
    for _, m in chosen:
        cores_for(m, cores)
    return chosen


def _no_int8_core_aten(precision: str, core_aten: bool) -> None:
    if precision != "fp32" and core_aten:
        raise UserError(f"--precision {precision} rewrites aten.linear, which --core-aten decomposes: drop one")


def training_step(model: str, targets: Names = None, machines: Names = None, *, seq: int = 128, batch: int = 1,
                  seed: int = 0, epochs: int = 3, every_machine: bool = False, lora: int | None = None,
                  lora_alpha: float | None = None, lora_targets: str | Sequence[str] | None = None,
                  gpus: int = 1, parallel: str = "data", link: str = "nvlink", cores: int | str = 1,
                  progress: Progress | None = None) -> TrainingReport:
    """One fine-tuning step of a 2-label classifier on the model (forward, backward, AdamW) per target, and
    the whole run of `epochs` over the shipped movie/TV training split; `every_machine`: every target on
    every machine, as `compare` lays them out. `lora` (a rank): the step of LoRA adapters (models/lora.py) on
    `lora_targets` (default query,value) scaled by `lora_alpha` / rank (default 2), each target's full step
    alongside. `gpus` > 1 (`parallel` "data"): the batch split across that many GPUs of one server, the
    gradients all-reduced over `link` ("nvlink" or "pcie"); `parallel` "tensor": every layer split across
    them as Megatron-LM splits it, four all-reduces per layer (engine/tensor_parallel_training.py); GPU
    targets only (engine/training.py). `cores` (a number, or "all": the socket's): every kernel of the step
    split across that many cores of a CPU (engine/cores.py), as `trace(..., cores=)` splits the forward pass;
    CPU targets only."""
    from isasim.engine.trace import trace as run
    from isasim.engine.training import summarise
    from isasim.lowering.pipeline import lower_graph
    from isasim.models import registry
    from isasim.models.finetune import load_split
    from isasim.models.lora import lora as lora_spec
    from isasim.models.training import capture_training

    check_shape(batch, seed, seq)
    adapters = None
    if lora is not None:
        adapters = lora_spec(lora, lora_alpha, tuple(lora_targets) if isinstance(lora_targets, (list, tuple))
                             else lora_targets)
    elif lora_alpha is not None or lora_targets is not None:
        raise UserError("--lora-alpha and --lora-targets shape LoRA adapters: add --lora RANK")
    if every_machine and (targets is not None or machines is not None):
        raise UserError("every_machine=True costs every target on every machine: drop targets and machines")
    chosen = every_pair() if every_machine else pick_targets(_names(targets), _names(machines))
    if epochs < 1:
        raise UserError(f"--epochs {epochs} is out of range: use 1 or more")
    if cores != 1 and gpus != 1:
        raise UserError("--cores splits a CPU's kernels and --gpus a GPU's step: give one")
    chosen = _on_gpus(_on_cores(chosen, targets, cores), targets, gpus, parallel, link, batch)
    if progress:
        progress("capturing the training step", 0, 1)
    spec = registry.resolve(model)
    if gpus > 1 and parallel == "tensor":
        from isasim.engine import tensor_parallel_training

        report = tensor_parallel_training.trace(spec, seq, batch, gpus, chosen, link, seed, adapters, progress)
        return summarise(report, epochs, len(load_split("train")), None, gpus, link, "tensor")
    step = capture_training(spec, seq, batch // gpus, seed=seed, lora=adapters)
    report = run(lower_graph(step.captured.graph), chosen, progress, cores)
    full = None
    if adapters is not None:
        if progress:
            progress("capturing the full step", 0, 1)
        full = run(lower_graph(capture_training(spec, seq, batch // gpus, seed=seed).captured.graph), chosen,
                   progress, cores)
    return summarise(report, epochs, len(load_split("train")), full, gpus, link)


def _on_gpus(chosen: list, targets: Names, gpus: int, parallel: str, link: str, batch: int,
             training: bool = True) -> list:
    """The targets a step over `gpus` GPUs runs on (with more than one: the GPU ones, a named CPU target
    refused), each checked: data parallel is a training step's and needs a batch that splits evenly; the GPUs
    fit one server; the link is described."""
    if not isinstance(gpus, int) or isinstance(gpus, bool) or gpus < 1:
        raise UserError(f"--gpus {gpus} is out of range: use 1 or more")
    if gpus == 1:
        return chosen
    if parallel not in ("data", "tensor"):
        raise UserError(f"--parallel {parallel!r} is not a way to split: use data or tensor")
    if not training and parallel != "tensor":
        raise UserError(f"--parallel {parallel} splits a fine-tuning step's batch: add --training, or split the "
                        "forward pass with --parallel tensor")
    gpu = [(t, m) for t, m in chosen if t.simt is not None]
    if targets is not None and len(gpu) < len(chosen):
        cpu = ", ".join(t.name for t, m in chosen if t.simt is None)
        raise UserError(f"--gpus splits the step across GPUs: {cpu} runs on a CPU; drop it or --gpus")
    if training and parallel == "data" and batch % gpus:
        raise UserError(f"--batch {batch} does not split evenly over {gpus} GPUs: use a multiple of {gpus}")
    for _, m in gpu:
        if gpus > m.gpus_per_server:
            raise UserError(f"--gpus {gpus}: one {m.name} server holds {m.gpus_per_server}; isasim models the GPUs "
                            "of one server")
        if link not in m.links:
            raise UserError(f"--link {link!r} is not described for {m.name}: use {' or '.join(m.links)}")
    return gpu


def check(model: str, targets: Names = None, machines: Names = None, *, seq: int | None = None, batch: int = 1,
          seed: int = 0, text: str | None = None, tolerance: float = 1e-4, on_host: bool = False,
          dataset: str | None = None, jobs: int | None = None, precision: str = "fp32", cores: int | str = 1,
          gpus: int = 1, parallel: str = "tensor", link: str = "nvlink", progress: Progress | None = None
          ) -> CheckReport:
    """Execute every lowered kernel on each target with the model's weights and real inputs, and compare
    every op and the final output with PyTorch; `passed` only if every target stays within `tolerance` and
    counts what the cost model predicts. The inputs: `text` (its tokens are reported; `seq` defaults to their
    number, else to 128) or seeded random ids. On a classifier, each target's predicted label for the text is
    reported next to PyTorch's. `on_host` also runs the emitted machine code; `dataset` (train, dev or test)
    runs a fine-tuned classifier on that split of the movie/TV dataset, as one batch. `jobs`: processes that
    check targets at once (default: one per core, as many as targets and memory allow; 1: this process).
    `cores`: every kernel runs as that many cores' chunks (CPU targets), which must write what one core
    writes, bit for bit. `gpus` (`parallel` "tensor"): every layer split across that many GPUs as Megatron-LM
    splits it, each GPU's shard executed and the partial sums added (GPU targets)."""
    check_shape(batch, seed, seq)
    if jobs is not None and (not isinstance(jobs, int) or isinstance(jobs, bool) or jobs < 1):
        raise UserError(f"--jobs {jobs} is out of range: use 1 or more (1 checks every target in this process)")
    check_finite("--tolerance", tolerance, 0.0, inclusive=True)
    check_precision(precision)
    chosen = _on_cores(pick_targets(_names(targets), _names(machines), precision), targets, cores)
    chosen = _on_gpus(chosen, targets, gpus, parallel, link, batch, training=False)
    if cores != 1 and gpus != 1:
        raise UserError("--cores splits a CPU's kernels and --gpus a GPU's layers: give one")
    from isasim.engine.check import check as run, default_jobs  # (torch loads here, once the arguments are good)
    from isasim.engine.graphs import check_fits, dataset_inputs
    from isasim.lowering.pipeline import lower_graph
    from isasim.models import capture, reference, registry
    from isasim.models.inputs import tokens

    spec = registry.resolve(model)
    inputs = labels = words = None
    if dataset:
        inputs, labels = dataset_inputs(spec, dataset, text)
        batch, seq = inputs["input_ids"].shape
    elif text is not None:
        words = tokens(text)
        seq = seq or min(len(words), spec.config.max_position_embeddings)
        words = words[:seq]
    seq = seq or 128
    per_process = check_fits(model, seq, batch, seed, progress)
    if progress:
        progress("running the model in PyTorch", 0, 1)
    captured = capture.capture(spec, seq, batch, text=text, seed=seed, with_values=True, inputs=inputs)
    final = reference.final_hidden_state(captured)
    graph, fp32 = captured.graph, None
    if precision == "int8":
        from isasim.models.quantize import quantize_graph

        graph, fp32 = quantize_graph(graph), final
        ref, final = reference.quantized_outputs(captured, graph)
    elif precision in ("bf16", "fp16"):  # errors reported against float32 (each target rounds its own way)
        graph, fp32 = in_precision(graph, precision), final
        ref = reference.reference_outputs(captured)
    else:
        ref = reference.reference_outputs(captured)
    names = dict(spec.config.id2label) if spec.num_labels and words is not None else None
    jobs = jobs or default_jobs(len(chosen), per_process)
    report = run(lower_graph(graph), chosen, ref, final, tolerance, progress, on_host, labels, names, jobs, fp32,
                 cores, gpus)
    report.tokens = words
    if precision == "int8" and labels is not None:
        report.pytorch_dynamic_int8 = reference.dynamic_int8(captured, fp32, labels)
    if precision == "bf16" and labels is not None:
        report.pytorch_autocast_bf16 = reference.autocast_bf16(captured, fp32, labels)
    if precision == "fp16" and labels is not None:
        report.pytorch_half_fp16 = reference.half_fp16(captured, fp32, labels)
    return report


def compare(model: str, *, seq: int = 128, batch: int = 1, seed: int = 0, precision: str = "fp32",
            progress: Progress | None = None) -> Comparison:
    """Every target on every machine side by side (time, FLOP/cycle against the machine's peak, bytes per
    level, speed-up over scalar x86-64, the dominant bound) and each op family's share of the cycles; in
    int8, the targets and cores that run it, each set against float32 on the same core and float32 AVX-512."""
    from isasim.engine.compare import compare as run

    check_shape(batch, seed, seq)
    check_precision(precision)
    lowered = lowered_for_cost(model, seq, batch, seed, False, progress, precision)
    fp32 = lowered_for_cost(model, seq, batch, seed, False, progress) if precision != "fp32" else None
    return run(lowered, progress, precision, fp32)


def explain(model: str, op: str, targets: Names = None, machines: Names = None, *, seq: int = 128,
            batch: int = 1, seed: int = 0, iterations: int = 4, precision: str = "fp32",
            progress: Progress | None = None) -> ExplainReport:
    """One kernel (the first that the node name or op `op` picks) taught on each target: on a CPU its
    hottest loop with each instruction's costs and sources, port pressure, the deciding bound, advice and a
    timeline of `iterations`; on a GPU its launch, occupancy, hottest loop and bounds. The report iterates
    over the explanations, one per target."""
    from isasim.engine.explain import ExplainReport
    from isasim.engine.explain import explain as run

    check_shape(batch, seed, seq)
    check_precision(precision)
    chosen = pick_targets(_names(targets), _names(machines), precision)
    if not 1 <= iterations <= 100:
        raise UserError(f"--iterations {iterations} is out of range: use 1..100")
    lowered = lowered_for_cost(model, seq, batch, seed, False, progress, precision)
    cfg = lowered.graph.config
    explained = [run(lowered, t, m, op, iterations) for t, m in chosen]
    return ExplainReport(cfg.get("model", model), seq, batch, op, explained)


def emit(model: str, output: str | Path, targets: Names = None, machines: Names = None, *, seq: int = 128,
         batch: int = 1, seed: int = 0, op: str | None = None, precision: str = "fp32",
         progress: Progress | None = None) -> EmitReport:
    """Every kernel (or those `op` picks) as a file the target's toolchain accepts, with manifest.json, in
    `output` (a folder per target when there are several)."""
    from isasim.engine.emit import EmitReport, EmittedTarget, emit_model, previous_emit

    check_shape(batch, seed, seq)
    check_precision(precision)
    chosen = pick_targets(_names(targets), _names(machines), precision)
    for target, _ in chosen:  # every folder checked before any work
        previous_emit(Path(output) / target.name if len(chosen) > 1 else Path(output))
    lowered = lowered_for_cost(model, seq, batch, seed, False, progress, precision)
    emitted = []
    for target, machine in chosen:
        where = Path(output) / target.name if len(chosen) > 1 else Path(output)
        manifest = emit_model(lowered, target, machine, where, op, progress)
        emitted.append(EmittedTarget(target.name, machine.name, str(where), manifest))
    return EmitReport(lowered.graph.config.get("model", model), seq, batch, emitted)


def scale(model: str, target: str, machine: str | None = None, *, cores: Sequence[int | str] | None = None,
          gpus: Sequence[int] | None = None, parallel: str = "data", link: str = "nvlink", seq: int = 128,
          batch: int = 1, seed: int = 0, precision: str = "fp32", training: bool = False,
          progress: Progress | None = None) -> ScaleReport:
    """The forward pass (with `training`: a fine-tuning step) on each count of `cores` of one CPU socket (a
    number, or "all": the socket's; default 1, 2, 4, 8), each kernel split as engine/cores.py splits it: time,
    speed-up, parallel efficiency, the deciding bound, and the op family that scales worst at each point. Or,
    with `gpus`, a fine-tuning step of `batch` sentences split across each count of GPUs (data parallel over
    `link`): its time, speed-up, efficiency, and whether compute, the optimizer or the all-reduce takes most of
    it; with `parallel` "tensor", the forward pass (with `training`: the fine-tuning step) split across them
    by Megatron-LM's tensor parallelism."""
    from isasim.engine.scale import scale as run, scale_gpus, scale_tensor

    check_shape(batch, seed, seq)
    check_precision(precision)
    if isinstance(target, str):
        target = [target]
    if len(target) != 1:
        raise UserError("scale follows one target across core counts: name exactly one with --target")
    if gpus is not None:
        if cores is not None:
            raise UserError("scale follows either core counts (--cores) or GPU counts (--gpus): drop one")
        if precision != "fp32":
            raise UserError(f"--gpus scales float32 work across GPUs: drop --precision {precision}")
        (t, m), = pick_targets(target, _names(machine))
        if t.simt is None:
            raise UserError(f"--gpus scales a step across GPUs: {t.name} runs on a CPU; use --cores for it")
        counts = sorted(set(gpus))
        if not counts:
            raise UserError("--gpus lists no GPU counts: give some, e.g. --gpus 1,2,4,8")
        if parallel not in ("data", "tensor"):
            raise UserError(f"--parallel {parallel!r}: data (a fine-tuning step's batch) or tensor (every "
                            "layer)")
        steps = []
        step = parallel == "data" or training  # a fine-tuning step at each point
        for i, n in enumerate(counts):
            if step:
                steps.append(training_step(model, target, machine, seq=seq, batch=batch, seed=seed, epochs=1,
                                           gpus=n, parallel=parallel, link=link))
            else:
                steps.append(trace(model, target, machine, seq=seq, batch=batch, seed=seed, gpus=n, link=link))
            if progress:
                progress(f"costing {target[0]} on 1..{counts[-1]} GPUs", i + 1, len(counts))
        return scale_gpus(steps, link, parallel) if step else scale_tensor(steps, link)
    (t, m), = _on_cores(pick_targets(target, _names(machine), precision), target, 2)
    if training:
        from isasim.lowering.pipeline import lower_graph
        from isasim.models import registry
        from isasim.models.training import capture_training

        if precision != "fp32":
            raise UserError(f"--training costs a float32 fine-tuning step: drop --precision {precision}")
        lowered = lower_graph(capture_training(registry.resolve(model), seq, batch, seed=seed).captured.graph)
    else:
        lowered = lowered_for_cost(model, seq, batch, seed, False, progress, precision)
    return run(lowered, t, m, list(cores or (1, 2, 4, 8)), progress, training)


def host(model: str, targets: Names = None, machines: Names = None, *, seq: int = 128, batch: int = 1,
         seed: int = 0, repeat: int = 5, precision: str = "fp32", progress: Progress | None = None) -> HostReport:
    """The predictions against this machine: the host's core identified (and the described microarchitecture
    nearest to it, unless `machines` names one), its clock measured, and every kernel's machine code timed
    natively (warm, best of `repeat`) next to its predicted time; per target the median and time-weighted
    errors and the forward's measured/predicted ratio. Targets: those this host runs (default: all of them)."""
    from isasim.backends import backend_for
    from isasim.engine.host import host as run
    from isasim.isa import hostcpu, native
    from isasim.isa.targets import TARGETS, get_any_target

    check_shape(batch, seed, seq)
    check_precision(precision)
    if not isinstance(repeat, int) or isinstance(repeat, bool) or repeat < 1:
        raise UserError(f"--repeat {repeat} is out of range: use 1 or more")
    cpu = hostcpu.this_host()
    if cpu.isa != "x86-64":
        raise UserError(f"isasim host times x86-64 machine code; this host is {cpu.isa} ({cpu.core}): "
                        "use `isasim check --on-host` to run its code")
    missing = native.missing_tools(cpu.isa)
    if missing:
        raise UserError(f"isasim host builds every kernel with the host's toolchain: {missing}")

    def runs_here(t) -> bool:
        if t.isa != cpu.isa or (precision == "fp32" and not t.fp32):
            return False
        try:
            return backend_for(t).can_run_native(t, precision) is None
        except UserError:  # no lowering in this precision
            return False

    names = _names(targets) or [t.name for t in TARGETS.values() if runs_here(t)]
    if not names:
        raise UserError(f"this host ({cpu.core}) runs no target's {precision} machine code: it lacks the extensions "
                        f"they need (`isasim targets` lists them); time another precision, or run on such a host")
    for name in names:
        t = get_any_target(name)
        why = None if t.isa == cpu.isa else f"it is {t.isa} code and this host runs {cpu.isa}"
        why = why or backend_for(t).can_run_native(t, precision)
        if why:
            raise UserError(f"--target {t.name}: this host cannot time it natively ({why}): choose another target")
    chosen = pick_targets(names, _names(machines) or [cpu.uarch], precision)
    lowered = lowered_for_cost(model, seq, batch, seed, False, progress, precision)
    if progress:
        progress("measuring the clock", 0, 1)
    core = next(m for t, m in chosen if t.isa == cpu.isa)  # (the multiply chain's latency comes from its data)
    return run(lowered, chosen, cpu, hostcpu.measure_clock(core, flags=tuple(cpu.flags)), repeat, progress)


def sweep(models: Names, seqs: Sequence[int] | int = 128, batches: Sequence[int] | int = 1, targets: Names = None,
          machines: Names = None, *, precisions: Names = "fp32", seed: int = 0, output: str | Path | None = None,
          fmt: str | None = None, scheduler=None, workers: int | None = None, serial: bool = False,
          retry_failed: bool = False, cores: Sequence[int | str] | int | str = 1, progress=None):
    """A grid of configurations, one tidy row each, with the totals `trace` gives for it: every model x seq x
    batch x precision x target (x each of `machines` of the target's instruction set). Points run as tasks of
    a Dask cluster: a new LocalCluster of `workers` processes (default: this machine's cores), or `scheduler`
    (an address such as "tcp://host:8786", or a distributed.Client); `serial=True` runs them in this process.
    With `output` (CSV, or JSON lines for .jsonl), rows are appended as they finish and points already in the
    file are skipped, so a killed sweep resumes. A failing point is a row with its one-line `error`.
    `cores`: core counts of each CPU target's socket (as `trace(..., cores=)`; a GPU is costed once).
    `progress(done, running, failed, total)`. Returns the grid's rows, a pandas DataFrame when pandas is
    installed (its attrs["notes"] say which targets were left out, and why), else a list of dicts."""
    from isasim.engine.sweep import grid, sweep as run

    def listed(values, name: str) -> list:
        values = [values] if isinstance(values, (str, int)) else list(values)
        if not values:
            raise UserError(f"no {name} given: give at least one")
        return values

    points, notes = grid(listed(models, "models"), listed(seqs, "seqs"), listed(batches, "batches"),
                         listed(precisions, "precisions"), _names(targets), _names(machines), seed,
                         listed(cores, "cores"))
    rows = run(points, Path(output) if output is not None else None, fmt, seed=seed, scheduler=scheduler,
               workers=workers, serial=serial, retry_failed=retry_failed, progress=progress)
    try:
        import pandas
    except ImportError:
        return rows
    table = pandas.DataFrame(rows)
    table.attrs["notes"] = notes
    return table
