"""The graphs the engine works on: captured from PyTorch (models/), lowered to kernels (lowering/)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from isasim.engine.targets import Progress
from isasim.isa.errors import UserError
from isasim.lowering.pipeline import LoweredGraph, lower_graph
from isasim.models.graph import Graph
from isasim.models.limits import check_seed

if TYPE_CHECKING:  # (capture and the registry import torch and transformers: only when they are needed)
    from isasim.models.registry import ModelSpec


def check_shape(batch: int, seed: int = 0, seq: int | None = None) -> None:
    """What can be checked of the input shape and seed before a model is loaded (the model bounds --seq
    from above)."""
    if not isinstance(batch, int) or isinstance(batch, bool) or batch < 1:
        raise UserError(f"--batch {batch} is out of range: use 1 or more")
    if seq is not None and (not isinstance(seq, int) or isinstance(seq, bool) or seq < 1):
        raise UserError(f"--seq {seq} is out of range: use 1 or more (up to the model's max_position_embeddings)")
    check_seed(seed)


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


def check_precision(precision: str) -> None:
    from isasim.models.quantize import PRECISIONS

    if precision not in PRECISIONS:
        raise UserError(f"--precision {precision!r} is unknown: choose one of {', '.join(PRECISIONS)}")


def in_precision(graph: Graph, precision: str) -> Graph:
    """The graph as it runs in `precision`: int8 quantizes its linear layers (models/quantize.py), bf16 rounds
    their operands (models/bf16.py), fp16 multiplies them on tensor cores (models/fp16.py)."""
    if precision == "bf16":
        from isasim.models.bf16 import bf16_graph

        return bf16_graph(graph)
    if precision == "fp16":
        from isasim.models.fp16 import fp16_graph

        return fp16_graph(graph)
    if precision == "int8":
        from isasim.models.quantize import quantize_graph

        return quantize_graph(graph)
    return graph


def lowered_for_cost(model: str, seq: int, batch: int, seed: int = 0, core_aten: bool = False,
                     progress: Progress | None = None, precision: str = "fp32") -> LoweredGraph:
    return lower_graph(in_precision(cost_graph(model, seq, batch, seed, core_aten, progress), precision))


def activation_bytes(graph: Graph) -> int:
    """Every op's outputs, once: what one target's executor holds at most."""
    return sum(m.numel * m.dtype.itemsize for n in graph.nodes for m in n.outs)


def check_bytes(graph: Graph) -> int:
    """What `check` holds in memory for a graph: every weight and input, and every op's outputs twice (the
    executor keeps each storage, and PyTorch's reference keeps its own)."""
    held = sum(p.meta.numel * p.meta.dtype.itemsize for p in graph.placeholders)
    return held + 2 * activation_bytes(graph)


def available_bytes() -> int | None:
    """Memory the machine can give now (Linux's MemAvailable), or None where it does not say."""
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return None


def check_fits(model: str, seq: int, batch: int, seed: int, progress: Progress | None = None) -> int:
    """Refuse, before any tensor is allocated, a check whose values cannot fit in this machine's memory;
    returns what one more process checking a target would need on top (its activations)."""
    graph = cost_graph(model, seq, batch, seed, False, progress)
    need, have = check_bytes(graph), available_bytes()
    if have is not None and need > have:
        raise UserError(f"--batch {batch} --seq {seq}: checking {model} needs about {need / 2**30:.1f} GiB (every "
                        f"activation, twice), this machine has {have / 2**30:.1f} GiB available: lower --batch or "
                        "--seq")
    return activation_bytes(graph)


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
