"""fp16 inference on a GPU's tensor cores: the captured graph with its linear layers multiplied in half
precision and accumulated in float32, as `mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32` computes them,
and a numpy reference of the new op.

What changes, per `aten.linear` whose weight is a parameter [N, K] with K a multiple of 16 (the k of one mma)
and N of 32 (a block's narrowest tile, lowering/isel_simt_mma.py; BERT's classifier head, N = 2, stays
float32):
- The weight is rounded to fp16 once, offline, and not costed per run. It stays [N, K]: each output's k
  side by side, the "col" layout in which mma reads its B operand.
- `isasim.linear_fp16` reads the fp16 activation, multiplies on the tensor cores, accumulates in float32
  and adds the float32 bias.

Every activation, not only the linear layers' inputs, is stored in fp16, as TensorRT keeps them: each float32
tensor an op writes is held as fp16 in memory (lowering/registry.py `Context.storage_dtype`; the weights,
biases, layer-norm parameters and inputs stay as they are), while the op itself still computes in float32,
converting each element as it loads it (`cvt.f32.f16`, exact) and rounding each result to nearest even as it
stores it (`cvt.rn.f16.f32`): PyTorch's own fp16 kernels compute so too (in float32, their "opmath" type). So
softmax and layer norm accumulate in float32, and the graph's values between ops are fp16.

The order of the sums: the product of two fp16 numbers is exact in float32 (11-bit significands), and
isasim's `mma` adds the 16 products of each output in k order to its accumulator, rounding each sum to
nearest even, one mma after another along k. So a linear layer is the float32 sum over k = 0 .. K-1 in
order, from 0, of exact products of fp16-rounded operands; then + bias. The PTX ISA leaves the order inside
one mma to the hardware, which sums groups of products with its own alignment and rounding (Fasi et al.,
"Numerical behavior of NVIDIA tensor cores", PeerJ CS 2021): benchmarks/cuda_run.py reports how far a real
GPU's bits are from isasim's.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np

from isasim.isa.dtype import DType
from isasim.models.graph import Graph, Node, Placeholder, PlaceholderKind, Ref

OPS = ("isasim.linear_fp16",)
MMA_K, TILE_N = 16, 32  # a converted linear's K and N are multiples of these (mma's k, a block's narrowest tile)
F32 = np.float32


def linear_fp16(x: np.ndarray, wh: np.ndarray, bias: np.ndarray | None) -> np.ndarray:
    """x @ W^T (+ bias): x rounded to fp16, products exact, summed over k in order in float32."""
    rows = np.asarray(x, F32).reshape(-1, x.shape[-1]).astype(np.float16).astype(F32)  # [M, K]
    cols = np.asarray(wh, np.float16).astype(F32).T  # [K, N]
    acc = np.zeros((rows.shape[0], cols.shape[1]), F32)
    for k in range(cols.shape[0]):
        acc = acc + rows[:, k, None] * cols[None, k]  # the product is exact: one rounding per sum
    if bias is not None:
        acc = acc + np.asarray(bias, F32)
    return acc.reshape(x.shape[:-1] + (cols.shape[1],))


def _convertible(graph: Graph, node: Node, by_name: dict[str, Placeholder]) -> bool:
    if node.op != "aten.linear.default" or not isinstance(node.args[0], Ref) or not isinstance(node.args[1], Ref):
        return False
    w = by_name.get(node.args[1].name)
    return (w is not None and w.kind is PlaceholderKind.PARAMETER and len(w.meta.shape) == 2
            and w.meta.shape[0] % TILE_N == 0 and w.meta.shape[1] % MMA_K == 0
            and graph.meta(node.args[0]).dtype is DType.F32)


def fp16_graph(graph: Graph) -> Graph:
    """The graph with every convertible linear layer in fp16 (see the module's docstring); the new weights are
    placeholders of kind CONSTANT, with values where the graph has them."""
    from isasim.models.quantize import contiguous_input

    by_name = {p.name: p for p in graph.placeholders}
    values = dict(graph.values) if graph.values is not None else None
    placeholders = list(graph.placeholders)
    nodes: list[Node] = []
    inputs: dict[Ref, Ref] = {}
    weights: dict[str, Ref] = {}
    produced = {n.name: n for n in graph.nodes}
    for node in graph.nodes:
        if not _convertible(graph, node, by_name):
            nodes.append(node)
            continue
        x, w = node.args[0], by_name[node.args[1].name]
        if x not in inputs:
            inputs[x] = contiguous_input(x, graph.meta(x), node, produced, nodes)
            if inputs[x].name not in produced and inputs[x] == x:  # a graph input: copied, so it is stored fp16
                inputs[x] = Ref(f"{node.name}_half")
                nodes.append(Node(inputs[x].name, "aten.clone.default", (x,), (), (graph.meta(x),), node.module))
        if w.name not in weights:
            name = f"{w.name}_fp16"
            placeholders.append(Placeholder(name, PlaceholderKind.CONSTANT, replace(w.meta, dtype=DType.F16),
                                            f"{w.target} fp16"))
            if values is not None:
                values[name] = np.asarray(values[w.name], F32).astype(np.float16)
            weights[w.name] = Ref(name)
        bias = node.args[2] if len(node.args) > 2 else node.kwarg("bias")
        args = (inputs[x], weights[w.name]) + ((bias,) if isinstance(bias, Ref) else ())
        nodes.append(Node(node.name, "isasim.linear_fp16", args, (), node.outs, node.module))
    config = {**graph.config, "precision": "fp16"}
    return replace(graph, placeholders=tuple(placeholders), nodes=tuple(nodes), values=values, config=config)


def reference_op(node: Node, inputs: list) -> np.ndarray:
    """The output of the new op (or of the copy that makes its input contiguous), from its inputs' values."""
    if node.op == "aten.clone.default":
        return np.ascontiguousarray(inputs[0])
    if node.op == "isasim.linear_fp16":
        return linear_fp16(inputs[0], inputs[1], inputs[2] if len(inputs) > 2 else None)
    raise KeyError(node.op)
