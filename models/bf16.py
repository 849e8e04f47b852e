"""bf16 inference: the captured graph with its linear layers' operands in bfloat16 and their products
accumulated in float32, as the dot-product instructions (AVX512-BF16's vdpbf16ps, Arm's bfdot, AMX's
tdpbf16ps) or a GPU's tensor cores (mma .bf16) compute them, and a numpy reference of each new op.

What changes, per `aten.linear` whose weight is a parameter [N, K] with K a multiple of 16 (the lanes of the
widest CPU target, so no kernel needs a partial vector) and N of 32 (also a GPU block's narrowest tile,
lowering/isel_simt_mma.py, so every bf16 target takes the same graph; BERT's classifier head, N = 2, stays
float32):
- The weight is rounded to bf16 once, offline, and not costed per run, and stored packed as the instructions
  read it: two consecutive k of one output side by side (W[k/2, n, 2], AMX's B layout for bf16 too).
- The activation is rounded to bf16 at run time (`isasim.round_bf16`, to nearest even), once per tensor:
  the query, key and value projections share it.
- `isasim.linear_bf16` accumulates the pairs' products in float32, k in order, and adds the float32 bias.

Everything else stays float32. The rounding of each step is the instruction's (isa/bfloat16.py), so the
reference below takes the target's dot-product instruction: an executor must match it to the last bit.
"""

from __future__ import annotations

from dataclasses import replace
from functools import partial

import numpy as np

from isasim.isa import amx, bfloat16
from isasim.isa.dtype import DType
from isasim.isa.semantics import fma_f32
from isasim.models.graph import Graph, Node, Placeholder, PlaceholderKind, Ref, TensorMeta

OPS = ("isasim.round_bf16", "isasim.linear_bf16")
# how a target multiplies bf16 pairs (VectorISA.bf16_dot; "mma": the GPU's tensor cores, isa/mma.py)
DOTS = ("vdpbf16ps", "bfdot", "tdpbf16ps", "mma")
LANES = 16  # K of a converted linear is a multiple of this
TILE_N = 32  # and N of this
F32 = np.float32


def pack_weight(w: np.ndarray) -> np.ndarray:
    """A float32 weight [N, K] rounded to bf16 and packed [K/2, N, 2] (uint16 bits)."""
    n, k = w.shape
    bits = bfloat16.to_bf16(np.asarray(w, dtype=F32))
    return np.ascontiguousarray(bits.reshape(n, k // 2, 2).transpose(1, 0, 2))


def unpack_weight(packed: np.ndarray) -> np.ndarray:
    """The float32 weight [N, K] that a packed bf16 one holds, exactly."""
    k2, n, _ = packed.shape
    return bfloat16.from_bf16(packed.transpose(1, 0, 2).reshape(n, 2 * k2))


def flushes_denormals(dot: str) -> bool:
    """Whether the target's conversion treats denormal inputs as zero (Intel's; Arm's and PTX's
    cvt.rn.bf16x2.f32, which has no .ftz, keep them)."""
    return dot not in ("bfdot", "mma")


def round_bf16(x: np.ndarray, dot: str = "bfdot") -> np.ndarray:
    """x rounded to bf16, nearest even, as the target of dot-product instruction `dot` converts (uint16)."""
    return bfloat16.to_bf16(np.asarray(x, dtype=F32), flushes_denormals(dot))


def _pairs(bits: np.ndarray) -> np.ndarray:
    """bf16 bits [..., 2j] as the 32-bit lanes [..., j] that hold each pair, as float32 bit patterns."""
    return np.ascontiguousarray(bits).view(np.uint32).view(F32)


def linear_bf16(xb: np.ndarray, packed: np.ndarray, bias: np.ndarray | None, dot: str) -> np.ndarray:
    """x @ W^T (+ bias) from bf16 operands, accumulated over k in order as instruction `dot` rounds: a pair
    at a time (vdpbf16ps, bfdot), a tile's k at a time (AMX's tdpbf16ps, isa/amx.py), or one product at a
    time, each added to the float32 sum and rounded (a GPU's mma as isa/mma.py defines it)."""
    if dot == "mma":
        return _linear_mma(xb, packed, bias)
    rows = _pairs(xb.reshape(-1, xb.shape[-1]))  # [M, K/2]
    cols = _pairs(packed)[..., 0]  # [K/2, N]
    acc = np.zeros((rows.shape[0], cols.shape[1]), F32)
    if dot == "tdpbf16ps":
        kt = amx.largest_divisor(cols.shape[0])
        for k in range(0, cols.shape[0], kt):
            acc = amx.bf16_tile_product(rows[:, k:k + kt], cols[k:k + kt], acc, fma_f32)
    else:
        step = partial(bfloat16.vdpbf16ps, fma_f32=fma_f32) if dot == "vdpbf16ps" else bfloat16.bfdot
        for k in range(cols.shape[0]):
            acc = step(acc, rows[:, k, None], cols[None, k])
    if bias is not None:
        acc = (acc + np.asarray(bias, dtype=F32)).astype(F32)
    return acc.reshape(xb.shape[:-1] + (cols.shape[1],))


def _linear_mma(xb: np.ndarray, packed: np.ndarray, bias: np.ndarray | None) -> np.ndarray:
    rows = bfloat16.from_bf16(xb.reshape(-1, xb.shape[-1]))  # [M, K]
    cols = unpack_weight(packed).T  # [K, N]
    acc = np.zeros((rows.shape[0], cols.shape[1]), F32)
    for k in range(cols.shape[0]):
        acc = acc + rows[:, k, None] * cols[None, k]  # float32 products (exact in the normal range), one rounding
    if bias is not None:
        acc = (acc + np.asarray(bias, dtype=F32)).astype(F32)
    return acc.reshape(xb.shape[:-1] + (cols.shape[1],))


def _convertible(graph: Graph, node: Node, by_name: dict[str, Placeholder]) -> bool:
    if node.op != "aten.linear.default" or not isinstance(node.args[0], Ref) or not isinstance(node.args[1], Ref):
        return False
    w = by_name.get(node.args[1].name)
    return (w is not None and w.kind is PlaceholderKind.PARAMETER and len(w.meta.shape) == 2
            and w.meta.shape[0] % TILE_N == 0 and w.meta.shape[1] % LANES == 0
            and graph.meta(node.args[0]).dtype is DType.F32)


def bf16_graph(graph: Graph) -> Graph:
    """The graph with every convertible linear layer in bf16 (see the module's docstring); the new weights are
    placeholders of kind CONSTANT, with values where the graph has them."""
    from isasim.models.quantize import contiguous_input

    by_name = {p.name: p for p in graph.placeholders}
    values = dict(graph.values) if graph.values is not None else None
    placeholders = list(graph.placeholders)
    nodes: list[Node] = []
    rounded: dict[Ref, Ref] = {}
    weights: dict[str, Ref] = {}
    produced = {n.name: n for n in graph.nodes}
    for node in graph.nodes:
        if not _convertible(graph, node, by_name):
            nodes.append(node)
            continue
        x, w = node.args[0], by_name[node.args[1].name]
        if x not in rounded:
            meta = graph.meta(x)
            source = contiguous_input(x, meta, node, produced, nodes)
            name = f"{node.name}_bf16"
            nodes.append(Node(name, "isasim.round_bf16", (source,), (), (TensorMeta(meta.shape, DType.BF16),),
                              node.module))
            rounded[x] = Ref(name)
        if w.name not in weights:
            n, k = w.meta.shape
            name = f"{w.name}_bf16"
            meta = TensorMeta((k // 2, n, 2), DType.BF16)
            placeholders.append(Placeholder(name, PlaceholderKind.CONSTANT, meta, f"{w.target} bf16"))
            if values is not None:
                values[name] = pack_weight(values[w.name])
            weights[w.name] = Ref(name)
        bias = node.args[2] if len(node.args) > 2 else node.kwarg("bias")
        args = (rounded[x], weights[w.name]) + ((bias,) if isinstance(bias, Ref) else ())
        nodes.append(Node(node.name, "isasim.linear_bf16", args, (), node.outs, node.module))
    config = {**graph.config, "precision": "bf16"}
    return replace(graph, placeholders=tuple(placeholders), nodes=tuple(nodes), values=values, config=config)


def reference_op(node: Node, inputs: list, dot: str) -> np.ndarray:
    """The output of one of the new ops, from its inputs' values, on a target whose bf16 dot product is `dot`."""
    if node.op == "aten.clone.default":
        return np.ascontiguousarray(inputs[0])
    if node.op == "isasim.round_bf16":
        return round_bf16(inputs[0], dot)
    if node.op == "isasim.linear_bf16":
        return linear_bf16(inputs[0], inputs[1], inputs[2] if len(inputs) > 2 else None, dot)
    raise KeyError(node.op)
