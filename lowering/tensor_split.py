"""Megatron-LM's tensor-parallel split of a BERT layer (Shoeybi et al., "Megatron-LM: Training Multi-Billion
Parameter Language Models Using Model Parallelism", 2019), kernel by kernel, for N GPUs:

  - the attention's query, key and value linears and the feed-forward's first linear split by columns
    (their output features), GELU by the same columns, so each GPU keeps its columns to itself;
  - the attention between them by heads (each GPU holds heads / N whole heads);
  - the attention's output linear and the feed-forward's second linear split by rows (their reduction): each
    GPU computes a partial sum over its share of the input features, and an all-reduce adds the partials.
    GPU 0's partial carries the bias, so the sum is the layer's output;
  - everything else (embeddings, residual adds, layer norms, the pooler) runs whole on every GPU.

`shards` gives each GPU's kernel for a step, and whether they are partial sums. Each is a kernel of its own,
cut from the whole one as lowering/split.py cuts a core's chunk, so it lowers, costs and executes like any.
"""

from __future__ import annotations

from dataclasses import replace

from isasim.isa.errors import UserError
from isasim.isa.semantics import Prim
from isasim.lowering.kernel import Kernel, Load, Map, Op, Reduce, Scalar
from isasim.lowering.split import bounds, chunk_of, moved
from isasim.models.megatron import COLUMNS, ROWS, check_split



def role(module: str, op: str) -> str | None:
    """How Megatron splits the kernel of a node in `module`: "columns", "heads", "rows", "inner" (GELU's
    columns, its innermost loop) or None (whole on every GPU)."""
    if ".layer." not in module:
        return None
    if module.endswith(COLUMNS):
        return "columns"
    if module.endswith(ROWS) and op.endswith("linear.default"):
        return "rows"
    if module.endswith("intermediate.intermediate_act_fn"):
        return "inner"
    if module.endswith("attention.self"):
        return "heads"
    return None


def shards(kernel: Kernel, module: str, op: str, gpus: int, heads: int) -> tuple[list[Kernel], bool] | None:
    """Each GPU's kernel for this step and whether they are partial sums to all-reduce; None: whole on each."""
    if gpus > 1:
        check_split(heads, gpus)
    how = role(module, op)
    if how is None or gpus == 1:
        return None
    if how == "rows":
        (reduce,) = [p for p in kernel.phases if isinstance(p, Reduce)]
        return [rows_of(kernel, reduce.var, start, size, g == 0)
                for g, (start, size) in enumerate(_even(reduce.extent, gpus, kernel))], True
    if how == "inner":
        (m,) = [p for p in kernel.phases if isinstance(p, Map)]
        return [inner_of(kernel, start, size) for start, size in _even(m.extent, gpus, kernel)], False
    var = "n" if how == "columns" else _heads_var(kernel, op, heads)
    return [chunk_of(kernel, var, start, size)
            for start, size in _even(dict(kernel.parallel)[var], gpus, kernel)], False


def _even(extent: int, gpus: int, kernel: Kernel) -> list[tuple[int, int]]:
    if extent % gpus:
        raise UserError(f"--gpus {gpus} does not divide {kernel.name}'s {extent} columns or heads evenly: "
                        "tensor parallelism needs the heads (and so the hidden and feed-forward sizes) to split "
                        "evenly; choose a GPU count that divides the number of heads")
    return bounds(extent, gpus)


def _heads_var(kernel: Kernel, op: str, heads: int) -> str:
    """The loop over heads: the second output dimension, but the third of the copy that puts the heads back
    after the sequence ([batch, seq, heads, head size])."""
    position = 2 if op.endswith("contiguous.default") or op.endswith("clone.default") else 1
    var, extent = kernel.parallel[position]
    if extent != heads:
        raise UserError(f"{kernel.name}: expected its loop over {heads} heads, found {extent} iterations")
    return var


def rows_of(kernel: Kernel, var: str, start: int, size: int, bias: bool) -> Kernel:
    """The kernel's partial sum over reduction iterations start .. start + size - 1; without the bias it adds
    to the sum unless `bias`."""
    k = moved(kernel, var, start)
    extent = next(p.extent for p in kernel.phases if isinstance(p, Reduce))

    def phase(p):
        if isinstance(p, Reduce) and p.var == var:
            return replace(p, extent=size)
        if isinstance(p, Map) and not bias:
            return replace(p, value=_without_bias(p.value, kernel))
        return p

    return replace(k, name=f"{kernel.name}#{start}", phases=tuple(phase(p) for p in k.phases),
                   flops=kernel.flops * size // extent)


def _without_bias(value, kernel: Kernel):
    if isinstance(value, Op) and value.prim is Prim.FADD and isinstance(value.args[0], Scalar) \
            and isinstance(value.args[1], Load):
        return value.args[0]
    raise UserError(f"{kernel.name}: a row-parallel linear must end in acc + bias to split by rows")


def inner_of(kernel: Kernel, start: int, size: int) -> Kernel:
    """The kernel over iterations start .. start + size - 1 of its one Map's own loop (GELU's columns)."""
    (m,) = [p for p in kernel.phases if isinstance(p, Map)]
    k = moved(kernel, m.var, start)
    return replace(k, name=f"{kernel.name}#{start}",
                   phases=tuple(replace(p, extent=size) if isinstance(p, Map) else p for p in k.phases))
