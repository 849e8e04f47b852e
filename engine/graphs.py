"""The graphs the engine works on: captured from PyTorch (models/), lowered to kernels (lowering/)."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from isasim.engine.targets import Progress
from isasim.isa.errors import UserError
from isasim.lowering.pipeline import LoweredGraph, lower_graph
from isasim.models.graph import Graph

if TYPE_CHECKING:  # (capture and the registry import torch and transformers: only when they are needed)
    from isasim.models.registry import ModelSpec


def check_shape(batch: int) -> None:
    if batch < 1:
        raise UserError(f"--batch {batch} is out of range: use 1 or more")


def cost_graph(model: str, seq: int, batch: int, seed: int = 0, core_aten: bool = False,
               progress: Progress | None = None) -> Graph:
    """The model's graph without values, for costing: from the on-disk cache when this capture was made
    before (models/graph_cache.py)."""
    from isasim.models import graph_cache

    key = graph_cache.key(model, seq, batch, seed, core_aten)
    graph = graph_cache.load(key)
    if graph is None:
        from isasim.models import capture, registry

        spec = registry.resolve(model)
        if progress:
            progress("capturing the graph", 0, 1)
        graph = capture.capture(spec, seq, batch, seed=seed, core_aten=core_aten).graph
        graph_cache.save(key, graph)
    return graph


def lowered_for_cost(model: str, seq: int, batch: int, seed: int = 0, core_aten: bool = False,
                     progress: Progress | None = None) -> LoweredGraph:
    return lower_graph(cost_graph(model, seq, batch, seed, core_aten, progress))


def dataset_inputs(spec: ModelSpec, split: str, text: str | None) -> tuple[dict, np.ndarray]:
    """Every sentence of a split of the movie/TV dataset as one batch, padded to the longest (+ its labels)."""
    from isasim.models.finetune import encode, load_split
    from isasim.models.inputs import tokenize

    if spec.num_labels == 0:
        raise UserError(f"--dataset needs a sequence classifier (a folder saved by `isasim finetune`); "
                        f"{spec.name} has no classification head")
    if text is not None:
        raise UserError("--dataset and --text both choose the inputs: give one")
    rows = load_split(split)
    seq = max(sum(tokenize(r["text"], 512)[1]) for r in rows)
    if seq > spec.config.max_position_embeddings:
        raise UserError(f"a sentence of {split} needs {seq} tokens, more than {spec.name} accepts")
    return encode([r["text"] for r in rows], seq), np.array([r["label"] for r in rows])
