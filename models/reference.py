"""PyTorch references: every Graph node's output, the eager model's final hidden state, and FLOPs."""

from __future__ import annotations

import warnings

import numpy as np
import torch
from torch.utils.flop_counter import FlopCounterMode

from isasim.models.capture import Captured
from isasim.models.graph import Graph, Ref
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


def quantized_outputs(captured: Captured, graph: Graph) -> tuple[dict[str, list[np.ndarray]], np.ndarray]:
    """The int8 graph (models/quantize.py) run as a reference: PyTorch's exported program, with each quantized
    linear layer computed by the numpy references of the ops that quantize its input and multiply. Returns
    every node's outputs (the new nodes' included) and the final output."""
    from isasim.models.quantize import reference_op

    nodes = {n.name: n for n in graph.nodes}
    recorded: dict[str, list[np.ndarray]] = {}
    gm = captured.program.graph_module
    args = [torch.from_numpy(graph.values[n.name].copy()) for n in gm.graph.nodes if n.op == "placeholder"]

    def value(ref):
        """A placeholder's value, or a node's output: computed by its reference op when it is one of the
        quantization's (the activation's copy, min/max, parameters, bytes), once."""
        if ref.name in graph.values:
            return graph.values[ref.name]
        if ref.name not in recorded:
            node = nodes[ref.name]
            recorded[ref.name] = [reference_op(node, [value(a) for a in node.args])]
        return recorded[ref.name][ref.index]

    class Recorder(torch.fx.Interpreter):
        def run_node(self, n):
            node = nodes.get(n.name)
            if node is not None and node.op == "isasim.linear_int8":
                x = self.env[n.args[0]].detach().numpy()
                out = value(Ref(n.name))
                return torch.from_numpy(out.reshape(x.shape[:-1] + out.shape[-1:]).copy())
            result = super().run_node(n)
            if node is not None:
                outs = result if isinstance(result, (tuple, list)) else (result,)
                recorded[n.name] = [o.detach().contiguous().numpy().copy() for o in outs]
            return result

    with torch.no_grad():
        Recorder(gm).run(*args)
    out = graph.outputs[0]
    return recorded, recorded[out.name][out.index]


def dynamic_int8(captured: Captured, fp32_final: np.ndarray, labels: np.ndarray) -> dict:
    """PyTorch's own int8 of the same classifier, the anchor: torch.ao.quantization.quantize_dynamic of every
    nn.Linear (quint8 activations per tensor, qint8 weights), its logits against float32 PyTorch's."""
    with warnings.catch_warnings():  # (torch.ao.quantization's deprecation notices: it is still the anchor)
        warnings.simplefilter("ignore")
        model = torch.ao.quantization.quantize_dynamic(captured.model, {torch.nn.Linear}, dtype=torch.qint8)
    with torch.no_grad():
        logits = model(**captured.inputs).logits.detach().numpy()
    return _against(logits, fp32_final, labels)


def autocast_bf16(captured: Captured, fp32_final: np.ndarray, labels: np.ndarray) -> dict:
    """PyTorch's own bf16 of the same classifier, the anchor for --precision bf16: the forward under
    torch.autocast("cpu", dtype=torch.bfloat16), which runs its linear layers (and matmuls) in bf16."""
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        logits = captured.model(**captured.inputs).logits.float().detach().numpy()
    return _against(logits, fp32_final, labels)


def half_fp16(captured: Captured, fp32_final: np.ndarray, labels: np.ndarray) -> dict:
    """PyTorch's own fp16 of the same classifier, the anchor for --precision fp16: a copy of the model in
    half precision, on the CPU (every op in fp16, where isasim keeps all but the linear layers in float32)."""
    import copy

    half = copy.deepcopy(captured.model).half()
    with torch.no_grad():
        logits = half(**captured.inputs).logits.float().detach().numpy()
    return _against(logits, fp32_final, labels)


def _against(logits: np.ndarray, fp32_final: np.ndarray, labels: np.ndarray) -> dict:
    predicted = logits.argmax(-1)
    return {"max_abs_err": float(np.abs(logits.astype(np.float64) - fp32_final).max()),
            "label_agreement": float(np.mean(predicted == fp32_final.argmax(-1))),
            "accuracy": float(np.mean(predicted == labels))}


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
