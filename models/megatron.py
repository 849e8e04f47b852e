"""Megatron-LM's tensor-parallel layout of a BERT layer (Shoeybi et al., 2019, section 3), in one place for
both ways isasim splits a model across GPUs: the forward pass's kernels (lowering/tensor_split.py) and a
fine-tuning step's model shares (models/tensor_parallel.py). No torch here: lowering imports it.

  - column parallel (each GPU keeps 1/N of the output features): the query, key and value linears and the
    feed-forward's first linear;
  - row parallel (each GPU keeps 1/N of the input features, a partial sum to all-reduce): the attention's
    output linear and the feed-forward's second linear;
  - whole heads per GPU.
"""

from __future__ import annotations

from isasim.isa.errors import UserError

COLUMNS = ("attention.self.query", "attention.self.key", "attention.self.value", "intermediate.dense")
ROWS = ("attention.output.dense", "output.dense")


def check_split(heads: int, gpus: int, intermediate: int | None = None) -> None:
    """Refuse a GPU count that does not divide the heads (or the feed-forward's width, where given)."""
    if gpus < 1 or heads % gpus:
        raise UserError(f"--gpus {gpus}: tensor parallelism gives each GPU whole attention heads, and {heads} heads "
                        f"do not split over {gpus} GPUs: use a count that divides {heads}")
    if intermediate is not None and intermediate % gpus:
        raise UserError(f"--gpus {gpus}: tensor parallelism gives each GPU an equal share of the feed-forward's "
                        f"{intermediate} columns, which {gpus} does not divide: use a count that divides both "
                        f"{heads} and {intermediate}")


def split_dim(parameter: str) -> int | None:
    """The dimension along which the GPUs hold shares of a parameter (0: a column-parallel linear's weight and
    bias, by output feature; 1: a row-parallel linear's weight, by input feature), None if each holds it whole."""
    if ".layer." not in parameter:
        return None
    module, _, kind = parameter.rpartition(".")
    if module.endswith(COLUMNS):
        return 0
    return 1 if module.endswith(ROWS) and kind == "weight" else None
