"""Capture a BERT forward pass with torch.export and convert it to the torch-free `Graph`.

By default the export IR is kept as is (aten.linear, aten.matmul, aten.layer_norm, aten.softmax.int, ...):
`run_decompositions()` costs about 5 s for bert-base, more than everything else in a cost-only trace.
`core_aten=True` decomposes to core ATen (addmm, bmm, native_layer_norm, _softmax, ...) for users who want it.

Cost-only captures build the model on the meta device: no weights are allocated, export only needs shapes.
"""

from __future__ import annotations

import operator
import re
from dataclasses import dataclass, field

import numpy as np
import torch
from torch.export import ExportedProgram
from torch.export.graph_signature import InputKind

from isasim.isa.errors import UserError
from isasim.isa.dtype import DType
from isasim.models.graph import Graph, Node, Placeholder, PlaceholderKind, Ref, TensorMeta
from isasim.models.inputs import check_shape, make_inputs
from isasim.models.registry import ModelSpec, build_model, load_weights

DTYPES = {torch.float32: DType.F32, torch.int64: DType.I64, torch.bool: DType.BOOL}
KINDS = {
    InputKind.PARAMETER: PlaceholderKind.PARAMETER,
    InputKind.BUFFER: PlaceholderKind.BUFFER,
    InputKind.USER_INPUT: PlaceholderKind.INPUT,
    InputKind.CONSTANT_TENSOR: PlaceholderKind.CONSTANT,
}
# Ops that only check metadata at run time and produce no tensor.
ASSERT_OPS = {"aten._assert_tensor_metadata.default", "aten._assert_async.msg", "aten._assert_scalar.default",
              "aten.sym_constrain_range_for_size.default", "aten.sym_constrain_range.default"}
# Ops that are the identity in eval mode; their users read the input instead.
IDENTITY_OPS = {"aten.dropout.default"}


@dataclass
class Captured:
    graph: Graph
    program: ExportedProgram
    model: torch.nn.Module | None = None  # the eager HF model with real values (with_values only)
    inputs: dict[str, torch.Tensor] = field(default_factory=dict)
    spec: ModelSpec | None = None


def capture(
    spec: ModelSpec,
    seq: int,
    batch: int,
    text: str | None = None,
    seed: int = 0,
    with_values: bool = False,
    core_aten: bool = False,
    inputs: dict[str, torch.Tensor] | None = None,
) -> Captured:
    """Export spec's BertModel for [batch, seq] inputs and convert it to a Graph.

    with_values=False: meta-device model, Graph.values is None (fast; for costing).
    with_values=True: real weights (from the folder, or the default init after seeding with `seed`) and
    Graph.values holds every placeholder as numpy.
    """
    check_shape(spec.config, seq, batch, spec.name)
    if inputs is None:  # else given (a dataset's sentences, [batch, seq])
        inputs = make_inputs(spec.config, seq, batch, text, seed, spec.name)
    if with_values:
        with torch.random.fork_rng(devices=[]):  # seed the init without touching the caller's global RNG
            torch.manual_seed(int(seed))
            model = build_model(spec.config, spec.has_pooler, spec.num_labels)
        if spec.weights is not None:
            load_weights(spec, model)
        kwargs = inputs
    else:
        with torch.device("meta"):
            model = build_model(spec.config, spec.has_pooler, spec.num_labels)
        kwargs = {k: v.to("meta") for k, v in inputs.items()}
    with torch.no_grad():
        ep = torch.export.export(model, (), kwargs)
    if core_aten:
        ep = ep.run_decompositions()
    graph = to_graph(ep, spec.name, inputs if with_values else None)
    cfg = spec.config
    graph.config = {
        "model": spec.name,
        "layers": int(cfg.num_hidden_layers),
        "hidden": int(cfg.hidden_size),
        "heads": int(cfg.num_attention_heads),
        "intermediate": int(cfg.intermediate_size),
        "vocab": int(cfg.vocab_size),
        "max_positions": int(cfg.max_position_embeddings),
        "seq": seq,
        "batch": batch,
        "params": int(sum(p.numel() for p in model.parameters())),
        "weights": "pretrained" if spec.weights is not None else f"seeded init (seed {seed})",
        "inputs": "text" if text is not None else f"random ids (seed {seed})",
        "num_labels": spec.num_labels,
        "core_aten": core_aten,
    }
    return Captured(graph, ep, model if with_values else None, inputs if with_values else {}, spec)


def to_graph(ep: ExportedProgram, model_name: str, inputs: dict[str, torch.Tensor] | None = None) -> Graph:
    """Convert an exported program to a Graph; with `inputs`, also attach every placeholder's value."""
    fx_nodes = {n.name: n for n in ep.graph.nodes}
    placeholders = []
    values: dict[str, np.ndarray] | None = {} if inputs is not None else None
    for spec in ep.graph_signature.input_specs:
        kind = KINDS.get(spec.kind)
        if kind is None:
            raise NotImplementedError(f"input kind {spec.kind} is not supported")
        name = spec.arg.name
        target = spec.target if spec.target is not None else name
        placeholders.append(Placeholder(name, kind, tensor_meta(fx_nodes[name].meta["val"]), target))
        if values is not None:
            values[name] = to_numpy(_placeholder_value(ep, kind, target, inputs))

    alias: dict[str, Ref] = {p.name: Ref(p.name) for p in placeholders}
    nodes = []
    for n in ep.graph.nodes:
        if n.op != "call_function":
            continue
        op = str(n.target)
        if n.target is operator.getitem:
            src, idx = n.args
            alias[n.name] = Ref(alias[src.name].name, int(idx))
            continue
        if op in ASSERT_OPS or (n.meta.get("val") is None and not n.users):
            continue
        if op in IDENTITY_OPS:
            alias[n.name] = graph_arg(n.args[0], alias)
            continue
        nodes.append(
            Node(
                name=n.name,
                op=op,
                args=tuple(graph_arg(a, alias) for a in n.args),
                kwargs=tuple((k, graph_arg(v, alias)) for k, v in n.kwargs.items()),
                outs=node_outputs(n),
                module=_module(n),
            )
        )
        alias[n.name] = Ref(n.name)
    out_node = next(n for n in ep.graph.nodes if n.op == "output")
    outputs = tuple(graph_arg(a, alias) for a in out_node.args[0])
    return Graph(model_name, tuple(placeholders), tuple(nodes), outputs, values)


def _placeholder_value(ep, kind: PlaceholderKind, target: str, inputs) -> torch.Tensor:
    if kind is PlaceholderKind.INPUT:
        return inputs[target]
    if target in ep.state_dict:
        return ep.state_dict[target]
    return ep.constants[target]  # non-persistent buffers and lifted tensor constants


def to_numpy(t: torch.Tensor) -> np.ndarray:
    _dtype(t.dtype)
    return t.detach().cpu().contiguous().numpy().copy()


def _dtype(dt: torch.dtype) -> DType:
    try:
        return DTYPES[dt]
    except KeyError:
        raise UserError(f"tensors of dtype {dt} are not supported: use a float32 model") from None


def tensor_meta(val) -> TensorMeta:
    return TensorMeta(tuple(int(d) for d in val.shape), _dtype(val.dtype))


def node_outputs(n: torch.fx.Node) -> tuple[TensorMeta, ...]:
    val = n.meta.get("val")
    if isinstance(val, torch.Tensor):
        return (tensor_meta(val),)
    if isinstance(val, (tuple, list)) and all(isinstance(v, torch.Tensor) for v in val):
        return tuple(tensor_meta(v) for v in val)
    raise NotImplementedError(f"node {n.name} ({n.target}) has a non-tensor output {type(val).__name__}")


def graph_arg(a, alias: dict[str, Ref]):
    if isinstance(a, torch.fx.Node):
        return alias[a.name]
    if isinstance(a, (list, tuple)):
        return tuple(graph_arg(x, alias) for x in a)
    if a is None or isinstance(a, (bool, int, float, str)):
        return a
    if isinstance(a, torch.device):
        # Cost-only captures run on the meta device; the Graph describes the program, not where it was traced.
        return "cpu"
    if isinstance(a, (torch.dtype, torch.layout, torch.memory_format)):
        return str(a)
    raise NotImplementedError(f"argument of type {type(a).__name__} is not supported: {a!r}")


_GETATTR = re.compile(r"getattr\((.*?), '([^']*)'\)")
_SELF = re.compile(r"^(L\['self'\]|L__self__|self)\.?")


def _module(n: torch.fx.Node) -> str:
    stack = n.meta.get("nn_module_stack")
    if not stack:
        return ""
    path, _cls = list(stack.values())[-1]
    path = str(path)
    while _GETATTR.search(path):
        path = _GETATTR.sub(r"\1.\2", path)
    path = re.sub(r"\[(\d+)\]", r".\1", path)
    return _SELF.sub("", path)
