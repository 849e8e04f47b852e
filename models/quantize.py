"""int8 inference: the captured graph with every linear layer quantized, as PyTorch's dynamic quantization does
(`torch.ao.quantization.quantize_dynamic`), and a numpy reference of each new op.

What changes, per `aten.linear` whose weight is a parameter [N, K] with K a multiple of 4:
- The weight is quantized once, offline, and not costed per run: symmetric int8 per output channel
  (scale = max|W[n, :]| / 127, q = round(W / scale) in [-127, 127]); its column sums (the zero-point
  compensation) are computed with it; and it is stored packed in the layout dot-product units read, four
  consecutive k of one output side by side (W[k/4, n, 4]: VNNI's and AArch64 sdot's, and AMX's B layout).
- The activation is quantized at run time, per tensor, from its min and max (`isasim.minmax_rows`, each
  row's max and -min, which rows compute independently; `isasim.quant_params`, which combines them; then
  `isasim.quantize_u7`), to 7-bit unsigned values in [0, 127] with a zero point: fbgemm's `reduce_range`,
  which PyTorch uses on x86 so that vpmaddubsw's int16 pair sums cannot saturate (127 * 127 * 2 < 2^15). One
  tensor feeding several linears (the query, key and value projections) is quantized once.
- The product accumulates exactly in int32 (`isasim.linear_int8`) and is dequantized to float32 with the two
  scales: y = float(acc) * (scale_x * scale_w[n]) + (bias[n] - (zp * scale_x) * (scale_w[n] * colsum[n])),
  two fused multiply-adds per output. The per-channel constants travel in one float32 table [3, N] (scale_w,
  scale_w * colsum, bias), made offline with the weight, so a kernel has five buffers, which the System V and
  AAPCS64 argument registers can carry.

Everything else stays float32. The reference functions below compute each op with the very float32 operations,
in the same order, that the lowered kernels use (lowering/ops_quant.py), so an executor must match them to the
last bit, and the integer accumulators exactly (`accumulators`).
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np

from isasim.isa.dtype import DType
from isasim.isa.semantics import fma_f32
from isasim.models.graph import Graph, Node, Placeholder, PlaceholderKind, Ref, TensorMeta

PRECISIONS = ("fp32", "bf16", "int8", "fp16")  # what --precision takes (bf16: models/bf16.py; fp16, on the GPU's
#                                                tensor cores: models/fp16.py)
OPS = ("isasim.minmax_rows", "isasim.quant_params", "isasim.quantize_u7", "isasim.linear_int8")  # the new ops
QMAX = 127  # activations: 7 bits unsigned (fbgemm reduce_range); weights: [-127, 127]
PARAMS = 3  # a quant_params output: scale, 1 / scale, zero point (a float holding an integer)
MIN_SCALE = np.float32(1e-12)  # an all-zero activation would give scale 0

F32 = np.float32
# ops whose output may be a strided view of another tensor (lowering/ops_views.py): the quantization
# parameters reduce over a contiguous tensor, so such an input is copied first (BERT's pooler reads token 0)
STRIDED = frozenset({"aten.select.int", "aten.slice.Tensor", "aten.permute.default", "aten.transpose.int",
                     "aten.t.default", "aten.expand.default", "aten.squeeze.dim", "aten.squeeze.dims",
                     "aten.unsqueeze.default"})


def quantize_weight(w: np.ndarray, bias: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
    """(packed int8 [K/4, N, 4], the epilogue's table [3, N]) of a float32 weight [N, K] and its bias."""
    w = np.asarray(w, dtype=F32)
    n, k = w.shape
    scale = (np.abs(w).max(axis=1) / F32(QMAX)).astype(F32)
    scale = np.where(scale > 0, scale, F32(1)).astype(F32)
    q = np.clip(np.rint(w / scale[:, None]), -QMAX, QMAX).astype(np.int8)
    colsum = q.astype(np.int64).sum(axis=1)
    packed = np.ascontiguousarray(q.reshape(n, k // 4, 4).transpose(1, 0, 2))
    table = np.stack([scale, (scale * colsum.astype(F32)).astype(F32),
                      np.zeros(n, F32) if bias is None else np.asarray(bias, dtype=F32)]).astype(F32)
    return packed, table


def unpack_weight(packed: np.ndarray) -> np.ndarray:
    """The int8 weight [N, K] a packed [K/4, N, 4] one holds."""
    k4, n, _ = packed.shape
    return packed.transpose(1, 0, 2).reshape(n, 4 * k4)


def minmax_rows(x: np.ndarray) -> np.ndarray:
    """[max, -min] of each row (the last dimension) of a tensor: the partial results quant_params combines."""
    rows = np.asarray(x, dtype=F32).reshape(-1, x.shape[-1] if x.ndim else 1)
    return np.stack([rows.max(axis=1), (-rows).max(axis=1)], axis=1).astype(F32)


def quant_params(partials: np.ndarray) -> np.ndarray:
    """[scale, 1/scale, zero point] from the rows' [max, -min], in the kernel's float32 operations."""
    hi = np.maximum(partials[:, 0].max(initial=-np.inf), F32(0)).astype(F32)
    nlo = np.maximum(partials[:, 1].max(initial=-np.inf), F32(0)).astype(F32)  # -min(min(x), 0)
    scale = np.maximum(F32(hi + nlo) / F32(QMAX), MIN_SCALE).astype(F32)
    inv = F32(F32(1) / scale)
    zp = np.minimum(np.rint(F32(nlo * inv)), F32(QMAX)).astype(F32)
    return np.array([scale, inv, zp], dtype=F32)


def quantize_u7(x: np.ndarray, params: np.ndarray) -> np.ndarray:
    """x as unsigned 7-bit values: clamp(round(x / scale) + zero point, 0, 127)."""
    x = np.asarray(x, dtype=F32)
    q = np.rint((x * params[1]).astype(F32)).astype(F32) + params[2]
    return np.minimum(np.maximum(q.astype(F32), F32(0)), F32(QMAX)).astype(np.uint8)


def accumulators(xq: np.ndarray, packed: np.ndarray) -> np.ndarray:
    """The exact integer products xq @ W^T (int64; every value fits int32)."""
    return xq.astype(np.int64) @ unpack_weight(packed).astype(np.int64).T


def linear_int8(xq: np.ndarray, params: np.ndarray, packed: np.ndarray, table: np.ndarray) -> np.ndarray:
    """The dequantized output, in the kernel's float32 operations (see the module's docstring)."""
    t = accumulators(xq, packed).astype(F32)
    scale, scaled_colsum, bias = table
    sw = (params[0] * scale).astype(F32)
    zs = F32(params[2] * params[0])
    shift = fma_f32(np.broadcast_to(-zs, bias.shape), scaled_colsum, bias)
    return fma_f32(t, np.broadcast_to(sw, t.shape), np.broadcast_to(shift, t.shape))


def contiguous_input(x: Ref, meta: TensorMeta, node: Node, produced: dict[str, Node], nodes: list[Node]) -> Ref:
    """The linear layer `node`'s input x, copied first (appended to `nodes`) where an op may have made it a
    strided view (STRIDED): the ops that replace a linear read their input whole and contiguous."""
    if x.name in produced and produced[x.name].op in STRIDED:
        source = Ref(f"{node.name}_contiguous")
        nodes.append(Node(source.name, "aten.clone.default", (x,), (), (meta,), node.module))
        return source
    return x


def _quantizable(graph: Graph, node: Node, by_name: dict[str, Placeholder]) -> bool:
    if node.op != "aten.linear.default" or not isinstance(node.args[0], Ref) or not isinstance(node.args[1], Ref):
        return False
    w = by_name.get(node.args[1].name)
    return (w is not None and w.kind is PlaceholderKind.PARAMETER and len(w.meta.shape) == 2
            and w.meta.shape[1] % 4 == 0 and graph.meta(node.args[0]).dtype is DType.F32)


def quantize_graph(graph: Graph) -> Graph:
    """The graph with every quantizable linear layer in int8 (see the module's docstring); the new weights
    are placeholders of kind CONSTANT, with values where the graph has them."""
    by_name = {p.name: p for p in graph.placeholders}
    values = dict(graph.values) if graph.values is not None else None
    placeholders = list(graph.placeholders)
    nodes: list[Node] = []
    quantized: dict[Ref, tuple[Ref, Ref]] = {}  # activation -> (its params, its quantized tensor)
    weights: dict[tuple, tuple[Ref, ...]] = {}
    produced = {n.name: n for n in graph.nodes}
    for node in graph.nodes:
        if not _quantizable(graph, node, by_name):
            nodes.append(node)
            continue
        x, w = node.args[0], by_name[node.args[1].name]
        if x not in quantized:
            meta = graph.meta(x)
            qp, qx = f"{node.name}_qparams", f"{node.name}_quantize"
            source = contiguous_input(x, meta, node, produced, nodes)
            rows = meta.numel // max(meta.shape[-1], 1) if meta.shape else 1
            mm = f"{node.name}_minmax"
            nodes.append(Node(mm, "isasim.minmax_rows", (source,), (), (TensorMeta((rows, 2), DType.F32),),
                              node.module))
            nodes.append(Node(qp, "isasim.quant_params", (Ref(mm),), (), (TensorMeta((PARAMS,), DType.F32),),
                              node.module))
            nodes.append(Node(qx, "isasim.quantize_u7", (source, Ref(qp)), (),
                              (TensorMeta(meta.shape, DType.U8),), node.module))
            quantized[x] = (Ref(qp), Ref(qx))
        bias = node.args[2] if len(node.args) > 2 else node.kwarg("bias")
        key = (w.name, bias)
        if key not in weights:
            n, k = w.meta.shape
            names = (f"{w.name}_int8", f"{w.name}_int8_epilogue")
            metas = (TensorMeta((k // 4, n, 4), DType.I8), TensorMeta((3, n), DType.F32))
            for name, meta, what in zip(names, metas, ("", " epilogue")):
                placeholders.append(Placeholder(name, PlaceholderKind.CONSTANT, meta, f"{w.target} int8{what}"))
            if values is not None:
                b = values[bias.name] if isinstance(bias, Ref) else None
                for name, v in zip(names, quantize_weight(values[w.name], b)):
                    values[name] = v
            weights[key] = tuple(Ref(nm) for nm in names)
        params, xq = quantized[x]
        nodes.append(Node(node.name, "isasim.linear_int8", (xq, params) + weights[key], (), node.outs, node.module))
    config = {**graph.config, "precision": "int8"}
    return replace(graph, placeholders=tuple(placeholders), nodes=tuple(nodes), values=values, config=config)


def reference_op(node: Node, inputs: list) -> np.ndarray:
    """The output of one of the new ops, from its inputs' values (None for an absent bias)."""
    if node.op == "aten.clone.default":
        return np.ascontiguousarray(inputs[0])
    if node.op == "isasim.minmax_rows":
        return minmax_rows(inputs[0])
    if node.op == "isasim.quant_params":
        return quant_params(inputs[0])
    if node.op == "isasim.quantize_u7":
        return quantize_u7(*inputs)
    if node.op == "isasim.linear_int8":
        return linear_int8(*inputs)
    raise KeyError(node.op)
