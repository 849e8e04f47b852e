"""One GPU's share of a BERT classifier under Megatron-LM's tensor parallelism (Shoeybi et al., "Megatron-LM:
Training Multi-Billion Parameter Language Models Using Model Parallelism", 2019, section 3), as a PyTorch
model of its own, so that its fine-tuning step captures, lowers and costs like any.

In each layer, GPU `rank` of `gpus` holds:
  - its 1/gpus of the query, key and value linears' output features (heads / gpus whole heads) and of the
    feed-forward's first linear's, with their biases ("column parallel");
  - the matching 1/gpus of the attention output's and the feed-forward's second linear's input features,
    without the bias ("row parallel"): each GPU's product is a partial sum, `all_reduce` adds the partials
    across the GPUs (Megatron's g), and then the bias, which every GPU holds whole, is added;
  - `to_gpus` (Megatron's f) in front of each column-parallel block: nothing forward, and backward the
    all-reduce of the input's gradient, which each GPU holds only its heads' or columns' part of.
Two all-reduces forward and two backward per layer. Everything else (embeddings, layer norms, pooler,
classifier) every GPU holds whole and computes alike; Megatron also splits the word embedding by vocabulary,
which isasim does not (BERT's 30522 x hidden table is small beside its layers).

Eagerly, in one process, both ops are copies: `all_reduce` returns this GPU's partial sum. What they do
across GPUs, engine/tensor_parallel_training.py's lockstep run of every GPU's step does. Lowering makes
`to_gpus` an alias of its input (lowering/ops_views.py) and `all_reduce` a copy into the buffer where the
GPUs' sum lands (lowering/ops_elementwise.py), which the trace costs as link time instead.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from isasim.models.megatron import check_split

ALL_REDUCE_OP = "isasim.all_reduce.default"  # the captured graph's node


@torch.library.custom_op("isasim::all_reduce", mutates_args=())
def all_reduce(x: torch.Tensor) -> torch.Tensor:
    """The sum of x over the GPUs (Megatron's g); in one process, this GPU's own x."""
    return x.clone()


@all_reduce.register_fake
def _(x):
    return torch.empty_like(x)


# the sum's gradient with respect to each GPU's partial is the sum's gradient, whole
all_reduce.register_autograd(lambda ctx, grad: grad)


@torch.library.custom_op("isasim::to_gpus", mutates_args=())
def to_gpus(x: torch.Tensor) -> torch.Tensor:
    """Megatron's f: x itself, whose gradient is all-reduced on the way back."""
    return x.clone()


@to_gpus.register_fake
def _(x):
    return torch.empty_like(x)


to_gpus.register_autograd(lambda ctx, grad: torch.ops.isasim.all_reduce(grad))


class RowParallel(torch.nn.Module):
    """A linear's share of the input features: the partial product, all-reduced, plus the whole bias."""

    def __init__(self, linear: torch.nn.Linear, rank: int, gpus: int):
        super().__init__()
        part = linear.in_features // gpus
        self.weight = torch.nn.Parameter(linear.weight.detach()[:, rank * part:(rank + 1) * part].clone())
        self.bias = torch.nn.Parameter(linear.bias.detach().clone())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.ops.isasim.all_reduce(F.linear(x, self.weight)) + self.bias


def _columns(linear: torch.nn.Linear, rank: int, gpus: int) -> None:
    """Keep the linear's share of the output features, in place (its parameters keep their names)."""
    part = linear.out_features // gpus
    rows = slice(rank * part, (rank + 1) * part)
    linear.weight = torch.nn.Parameter(linear.weight.detach()[rows].clone())
    linear.bias = torch.nn.Parameter(linear.bias.detach()[rows].clone())
    linear.out_features = part


def _f_before(module: torch.nn.Module) -> None:
    """Pass the module's first input through `to_gpus`."""
    def hook(_, args, kwargs):
        if args:
            return (torch.ops.isasim.to_gpus(args[0]), *args[1:]), kwargs
        return args, {**kwargs, "hidden_states": torch.ops.isasim.to_gpus(kwargs["hidden_states"])}

    module.register_forward_pre_hook(hook, with_kwargs=True)


def shard(model: torch.nn.Module, rank: int, gpus: int) -> torch.nn.Module:
    """GPU `rank`'s share of a Hugging Face BERT classifier (or BertModel), in place; returns it."""
    bert = getattr(model, "bert", model)
    heads = bert.config.num_attention_heads
    check_split(heads, gpus, bert.config.intermediate_size)
    for layer in bert.encoder.layer:
        attention = layer.attention.self
        for linear in (attention.query, attention.key, attention.value):
            _columns(linear, rank, gpus)
        attention.num_attention_heads = heads // gpus
        attention.all_head_size = attention.query.out_features
        _f_before(attention)
        layer.attention.output.dense = RowParallel(layer.attention.output.dense, rank, gpus)
        _columns(layer.intermediate.dense, rank, gpus)
        _f_before(layer.intermediate.dense)
        layer.output.dense = RowParallel(layer.output.dense, rank, gpus)
    return model
