"""PyTorch references: every Graph node's output, the eager model's final hidden state, and FLOPs."""

from __future__ import annotations

import numpy as np
import torch
from torch.utils.flop_counter import FlopCounterMode

from isasim.models.capture import Captured
from isasim.models.inputs import make_inputs
from isasim.models.registry import ModelSpec, build_model


def reference_outputs(captured: Captured) -> dict[str, list[np.ndarray]]:
    """Run the exported program on the captured values; return each Graph node's outputs by node name."""
    graph = captured.graph
    if graph.values is None:
        raise ValueError("reference_outputs needs a capture made with with_values=True")
    wanted = {n.name for n in graph.nodes}
    gm = captured.program.graph_module
    args = [torch.from_numpy(graph.values[n.name].copy()) for n in gm.graph.nodes if n.op == "placeholder"]
    recorded: dict[str, list[np.ndarray]] = {}

    class Recorder(torch.fx.Interpreter):
        def run_node(self, n):
            result = super().run_node(n)
            if n.name in wanted:
                outs = result if isinstance(result, (tuple, list)) else (result,)
                recorded[n.name] = [o.detach().contiguous().numpy().copy() for o in outs]
            return result

    with torch.no_grad():
        Recorder(gm).run(*args)
    return recorded


def final_hidden_state(captured: Captured) -> np.ndarray:
    """The eager Hugging Face forward's output on the captured inputs (what `check` compares): the last hidden
    state, or a classifier's logits."""
    if captured.model is None:
        raise ValueError("final_hidden_state needs a capture made with with_values=True")
    with torch.no_grad():
        out = captured.model(**captured.inputs)
    final = out.logits if hasattr(out, "logits") else out.last_hidden_state
    return final.detach().numpy().copy()


def flop_count(spec: ModelSpec, seq: int, batch: int) -> int:
    """PyTorch's FlopCounterMode total for one forward (a multiply-add counts 2) with eager attention."""
    from transformers.initialization import no_init_weights

    # FLOPs depend on shapes only: skip the random init, which costs more than the forward itself.
    with no_init_weights():
        model = build_model(spec.config, spec.has_pooler)
    inputs = make_inputs(spec.config, seq, batch, None, 0, spec.name)
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        model(**inputs)
    return int(counter.get_total_flops())
