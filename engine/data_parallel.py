"""A data-parallel fine-tuning step executed as its GPUs would run it: each GPU's shard of the batch through the
captured forward and backward in isasim's executor, then the all-reduce as the sum it is.

The step's loss is the batch's mean, so with equal shards the full batch's gradient is the mean of the
shards' gradients: DDP sums them across the GPUs (the ring all-reduce) and divides by their number. Here the
sum runs in GPU order, 0 to N-1, in float32, then the division; a ring adds the same terms in a rotating
order per chunk, so its result can differ from this one in the last bits, as from one GPU's, and the check
holds the reduced gradients to one GPU's within a float32 tolerance rather than bit for bit.
"""

from __future__ import annotations

import numpy as np

from isasim.engine.run import run_graph
from isasim.isa.errors import UserError
from isasim.isa.hardware import Machine
from isasim.isa.targets import Target
from isasim.lowering.pipeline import lower_graph, materialize
from isasim.models.registry import ModelSpec
from isasim.models.training import capture_training

INPUTS = ("input_ids", "attention_mask", "token_type_ids", "labels")


def gradients(step, lowered, storages: dict) -> dict[str, np.ndarray]:
    """The step's gradients by parameter name, from the storages its execution left."""
    outs = step.captured.graph.outputs
    return {name: materialize(lowered.context.views[outs[1 + i]], storages) for i, name in enumerate(step.params)}


def data_parallel_gradients(spec: ModelSpec, seq: int, batch: int, gpus: int, target: Target, machine: Machine,
                            seed: int = 0) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    """(the gradients all-reduced over `gpus` shards of the batch, one GPU's gradients of the whole batch),
    each executed for `target` on `machine`."""
    if batch % gpus:
        raise UserError(f"--batch {batch} does not split evenly over {gpus} GPUs: use a multiple of {gpus}")
    whole = capture_training(spec, seq, batch, seed=seed, with_values=True)
    lowered = lower_graph(whole.captured.graph)
    one = gradients(whole, lowered, run_graph(lowered, target, machine=machine))
    shard = capture_training(spec, seq, batch // gpus, seed=seed, with_values=True)
    lowered = lower_graph(shard.captured.graph)
    values = lowered.graph.values
    full = whole.captured.graph.values
    reduced: dict[str, np.ndarray] = {}
    size = batch // gpus
    for g in range(gpus):  # each GPU's shard: the same weights, its slice of the batch
        for name in INPUTS:
            values[name] = np.ascontiguousarray(full[name][g * size:(g + 1) * size])
        mine = gradients(shard, lowered, run_graph(lowered, target, machine=machine))
        for name, grad in mine.items():
            reduced[name] = grad.astype(np.float32) if g == 0 else reduced[name] + grad
    return {name: (total / np.float32(gpus)).astype(np.float32) for name, total in reduced.items()}, one
