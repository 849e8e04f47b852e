"""A fine-tuning step's cost per target, split into forward, backward and optimizer, and the whole
fine-tuning run it implies (epochs x steps per epoch over the shipped movie/TV training split): the seed
article's CPU-versus-GPU question, answered with numbers. With LoRA (models/lora.py), each target's full
step sits next to its LoRA step, so the saving is read per target.

Data parallel over N GPUs of one server (`--gpus N --parallel data`), as PyTorch's DistributedDataParallel
runs it: each GPU runs forward and backward on batch / N sentences, the gradients are summed across the GPUs
with a ring all-reduce (isa/gpu.py `Link`: 2(N-1)/N of the gradient bytes through each GPU's link at NCCL's
measured bus bandwidth), and every GPU applies the same AdamW update. DDP all-reduces the gradients in 25 MB
buckets while backward is still computing the rest (Li et al., "PyTorch Distributed", VLDB 2020), so what
the step waits for is the larger of the last bucket's all-reduce (it can start only when backward ends) and
the whole all-reduce less the backward it hides behind.

Tensor parallel (`--gpus N --parallel tensor`, engine/tensor_parallel_training.py): every GPU runs its share
of every layer on the whole batch, and the step waits for each of its four all-reduces per layer."""

from __future__ import annotations

from dataclasses import dataclass

from isasim.backends import load_machine
from isasim.engine.trace import TraceReport
from isasim.models.training import PHASES
from isasim.report import ModelReport


DDP_BUCKET_BYTES = 25 * 2 ** 20  # torch.nn.parallel.DistributedDataParallel(bucket_cap_mb=25), its default


@dataclass
class MultiGpu:
    """One step's all-reduces across `gpus` GPUs over `link`."""

    parallel: str  # "data": the batch split, the gradients all-reduced; "tensor": every layer split
    gpus: int
    link: str
    per_gpu_batch: int  # (tensor: every GPU sees the whole batch)
    allreduce_bytes: int  # data: the float32 gradients; tensor: every all-reduce's activations or their gradients
    allreduces: int  # data: 1 (in 25 MB buckets); tensor: 4 per layer
    allreduce_ms: float  # all of them, end to end
    exposed_ms: float  # what the step waits for (data: after backward, the rest hides behind it; tensor: all)


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
    multi_gpu: MultiGpu | None = None  # --gpus N: the all-reduces, what the step waits for in step_ms too
    cores: int = 1  # a CPU target's: every kernel split across this many cores (engine/cores.py)


@dataclass
class TrainingReport(ModelReport):
    epochs: int
    train_sentences: int
    steps_per_epoch: int
    optimizer: dict
    targets: list[StepCost]
    trained_params: int = 0  # what AdamW updates (tensor parallel: on one GPU, its share)
    frozen_params: int = 0  # with LoRA: the base model's weights, read but not trained

    @property
    def lora(self) -> dict | None:
        return self.optimizer.get("lora")

    def records(self) -> list[dict]:
        """One row per target: each phase's milliseconds, the step's, and the whole run's seconds (with LoRA,
        the full step's milliseconds too)."""
        return [{"target": t.target, "uarch": t.uarch, "kernels": t.kernels, "instructions": t.instructions,
                 **{f"{p}_ms": t.cycles[p] / (t.clock_ghz * 1e6) for p in PHASES}, "step_ms": t.step_ms,
                 "run_s": t.run_s, **({"full_step_ms": t.full_step_ms} if self.lora else {}), "cores": t.cores}
                for t in self.targets]


def _phase_cycles(t) -> dict[str, float]:
    """Each phase's computing cycles (a tensor-parallel step's all-reduces, on the link, apart)."""
    return {p: sum(r.cycles for r in t.ops if r.module.split(".")[0] == p and r.bound.kind != "link")
            for p in PHASES}


def data_parallel(t, gpus: int, link: str, gradient_bytes: int, per_gpu_batch: int) -> MultiGpu:
    """The all-reduce of one step's gradients for the traced per-GPU step `t` (see the module docstring)."""
    wire = load_machine(t.uarch).links[link]
    whole = wire.allreduce_seconds(gradient_bytes, gpus)
    last = wire.allreduce_seconds(min(gradient_bytes, DDP_BUCKET_BYTES), gpus)
    backward = _phase_cycles(t)["backward"] / (t.clock_ghz * 1e9)
    return MultiGpu("data", gpus, link, per_gpu_batch, gradient_bytes, 1, whole * 1e3,
                    max(last, whole - backward) * 1e3)


def tensor_parallel(t, gpus: int, link: str, batch: int) -> MultiGpu:
    """The all-reduces of a traced tensor-parallel step `t` (its link rows), all waited for."""
    rows = [r for r in t.ops if r.bound.kind == "link"]
    ms = sum(r.cycles for r in rows) / (t.clock_ghz * 1e6)
    return MultiGpu("tensor", gpus, link, batch, t.allreduce_bytes, len(rows), ms, ms)


def summarise(report: TraceReport, epochs: int, train_sentences: int, full: TraceReport | None = None,
              gpus: int = 1, link: str = "nvlink", parallel: str = "data") -> TrainingReport:
    """A traced training step (models/training.py tags every op with its phase) as a TrainingReport; `full`,
    the same targets' full step, where `report` is a LoRA step. `gpus` > 1: `report` is one GPU's share of a
    data-parallel step (batch / gpus sentences), and each step adds its gradients' all-reduce over `link`; or
    of a tensor-parallel one (`parallel` "tensor"), its all-reduces among its rows. Each target's cores are
    those its trace split every kernel across."""
    batch = report.batch * gpus if parallel == "data" else report.batch
    steps = -(-train_sentences // batch)
    rows = []
    fulls = full.targets if full is not None else [None] * len(report.targets)
    trained = int(report.config.get("params", 0))
    for t, f in zip(report.targets, fulls):
        cycles = _phase_cycles(t)
        step_s = sum(cycles.values()) / (t.clock_ghz * 1e9)
        full_ms = sum(_phase_cycles(f).values()) / (f.clock_ghz * 1e6) if f is not None else None
        if f is not None and gpus > 1:  # the full step all-reduces every parameter's gradient
            full_ms += data_parallel(f, gpus, link, 4 * int(full.config.get("params", 0)), report.batch).exposed_ms
        split = None
        if gpus > 1:
            split = data_parallel(t, gpus, link, 4 * trained, report.batch) if parallel == "data" else \
                tensor_parallel(t, gpus, link, report.batch)  # (data: float32 gradients)
            step_s += split.exposed_ms / 1e3
        kernels = sum(r.bound.kind != "link" for r in t.ops)
        rows.append(StepCost(t.target, t.uarch, t.clock_ghz, kernels, t.instructions, cycles, step_s * 1e3,
                             step_s * steps * epochs, full_ms, split, t.cores))
    return TrainingReport(report.model, report.seq, batch, epochs, train_sentences, steps,
                          report.config.get("training", {}), rows, trained,
                          int(report.config.get("frozen_params", 0)))
