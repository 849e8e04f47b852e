"""On every target (CPU and GPU alike), through its backend: the batched executor equals the stepped
interpreter bit for bit, and both count what the cost model counts."""

from fractions import Fraction

import numpy as np
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st
from oprunner import TARGET_NAMES, both_executors, machine_of, one_op_graph, programs

from isasim.backends import backend_for
from isasim.isa.semantics import fma_f32
from isasim.isa.targets import ALL_TARGETS
from isasim.models.graph import Ref

small = st.integers(1, 9)


def graphs(draw_seed, m, n, k):
    rng = np.random.default_rng(draw_seed)
    f = lambda *s: (rng.standard_normal(s) * 3).astype(np.float32)  # noqa: E731
    x, w, b = f(m, k), f(n, k), f(n)
    ids = rng.integers(0, 5, size=(1, m)).astype(np.int64)
    return [
        one_op_graph("aten.linear.default", {"x": x, "w": w, "b": b}, (Ref("x"), Ref("w"), Ref("b")), [(m, n)]),
        one_op_graph("aten.softmax.int", {"x": x}, (Ref("x"), -1), [(m, k)]),
        one_op_graph("aten.native_layer_norm.default", {"x": x, "w": f(k), "b": f(k)},
                     (Ref("x"), (k,), Ref("w"), Ref("b"), 1e-5), [(m, k), (m, 1), (m, 1)]),
        one_op_graph("aten.gelu.default", {"x": x}, (Ref("x"),), [(m, k)]),
        one_op_graph("aten.embedding.default", {"w": f(5, n), "ids": ids}, (Ref("w"), Ref("ids")), [(1, m, n)]),
    ]


@pytest.mark.parametrize("target", TARGET_NAMES)
@settings(max_examples=6, deadline=None)
@given(m=small, n=small, k=small, seed=st.integers(0, 2**16))
@example(m=40, n=33, k=9, seed=0)  # big enough for the GPU's shared-memory tiles, with partial edges
def test_batched_equals_stepped_and_counts_equal_cost(target, m, n, k, seed):
    backend, machine = backend_for(ALL_TARGETS[target]), machine_of(target)
    for g in graphs(seed, m, n, k):
        for prog in programs(g, target):
            (mem_b, ev_b), (mem_s, ev_s) = both_executors(prog, g.values, target)
            assert mem_b.data.tobytes() == mem_s.data.tobytes(), prog.name  # every bit, inputs included
            cost = backend.cost(prog, machine)
            assert ev_b.instructions == ev_s.instructions == backend.counts(prog, machine) == cost.by_mnemonic, \
                prog.name
            assert ev_b.bytes_loaded == ev_s.bytes_loaded and ev_b.bytes_stored == ev_s.bytes_stored
            assert cost.bytes["l1"] == ev_b.bytes_loaded + ev_b.bytes_stored, prog.name


def _fma_exact(a, b, c) -> np.float32:
    """Correctly rounded a*b+c from exact rational arithmetic (ties to even)."""
    exact = Fraction(float(a)) * Fraction(float(b)) + Fraction(float(c))
    f = np.float32(float(exact))
    best = f
    for cand in (np.nextafter(f, np.float32(-np.inf)), np.nextafter(f, np.float32(np.inf))):
        d_c, d_b = abs(Fraction(float(cand)) - exact), abs(Fraction(float(best)) - exact)
        if d_c < d_b or (d_c == d_b and int(cand.view(np.uint32)) % 2 == 0):
            best = cand
    return best


def test_fma_rounds_once_even_where_double_rounding_would_not():
    rng = np.random.default_rng(1)
    a = rng.standard_normal(3000).astype(np.float32)
    b = rng.standard_normal(3000).astype(np.float32)
    c = rng.standard_normal(3000).astype(np.float32)
    # A constructed hard case: (1 + 2^-12)^2 = 1 + 2^-11 + 2^-24 is exactly halfway between two float32
    # values; adding 2^-70 makes the true result round up, but float64 first rounds it back onto the halfway
    # point, and the second rounding (ties to even) then goes down. Only a single rounding gets it right.
    hard_a = np.array([1 + 2**-12, -(1 + 2**-12)], np.float32)
    hard_b = np.array([1 + 2**-12, -(1 + 2**-12)], np.float32)
    hard_c = np.array([2.0**-70, 2.0**-70], np.float32)
    naive = (hard_a.astype(np.float64) * hard_b + hard_c).astype(np.float32)
    assert any(naive[i] != _fma_exact(hard_a[i], hard_b[i], hard_c[i]) for i in range(2))  # the trap is real
    a, b, c = np.concatenate([a, hard_a]), np.concatenate([b, hard_b]), np.concatenate([c, hard_c])
    got = fma_f32(a, b, c)
    want = np.array([_fma_exact(x, y, z) for x, y, z in zip(a, b, c)], np.float32)
    assert got.tobytes() == want.tobytes()


@settings(max_examples=40, deadline=None)
@given(shape=st.sampled_from([(), (7,), (3, 5), (2, 3, 4), (2, 1, 3, 2)]), seed=st.integers(0, 2**16),
       broadcast=st.integers(0, 7), strided=st.booleans())
def test_the_compiled_fma_equals_the_numpy_definition(shape, seed, broadcast, strided):
    """isa/fastfma.py (libm's fmaf, vectorised) and isa/semantics.py's numpy formulation are one function:
    the same bits on broadcast and strided operands, with halfway cases, infinities and subnormals mixed in."""
    from isasim.isa import fastfma
    from isasim.isa.semantics import fma_f32_numpy

    rng = np.random.default_rng(seed)
    special = np.array([1 + 2**-12, -(1 + 2**-12), 2.0**-70, np.inf, -np.inf, 1e-40, -0.0, 3.0, 1 / 3],
                       np.float32)

    def operand(i):
        full = tuple(1 if broadcast >> i & 1 else d for d in shape)
        x = (rng.standard_normal(full) * 10.0 ** rng.integers(-3, 4)).astype(np.float32)
        x.reshape(-1)[: min(x.size, 4)] = rng.choice(special, min(x.size, 4))
        return np.repeat(x, 2, axis=-1)[..., ::2] if strided and x.ndim else x  # a non-contiguous view

    a, b, c = operand(0), operand(1), operand(2)
    got = fastfma.fma(a, b, c)
    if got is None:
        pytest.skip("no C compiler here: the numpy formulation serves alone")
    with np.errstate(invalid="ignore"):  # inf x 0
        want = fma_f32_numpy(a, b, c)
    assert got.shape == want.shape and np.array_equal(got, want, equal_nan=True)
    ok = ~np.isnan(want)
    assert got[ok].tobytes() == want[ok].tobytes()
