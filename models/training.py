"""Capture one fine-tuning step — forward, backward and the AdamW update — as a `Graph` that lowers like any.

How (torch/_functorch's recipe, done by hand): torch.export captures the classifier's training-mode forward
and its loss (dynamo resolves the attention-mask logic that make_fx cannot trace); make_fx then traces
`torch.autograd.grad` through the exported module, which records the backward ATen ops autograd runs
(mm, sum, tanh_backward, gelu_backward, _softmax_backward_data, embedding_dense_backward, ...), followed by
the AdamW update written out as torch.optim.AdamW (foreach=False) computes it, one parameter at a time.

Two choices keep the step deterministic and lowerable:
- dropout is 0 in the captured step (its random masks are not costed; the fine-tuning run uses dropout 0.1);
- native_layer_norm_backward, whose outputs want different loop structures (rows for the input's gradient,
  columns for the weight's and bias's), is split into three ops with eager implementations (the graph stays
  runnable by torch): isasim::layer_norm_backward_row_terms (two sums per row), ..._input (elementwise)
  and ..._params (column sums).

Every node is tagged with its phase in `Node.module`: "forward", "backward" or "optimizer.<parameter>".
"""

from __future__ import annotations

import operator
from dataclasses import dataclass

import numpy as np
import torch
import transformers

from isasim.models.capture import ASSERT_OPS, Captured, graph_arg, tensor_meta, to_numpy, node_outputs
from isasim.isa.errors import UserError
from isasim.models.graph import Graph, Node, Placeholder, PlaceholderKind, Ref, iter_refs
from isasim.models.inputs import check_shape, make_inputs
from isasim.models.lora import Lora, wrap
from isasim.models.registry import ModelSpec
from isasim.models.tensor_parallel import shard

ADAMW = {"lr": 2e-5, "betas": (0.9, 0.999), "eps": 1e-8, "weight_decay": 0.01}  # torch.optim.AdamW defaults
NUM_LABELS = 2  # movie / TV show (models/data/movie_tv)
PHASES = ("forward", "backward", "optimizer")


# ---- native_layer_norm_backward, split into its two loop structures ---------------------------------------
@torch.library.custom_op("isasim::layer_norm_backward_row_terms", mutates_args=())
def layer_norm_backward_row_terms(grad: torch.Tensor, x: torch.Tensor, mean: torch.Tensor, rstd: torch.Tensor,
                                  weight: torch.Tensor) -> torch.Tensor:
    """Per row, with a = sum_j g w and c = sum_j g w x (PyTorch's CPU LayerNormBackward computes the same two
    sums): dx = rstd g w + s2 x + s3 with s2 = -rstd^3 (c - mean a) / h and s3 = -rstd a / h - mean s2.
    Returns [..., 2]: s2, s3 (one tensor, so each kernel takes at most six buffers: x86-64's ABI passes six
    in registers)."""
    h = x.shape[-1]
    gw = grad * weight
    a, c = gw.sum(-1, keepdim=True), (gw * x).sum(-1, keepdim=True)
    s2 = -(rstd * rstd * rstd) * (c - mean * a) / h
    return torch.cat([s2, -(rstd * a) / h - mean * s2], -1)


@layer_norm_backward_row_terms.register_fake
def _(grad, x, mean, rstd, weight):
    return mean.new_empty(mean.shape[:-1] + (2,))


@torch.library.custom_op("isasim::layer_norm_backward_input", mutates_args=())
def layer_norm_backward_input(grad: torch.Tensor, x: torch.Tensor, rstd: torch.Tensor, weight: torch.Tensor,
                              terms: torch.Tensor) -> torch.Tensor:
    """dx = rstd g w + s2 x + s3, with s2, s3 = terms[..., 0], terms[..., 1]"""
    return rstd * (grad * weight) + terms[..., :1] * x + terms[..., 1:]


@layer_norm_backward_input.register_fake
def _(grad, x, rstd, weight, terms):
    return torch.empty_like(x)


@torch.library.custom_op("isasim::layer_norm_backward_params", mutates_args=())
def layer_norm_backward_params(grad: torch.Tensor, x: torch.Tensor, mean: torch.Tensor,
                               rstd: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """dw = sum over rows of g * xhat, db = sum over rows of g."""
    rows = grad.reshape(-1, grad.shape[-1])
    xhat = ((x - mean) * rstd).reshape(rows.shape)
    return (rows * xhat).sum(0), rows.sum(0)


@layer_norm_backward_params.register_fake
def _(grad, x, mean, rstd):
    h = grad.shape[-1]
    return grad.new_empty(h), grad.new_empty(h)


def _layer_norm_backward(grad, x, normalized_shape, mean, rstd, weight, bias, output_mask):
    if len(normalized_shape) != 1 or weight is None or bias is None:
        raise UserError("training steps support layer norms over the last dim with weight and bias only")
    # autograd asks only for what it needs (output_mask): with LoRA, a frozen layer norm's weight and bias
    # get no gradient, and the embeddings' layer norm passes none back to its frozen input
    gx = gw = gb = None
    if output_mask[1] or output_mask[2]:
        gw, gb = torch.ops.isasim.layer_norm_backward_params(grad, x, mean, rstd)
    if output_mask[0]:
        terms = torch.ops.isasim.layer_norm_backward_row_terms(grad, x, mean, rstd, weight)
        gx = torch.ops.isasim.layer_norm_backward_input(grad, x, rstd, weight, terms)
    return gx, gw, gb


# ---- the step -----------------------------------------------------------------------------------------
class _Loss(torch.nn.Module):
    def __init__(self, model: torch.nn.Module):
        super().__init__()
        self.model = model

    def forward(self, input_ids, attention_mask, token_type_ids, labels):
        return self.model(input_ids=input_ids, attention_mask=attention_mask, token_type_ids=token_type_ids,
                          labels=labels).loss


def adamw(p: torch.Tensor, g: torch.Tensor, m: torch.Tensor, v: torch.Tensor, step: int, lr: float,
          betas: tuple[float, float], eps: float, weight_decay: float):
    """torch.optim.AdamW's single-tensor update (torch/optim/adamw.py, foreach=False), out of place:
    returns the new parameter and moments."""
    b1, b2 = betas
    p = p * (1 - lr * weight_decay)
    m = m.lerp(g, 1 - b1)
    v = v * b2 + g * g * (1 - b2)
    step_size = lr / (1 - b1 ** step)
    denom = v.sqrt() / ((1 - b2 ** step) ** 0.5) + eps
    return p - step_size * (m / denom), m, v


@dataclass
class TrainingStep:
    """The captured step; its graph's outputs are the loss, then per trained parameter (in `params` order) its
    gradient, its updated value, and its updated first and second moments. With LoRA, the frozen weights are
    inputs of the step, and neither differentiated nor updated."""

    captured: Captured
    params: list[str]
    labels: torch.Tensor
    lora: Lora | None = None


def classifier(spec: ModelSpec, seed: int, with_values: bool, lora: Lora | None = None,
               tensor: tuple[int, int] | None = None) -> torch.nn.Module:
    """The fine-tuning model (models/finetune.py's, dropout 0), in train mode, with LoRA adapters where asked
    (models/lora.py), or GPU `rank`'s share of it for `tensor` = (rank, gpus) (models/tensor_parallel.py);
    on the meta device when only costing."""
    from isasim.models.finetune import classifier_from

    config = transformers.BertConfig.from_dict(spec.config.to_dict())
    config.hidden_dropout_prob = config.attention_probs_dropout_prob = 0.0
    config.attn_implementation = "eager"
    spec = ModelSpec(spec.name, config, spec.weights if with_values else None, spec.has_pooler, NUM_LABELS)
    if not spec.has_pooler:
        raise UserError(f"{spec.name} has no pooler, which a sequence classifier needs")
    if lora is not None and tensor is not None:
        raise UserError("--lora with --parallel tensor is not modelled: use --parallel data, or drop --lora")

    def build():
        model = classifier_from(spec, seed)
        if tensor is not None:
            return shard(model, *tensor).train()
        return (model if lora is None else wrap(model, lora, seed, config.hidden_size)).train()

    if with_values:
        return build()
    with torch.device("meta"):  # the adapters too: costing allocates no weight
        return build()


def capture_training(spec: ModelSpec, seq: int, batch: int, seed: int = 0, with_values: bool = False,
                     step: int = 1, lora: Lora | None = None, tensor: tuple[int, int] | None = None,
                     **adamw_args) -> TrainingStep:
    """One AdamW step of fine-tuning spec's encoder with a 2-label classifier on [batch, seq] random ids (with
    `lora`: of its adapters and head only; with `tensor` = (rank, gpus): GPU rank's share of a tensor-parallel
    step, models/tensor_parallel.py)."""
    check_shape(spec.config, seq, batch, spec.name)
    opt = {**ADAMW, **adamw_args}
    model = classifier(spec, seed, with_values, lora, tensor)
    inputs = make_inputs(spec.config, seq, batch, None, seed, spec.name)
    labels = torch.randint(0, NUM_LABELS, (batch,), generator=torch.Generator().manual_seed(seed + 1))
    device = "cpu" if with_values else "meta"
    data = [inputs["input_ids"], inputs["attention_mask"], inputs["token_type_ids"], labels]
    data = [t.to(device) for t in data]
    exported = torch.export.export(_Loss(model), tuple(data)).module()
    named = dict(exported.named_parameters())
    names = list(named)
    trained = [k for k in names if named[k].requires_grad]  # all of them, but for LoRA's frozen weights
    is_trained = set(trained)
    buffers = dict(exported.named_buffers())
    n, nt = len(names), len(trained)

    def step_fn(*flat):
        params = [x.detach().requires_grad_(k in is_trained) for k, x in zip(names, flat[:n])]
        tuned = [p for k, p in zip(names, params) if k in is_trained]
        ms, vs = flat[n:n + nt], flat[n + nt:n + 2 * nt]
        rest = flat[n + 2 * nt:n + 2 * nt + len(buffers)]
        loss = torch.func.functional_call(exported, {**dict(zip(names, params)), **dict(zip(buffers, rest))},
                                          tuple(flat[n + 2 * nt + len(buffers):]))
        grads = torch.autograd.grad(loss, tuned)
        updated = [adamw(p.detach(), g, m, v, step, **opt) for p, g, m, v in zip(tuned, grads, ms, vs)]
        return (loss, *grads, *(u[0] for u in updated), *(u[1] for u in updated), *(u[2] for u in updated))

    state = [torch.zeros_like(named[k]) for k in trained]  # first step: AdamW's moments start at zero
    flat = [named[k].detach() for k in names] + state + [s.clone() for s in state] + list(buffers.values()) + data
    decomp = {torch.ops.aten.native_layer_norm_backward.default: _layer_norm_backward}
    gm = torch.fx.experimental.proxy_tensor.make_fx(step_fn, tracing_mode="fake", decomposition_table=decomp)(*flat)

    kinds = ([(f"param.{k}", PlaceholderKind.PARAMETER, k) for k in names]
             + [(f"exp_avg.{k}", PlaceholderKind.BUFFER, f"exp_avg.{k}") for k in trained]
             + [(f"exp_avg_sq.{k}", PlaceholderKind.BUFFER, f"exp_avg_sq.{k}") for k in trained]
             + [(f"buffer.{k}", PlaceholderKind.BUFFER, k) for k in buffers]
             + [(k, PlaceholderKind.INPUT, k) for k in ("input_ids", "attention_mask", "token_type_ids", "labels")])
    values = {name: to_numpy(t) for (name, _, _), t in zip(kinds, flat)} if with_values else None
    graph = _to_graph(gm, spec.name, kinds, trained, values)
    cfg = spec.config
    graph.config = {
        "model": spec.name, "layers": int(cfg.num_hidden_layers), "hidden": int(cfg.hidden_size),
        "heads": int(cfg.num_attention_heads), "intermediate": int(cfg.intermediate_size),
        "vocab": int(cfg.vocab_size), "max_positions": int(cfg.max_position_embeddings), "seq": seq,
        "batch": batch, "params": int(sum(named[k].numel() for k in trained)),
        "weights": "pretrained" if with_values and spec.weights is not None else f"seeded init (seed {seed})",
        "inputs": f"random ids (seed {seed})", "num_labels": NUM_LABELS, "core_aten": False,
        "training": {"optimizer": "AdamW", **opt, "step": step, "dropout": 0.0},
    }
    if tensor is not None:
        graph.config["training"]["tensor_parallel"] = {"rank": tensor[0], "gpus": tensor[1]}
    if lora is not None:
        graph.config["training"]["lora"] = lora.to_json()
        # the frozen weights the step reads, through the detach make_fx puts on each (peft keeps a frozen copy
        # of the head that only a dead detach touches: not counted)
        detached = {n.name: n.args[0].name for n in graph.nodes if n.op == "aten.detach.default"}
        used = {detached.get(r.name, r.name) for node in graph.nodes if node.op != "aten.detach.default"
                for r in iter_refs(node.args + tuple(v for _, v in node.kwargs))}
        graph.config["frozen_params"] = int(sum(named[k].numel() for k in names
                                                if k not in is_trained and f"param.{k}" in used))
    return TrainingStep(Captured(graph, None, model if with_values else None,
                                 dict(zip(("input_ids", "attention_mask", "token_type_ids"), data[:3])), spec),
                        trained, labels, lora)


def _to_graph(gm: torch.fx.GraphModule, model: str, kinds, names: list[str], values) -> Graph:
    """The traced step as a Graph: placeholders in `kinds` order, each node tagged with its phase."""
    fx = list(gm.graph.nodes)
    ph = [n for n in fx if n.op == "placeholder"]
    placeholders = tuple(Placeholder(name, kind, tensor_meta(n.meta["val"]), target)
                         for (name, kind, target), n in zip(kinds, ph))
    alias: dict[str, Ref] = {n.name: Ref(p.name) for n, p in zip(ph, placeholders)}
    out_node = next(n for n in fx if n.op == "output")
    outs = out_node.args[0]
    position = {n.name: i for i, n in enumerate(fx)}
    loss_at = position[outs[0].name]
    grads_end = max(position[g.name] for g in outs[1:1 + len(names)])
    owner = _optimizer_owner(outs, names)
    nodes = []
    for n in fx:
        if n.op != "call_function":
            continue
        if n.target is operator.getitem:
            src, idx = n.args
            alias[n.name] = Ref(alias[src.name].name, alias[src.name].index + int(idx))
            continue
        op = str(n.target)
        if op in ASSERT_OPS or (n.meta.get("val") is None and not n.users):
            continue
        at = position[n.name]
        phase = "forward" if at <= loss_at else "backward" if at <= grads_end else \
            f"optimizer.{owner.get(n.name, '')}".rstrip(".")
        nodes.append(Node(n.name, op, tuple(graph_arg(a, alias) for a in n.args),
                          tuple((k, graph_arg(v, alias)) for k, v in n.kwargs.items()), node_outputs(n), phase))
        alias[n.name] = Ref(n.name)
    outputs = tuple(graph_arg(a, alias) for a in outs)
    return Graph(model, placeholders, tuple(nodes), outputs, values)


def _optimizer_owner(outs, names: list[str]) -> dict[str, str]:
    """Which parameter each optimizer node updates: the nodes its new value, moments depend on."""
    n = len(names)
    owner: dict[str, str] = {}
    for i, k in enumerate(names):
        stack = [outs[1 + n + j * n + i] for j in range(3)]
        while stack:
            node = stack.pop()
            if not isinstance(node, torch.fx.Node) or node.op != "call_function" or node.name in owner:
                continue
            owner[node.name] = k
            stack.extend(a for a in node.all_input_nodes)
    return owner


def reference_step(ts: TrainingStep, seed: int = 0, **adamw_args) -> dict[str, np.ndarray]:
    """What eager PyTorch computes for the same (first) step: loss.backward() and
    torch.optim.AdamW(foreach=False).step() on a fresh copy of the model; returns the loss, every gradient and
    every updated parameter by name."""
    model = classifier(ts.captured.spec, seed, True, ts.lora)
    optim = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], foreach=False,
                              **{**ADAMW, **adamw_args})
    loss = _Loss(model)(*(ts.captured.inputs[k] for k in ("input_ids", "attention_mask", "token_type_ids")),
                        ts.labels)
    loss.backward()
    own = dict(model.named_parameters())
    out = {"loss": np.array([loss.item()], dtype=np.float32)}
    for k in ts.params:
        out[f"grad.{k}"] = own[k.removeprefix("model.")].grad.numpy().copy()
    optim.step()
    for k in ts.params:
        out[f"param.{k}"] = own[k.removeprefix("model.")].detach().numpy().copy()
    return out
