"""A fine-tuning step split across the GPUs of one server by Megatron-LM's tensor parallelism: each GPU runs
its own share of the model (models/tensor_parallel.py), a step captured like any, with two all-reduces of
activations forward and two of their gradients backward per layer.

Costed (`trace`): every GPU's share has the same shapes, so GPU 0's step is the step; each all-reduce is
link time over the link (isa/gpu.py `Link`) in place of the copy it lowers to, and nothing overlaps it: the
next op needs its sum (Megatron-LM can overlap the backward all-reduce with the weight-gradient GEMM,
`--tp-comm-overlap`; isasim costs the plain schedule).

Executed (`gradients`): every GPU's captured step runs in isasim's executor in lockstep, step by step; after
an all-reduce step, its buffer on every GPU becomes the sum of all the GPUs' copies, added in GPU order 0 to
N-1 in float32. A ring adds the same terms in a rotating order per chunk, so a real all-reduce can differ in
the last bits; the sharded gradients are held to one GPU's within a float32 tolerance, not bit for bit.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np

from isasim.engine.data_parallel import gradients as step_gradients
from isasim.engine.run import run_steps
from isasim.engine.targets import Progress
from isasim.engine.tensor_parallel import link_row, with_rows
from isasim.engine.trace import TraceReport, trace as trace_whole
from isasim.isa.hardware import Machine
from isasim.isa.targets import Target
from isasim.lowering.pipeline import lower_graph
from isasim.models.graph import Ref
from isasim.models.lora import Lora
from isasim.models.registry import ModelSpec
from isasim.models.megatron import split_dim
from isasim.models.tensor_parallel import ALL_REDUCE_OP
from isasim.models.training import capture_training


def trace(spec: ModelSpec, seq: int, batch: int, gpus: int, chosen: list[tuple[Target, Machine]], link: str,
          seed: int = 0, lora: Lora | None = None, progress: Progress | None = None) -> TraceReport:
    """What one of `gpus` GPUs runs and waits for in a step on the whole batch: its share, and the all-reduces
    (`lora`: refused, models/training.py)."""
    step = capture_training(spec, seq, batch, seed=seed, lora=lora, tensor=(0, gpus))
    lowered = lower_graph(step.captured.graph)
    report = trace_whole(lowered, chosen, progress)
    steps = [s for s in lowered.steps if s.kernel is not None]
    reduced = sum(_bytes(s) for s in steps if s.node.op == ALL_REDUCE_OP)
    for i, (one, (_, machine)) in enumerate(zip(report.targets, chosen)):
        rows = [link_row(row, row.name, _bytes(s), machine, link, gpus) if s.node.op == ALL_REDUCE_OP else row
                for s, row in zip(steps, one.ops)]
        report.targets[i] = replace(with_rows(one, rows, gpus), allreduce_bytes=reduced)
    return report


def _bytes(step) -> int:
    return sum(b.size * b.dtype.itemsize for b in step.kernel.buffers if b.is_output)


def gradients(spec: ModelSpec, seq: int, batch: int, gpus: int, target: Target, machine: Machine,
              seed: int = 0) -> tuple[dict[str, np.ndarray], list[dict[str, np.ndarray]]]:
    """(one GPU's gradients of the whole step, each of `gpus` GPUs' gradients of its share), every step
    executed for `target` on `machine`; `assemble` puts the shares together."""
    whole = capture_training(spec, seq, batch, seed=seed, with_values=True)
    lowered = lower_graph(whole.captured.graph)
    one = step_gradients(whole, lowered, _run_all([lowered], target, machine)[0])
    shares = [capture_training(spec, seq, batch, seed=seed, with_values=True, tensor=(rank, gpus))
              for rank in range(gpus)]
    graphs = [lower_graph(s.captured.graph) for s in shares]
    storages = _run_all(graphs, target, machine)
    return one, [step_gradients(s, g, st) for s, g, st in zip(shares, graphs, storages)]


def _run_all(graphs: list, target: Target, machine: Machine) -> list[dict[str, np.ndarray]]:
    """Every GPU's step in lockstep (the graphs have the same steps, in the same order, with their own shapes),
    each all-reduce's buffer made the sum of the GPUs' copies once every GPU has written its own."""
    storages = [{} for _ in graphs]
    for steps in zip(*(run_steps(g, target, st, machine=machine) for g, st in zip(graphs, storages)), strict=True):
        if len({s.node.name for s in steps}) > 1:
            raise ValueError(f"the GPUs' steps differ: {[s.node.name for s in steps]}")
        if steps[0].node.op == ALL_REDUCE_OP:
            name = graphs[0].context.views[Ref(steps[0].node.name)].storage
            total = storages[0][name].copy()
            for mine in storages[1:]:
                total += mine[name]
            for mine in storages:
                mine[name] = total.copy()
    return storages


def assemble(name: str, shares: list[np.ndarray]) -> np.ndarray:
    """A parameter's whole gradient from the GPUs' shares: joined along the dimension Megatron splits it by,
    or GPU 0's where every GPU holds it whole."""
    dim = split_dim(name)
    return shares[0] if dim is None else np.concatenate(shares, axis=dim)
