"""Each lowered op, executed on every target (CPU and GPU), against PyTorch on random shapes (tails like 37
included)."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st
from oprunner import TARGET_NAMES, one_op_graph, run_op

from isasim.lowering.registry import UnsupportedOp
from isasim.isa.dtype import DType
from isasim.models.graph import Ref

dims = st.integers(1, 40)
SETTINGS = settings(max_examples=12, deadline=None)


def rand(rng, *shape):
    return rng.standard_normal(shape).astype(np.float32)


def close(got, want, tol=1e-5):
    want = want.detach().numpy() if isinstance(want, torch.Tensor) else want
    assert got.shape == want.shape
    np.testing.assert_allclose(got, want, atol=tol, rtol=tol)


@pytest.mark.parametrize("target", TARGET_NAMES)
@SETTINGS
@given(m=dims, n=dims, k=dims, seed=st.integers(0, 2**16))
def test_linear(target, m, n, k, seed):
    rng = np.random.default_rng(seed)
    x, w, b = rand(rng, 2, m, k), rand(rng, n, k), rand(rng, n)
    g = one_op_graph("aten.linear.default", {"x": x, "w": w, "b": b}, (Ref("x"), Ref("w"), Ref("b")), [(2, m, n)])
    close(run_op(g, target)[0], F.linear(*map(torch.from_numpy, (x, w, b))), 1e-4)


@pytest.mark.parametrize("target", TARGET_NAMES)
@SETTINGS
@given(m=dims, n=dims, k=dims, seed=st.integers(0, 2**16))
def test_addmm_with_permuted_weight(target, m, n, k, seed):
    rng = np.random.default_rng(seed)
    x, w, b = rand(rng, m, k), rand(rng, k, n), rand(rng, n)
    g = one_op_graph("aten.addmm.default", {"b": b, "x": x, "w": w}, (Ref("b"), Ref("x"), Ref("w")), [(m, n)])
    close(run_op(g, target)[0], torch.addmm(*map(torch.from_numpy, (b, x, w))), 1e-4)


@pytest.mark.parametrize("target", TARGET_NAMES)
@SETTINGS
@given(h=st.integers(1, 5), s=dims, d=dims, seed=st.integers(0, 2**16))
def test_batched_matmul_broadcasts(target, h, s, d, seed):
    rng = np.random.default_rng(seed)
    a, b = rand(rng, 1, h, s, d), rand(rng, 1, 1, d, s)
    g = one_op_graph("aten.matmul.default", {"a": a, "b": b}, (Ref("a"), Ref("b")), [(1, h, s, s)])
    close(run_op(g, target)[0], torch.matmul(torch.from_numpy(a), torch.from_numpy(b)), 1e-4)


@pytest.mark.parametrize("target", TARGET_NAMES)
@SETTINGS
@given(rows=dims, n=dims, seed=st.integers(0, 2**16))
def test_softmax(target, rows, n, seed):
    rng = np.random.default_rng(seed)
    x = rand(rng, rows, n) * 5
    x[0, 0] = -3.4028234663852886e38  # BERT's additive mask value
    g = one_op_graph("aten.softmax.int", {"x": x}, (Ref("x"), -1), [(rows, n)])
    close(run_op(g, target)[0], torch.softmax(torch.from_numpy(x), -1), 1e-6)


@pytest.mark.parametrize("target", TARGET_NAMES)
@SETTINGS
@given(rows=dims, h=st.integers(2, 70), seed=st.integers(0, 2**16))
def test_native_layer_norm_all_outputs(target, rows, h, seed):
    rng = np.random.default_rng(seed)
    x, w, b = rand(rng, rows, h) * 3 + 1, rand(rng, h), rand(rng, h)
    g = one_op_graph("aten.native_layer_norm.default", {"x": x, "w": w, "b": b},
                     (Ref("x"), (h,), Ref("w"), Ref("b"), 1e-12), [(rows, h), (rows, 1), (rows, 1)])
    got = run_op(g, target)
    want = torch.native_layer_norm(torch.from_numpy(x), (h,), torch.from_numpy(w), torch.from_numpy(b), 1e-12)
    for a, e in zip(got, want):
        close(a, e, 1e-4)


@pytest.mark.parametrize("target", TARGET_NAMES)
@pytest.mark.parametrize("op,fn,lo,hi", [
    ("aten.gelu.default", F.gelu, -10, 10),
    ("aten.tanh.default", torch.tanh, -12, 12),
    ("aten.exp.default", torch.exp, -87, 87),
    ("aten.erf.default", torch.erf, -6, 6),
])
def test_transcendentals_over_their_range(target, op, fn, lo, hi):
    x = np.linspace(lo, hi, 4001, dtype=np.float32).reshape(1, -1)
    g = one_op_graph(op, {"x": x}, (Ref("x"),), [x.shape])
    got = run_op(g, target)[0].astype(np.float64)
    want = fn(torch.from_numpy(x).double()).numpy()
    # relative for exp (it spans 76 decades), absolute elsewhere
    err = np.abs(got - want) / (np.abs(want) if op == "aten.exp.default" else 1.0)
    assert err.max() < (3e-7 if op == "aten.exp.default" else 1e-6), err.max()


@pytest.mark.parametrize("target", TARGET_NAMES)
@SETTINGS
@given(a=dims, b=dims, c=st.integers(1, 8), seed=st.integers(0, 2**16))
def test_clone_of_a_permute_moves_the_data(target, a, b, c, seed):
    from isasim.lowering.pipeline import lower_graph
    from isasim.models.graph import Node, TensorMeta

    rng = np.random.default_rng(seed)
    x = rand(rng, a, b, c)
    g = one_op_graph("aten.permute.default", {"x": x}, (Ref("x"), (1, 0, 2)), [(b, a, c)])
    clone = Node("copy", "aten.clone.default", (Ref("out"),), (), (TensorMeta((b, a, c), DType.F32),), "test")
    g.nodes = g.nodes + (clone,)
    assert len(lower_graph(g).kernels) == 1  # the permute is free, the clone is a kernel
    close(run_op(g, target)[0], np.ascontiguousarray(x.transpose(1, 0, 2)))


@pytest.mark.parametrize("target", TARGET_NAMES)
@SETTINGS
@given(t=dims, h=dims, vocab=st.integers(1, 50), seed=st.integers(0, 2**16))
def test_embedding(target, t, h, vocab, seed):
    rng = np.random.default_rng(seed)
    w, ids = rand(rng, vocab, h), rng.integers(0, vocab, size=(1, t)).astype(np.int64)
    g = one_op_graph("aten.embedding.default", {"w": w, "ids": ids}, (Ref("w"), Ref("ids")), [(1, t, h)])
    close(run_op(g, target)[0], w[ids])


@pytest.mark.parametrize("target", TARGET_NAMES)
@SETTINGS
@given(a=dims, b=dims, seed=st.integers(0, 2**16))
def test_broadcast_add_mul_where(target, a, b, seed):
    rng = np.random.default_rng(seed)
    x, y = rand(rng, a, b), rand(rng, 1, b)
    close(run_op(one_op_graph("aten.add.Tensor", {"x": x, "y": y}, (Ref("x"), Ref("y")), [(a, b)]), target)[0],
          x + y)
    close(run_op(one_op_graph("aten.mul.Tensor", {"x": x}, (Ref("x"), 0.125), [(a, b)]), target)[0], x * 0.125)
    cond = rng.integers(0, 2, size=(1, b)).astype(bool)
    g = one_op_graph("aten.where.self", {"c": cond, "x": x, "y": y}, (Ref("c"), Ref("x"), Ref("y")), [(a, b)])
    close(run_op(g, target)[0], np.where(cond, x, y))


@pytest.mark.parametrize("target", TARGET_NAMES)
def test_integer_mask_ops(target):
    n = 9
    g = one_op_graph("aten.arange.start_step", {}, (2, 2 + 3 * n, 3), [(n,)], DType.I64)
    assert run_op(g, target)[0].tolist() == list(range(2, 2 + 3 * n, 3))
    v = np.arange(-4, 5, dtype=np.int64)
    g = one_op_graph("aten.ge.Scalar", {"v": v}, (Ref("v"), 0), [(n,)], DType.BOOL)
    assert run_op(g, target)[0].tolist() == (v >= 0).tolist()
    p, q = v >= 0, v % 2 == 0
    g = one_op_graph("aten.bitwise_and.Tensor", {"p": p, "q": q}, (Ref("p"), Ref("q")), [(n,)], DType.BOOL)
    assert run_op(g, target)[0].tolist() == (p & q).tolist()
    m = np.array([[1, 0, 1, 1]], dtype=np.int64)
    g = one_op_graph("aten._to_copy.default", {"m": m}, (Ref("m"),), [(1, 4)], DType.F32)
    assert run_op(g, target)[0].tolist() == [[1.0, 0.0, 1.0, 1.0]]


def test_gather_and_index():
    rng = np.random.default_rng(0)
    src = rng.integers(0, 100, size=(1, 12)).astype(np.int64)
    idx = np.array([[3, 0, 11, 5]], dtype=np.int64)
    g = one_op_graph("aten.gather.default", {"s": src, "i": idx}, (Ref("s"), 1, Ref("i")), [(1, 4)], DType.I64)
    assert run_op(g)[0].tolist() == np.take_along_axis(src, idx, 1).tolist()
    r0, r1 = np.zeros((1, 1), np.int64), np.array([[2, 7, 1]], np.int64)
    g = one_op_graph("aten.index.Tensor", {"s": src, "a": r0, "b": r1}, (Ref("s"), (Ref("a"), Ref("b"))),
                     [(1, 3)], DType.I64)
    assert run_op(g)[0].tolist() == src[r0, r1].tolist()


def test_unlowered_op_names_the_op_and_node():
    x = np.ones((2, 2), np.float32)
    g = one_op_graph("aten.cumsum.default", {"x": x}, (Ref("x"), 0), [(2, 2)])
    with pytest.raises(UnsupportedOp, match=r"aten.cumsum.default at node 'out'"):
        run_op(g)
