"""bf16 inference (models/bf16.py, lowering/ops_bf16.py, lowering/isel_gemm_bf16.py) on the targets with bf16
instructions: the vendors' rounding bit for bit (isa/bfloat16.py), every GEMM equal to its numpy reference,
both executors and the cost model agreeing, code that GNU as accepts and that runs under qemu as the executor
does, and the command line's refusals."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import example, given, settings
from hypothesis import strategies as st
from test_int8 import linear_graph, mnemonics
from tiny import cli, save_bert

from isasim.backends import backend_for, load_machine
from isasim.engine.run import run_graph
from isasim.isa import bfloat16, native
from isasim.isa.dtype import DType
from isasim.isa.emit import emit, symbol
from isasim.isa.semantics import fma_f32
from isasim.isa.targets import ALL_TARGETS
from isasim.lowering.pipeline import lower_graph, materialize
from isasim.models.bf16 import bf16_graph, linear_bf16, pack_weight, reference_op, round_bf16, unpack_weight
from isasim.models.graph import Graph, Node, Placeholder, PlaceholderKind, Ref, TensorMeta
from oprunner import both_executors

# each target on every described core that has its bf16 instructions
PAIRS = [("avx512", "sapphirerapids"), ("avx512", "zen4"), ("neon", "neoverse-v1")]
PAIR_IDS = [f"{t}-{m}" for t, m in PAIRS]
F32 = np.float32


def bits(*values: float) -> np.ndarray:
    return np.array(values, F32)


def pair(lo: float, hi: float) -> np.ndarray:
    """One 32-bit lane holding two bf16 (exact: both must be bf16 values), as a float32 bit pattern."""
    b = bfloat16.to_bf16(bits(lo, hi))
    return (b[0].astype(np.uint32) | (b[1].astype(np.uint32) << 16)).reshape(1).view(F32)


def test_rounding_to_bf16_is_nearest_even_as_pytorch_rounds():
    rng = np.random.default_rng(0)
    x = np.concatenate([rng.standard_normal(10_000).astype(F32) * 10.0 ** rng.integers(-30, 30, 10_000),
                        bfloat16.from_bf16(rng.integers(0, 2**15, 200, dtype=np.uint16)) * F32(1 + 2**-8),  # ties
                        bits(1e-39, -3e-40, 0.0, -0.0, np.inf, 3.4e38)])  # denormals, zeros, overflow
    want = torch.from_numpy(x).to(torch.bfloat16).view(torch.int16).numpy().view(np.uint16)
    assert np.array_equal(bfloat16.to_bf16(x), want)
    # Intel's conversion treats denormal inputs as zero and keeps the sign
    assert np.array_equal(bfloat16.to_bf16(bits(1e-39, -3e-40), flush_denormals=True), [0x0000, 0x8000])
    assert np.array_equal(round_bf16(bits(1e-39), "vdpbf16ps"), [0]) and round_bf16(bits(1e-39), "bfdot")[0] != 0


def dpbf16(acc, a, b):
    return bfloat16.vdpbf16ps(acc, a, b, fma_f32)


def test_vdpbf16ps_rounds_each_fused_multiply_add_and_flushes_denormals():
    """Intel SDM: the high pair's FMA, then the low pair's, each rounded to nearest even."""
    eps = 2.0 ** -24  # half an ulp of 1.0
    acc = bits(1.0)
    # each product alone is a tie at 1.0 and rounds back to it: two roundings lose what one would keep
    assert dpbf16(acc, pair(eps, eps), pair(1.0, 1.0))[0] == F32(1.0)
    assert dpbf16(acc, pair(3 * eps, 0.0), pair(1.0, 0.0))[0] == F32(1.0 + 2 * 2 ** -23)  # RNE up
    # a denormal bf16 input counts as zero, and a denormal result is flushed
    assert dpbf16(bits(0.0), pair(1e-39, 0.0), pair(1e38, 0.0))[0] == 0.0
    assert dpbf16(bits(0.0), pair(2.0 ** -100, 0.0), pair(2.0 ** -30, 0.0))[0] == 0.0


def test_bfdot_sums_the_pair_first_and_rounds_to_odd():
    """Arm ARM BFDotAdd (FEAT_EBF16 off): products summed, then added to the accumulator, each rounded to odd."""
    eps = 2.0 ** -24
    acc = bits(1.0)
    # the pair's sum 2^-23 is exact, and 1 + 2^-23 is a float32: one exact step
    assert bfloat16.bfdot(acc, pair(eps, eps), pair(1.0, 1.0))[0] == F32(1.0 + 2 ** -23)
    # 1 + 2^-24 is a tie: round to odd takes the odd neighbour, nearest even would take 1.0
    assert bfloat16.bfdot(acc, pair(eps, 0.0), pair(1.0, 0.0))[0] == F32(1.0 + 2 ** -23)
    # an exact result keeps its even last bit
    assert bfloat16.bfdot(acc, pair(1.0, 0.0), pair(1.0, 0.0))[0] == F32(2.0)
    assert bfloat16.bfdot(bits(0.0), pair(2.0 ** -100, 0.0), pair(2.0 ** -30, 0.0))[0] == 0.0  # flushed


def test_bfdot_overflows_only_from_2_to_the_128():
    """Round to odd truncates, so it never carries into the exponent: a sum between the largest float32 and
    2^128 stays the largest float32 (QEMU's float_round_to_odd_inf, the Arm ARM's BFRound)."""
    big = np.array([np.finfo(F32).max], F32)
    for fn in (bfloat16.bfdot, bfloat16.bfdot_numpy):
        assert fn(big, pair(0.0, 2.0 ** 90), pair(0.0, 1.0))[0] == np.finfo(F32).max
        assert fn(big, pair(0.0, 2.0 ** 127), pair(0.0, 2.0))[0] == np.inf


def test_bfdot_in_c_equals_its_numpy_definition_bit_for_bit():
    """isa/fastbf16.py against isa/bfloat16.py `bfdot_numpy`, on every kind of bits: huge, tiny, denormal."""
    rng = np.random.default_rng(2)
    n = 100_000
    acc = (rng.standard_normal(n) * 10.0 ** rng.integers(-40, 38, n)).astype(F32)
    a, b = (rng.integers(0, 2**32, n, dtype=np.uint64).astype(np.uint32).view(F32) for _ in range(2))
    with np.errstate(all="ignore"):
        want, got = bfloat16.bfdot_numpy(acc, a, b), bfloat16.bfdot(acc, a, b)
    assert np.all((got.view(np.uint32) == want.view(np.uint32)) | (np.isnan(got) & np.isnan(want)))


def accumulator_graph(xb: np.ndarray, packed: np.ndarray) -> Graph:
    """One bf16 linear without a bias: its output is the accumulators."""
    m, n = xb.shape[0], packed.shape[1]
    ph = (Placeholder("xb", PlaceholderKind.INPUT, TensorMeta(xb.shape, DType.BF16), "xb"),
          Placeholder("wb", PlaceholderKind.INPUT, TensorMeta(packed.shape, DType.BF16), "wb"))
    node = Node("acc", "isasim.linear_bf16", (Ref("xb"), Ref("wb")), (), (TensorMeta((m, n), DType.F32),), "test")
    return Graph("test", ph, (node,), (Ref("acc"),), {"xb": xb, "wb": packed}, {})


@pytest.mark.parametrize("target, core", PAIRS, ids=PAIR_IDS)
@settings(max_examples=8, deadline=None)
@given(m=st.integers(1, 7), n=st.sampled_from([16, 32, 48, 96]), k2=st.integers(1, 24), seed=st.integers(0, 2**16))
@example(m=6, n=96, k2=24, seed=1)  # a full register block
def test_bf16_gemms_equal_the_vendors_rounding_bit_for_bit(target, core, m, n, k2, seed):
    rng = np.random.default_rng(seed)
    xb = bfloat16.to_bf16(rng.standard_normal((m, 2 * k2)).astype(F32))
    packed = pack_weight(rng.standard_normal((n, 2 * k2)).astype(F32))
    graph = accumulator_graph(xb, packed)
    lowered = lower_graph(graph)
    t = ALL_TARGETS[target]
    got = materialize(lowered.context.views[Ref("acc")], run_graph(lowered, t, machine=load_machine(core)))
    assert np.array_equal(got, linear_bf16(xb, packed, None, t.vector.bf16_dot))
    exact = bfloat16.from_bf16(xb).astype(np.float64) @ unpack_weight(packed).astype(np.float64).T
    assert np.abs(got - exact).max() <= 1e-5 * max(np.abs(exact).max(), 1.0) * k2  # float32 sums of exact products


@pytest.mark.parametrize("target, core", PAIRS, ids=PAIR_IDS)
@pytest.mark.parametrize("bias", [True, False])
def test_a_bf16_linear_equals_its_numpy_reference_op_by_op(target, core, bias):
    rng = np.random.default_rng(3)
    x = (rng.standard_normal((2, 5, 64)) * 3 + 0.5).astype(F32)
    w = rng.standard_normal((64, 64)).astype(F32) * 0.1
    graph = bf16_graph(linear_graph(x, w, rng.standard_normal(64).astype(F32) if bias else None))
    assert [n.op for n in graph.nodes] == ["isasim.round_bf16", "isasim.linear_bf16"]
    t = ALL_TARGETS[target]
    lowered = lower_graph(graph)
    storages = run_graph(lowered, t, machine=load_machine(core))
    for node in graph.nodes:
        inputs = [materialize(lowered.context.views[a], storages) for a in node.args]
        got = materialize(lowered.context.views[Ref(node.name)], storages)
        assert np.array_equal(got, reference_op(node, inputs, t.vector.bf16_dot).reshape(got.shape)), node.op
    y = materialize(lowered.context.views[Ref("linear")], storages)
    want = x @ w.T + (graph.values["b"] if bias else 0)
    assert np.abs(y - want).max() < 0.02 * np.abs(want).max()  # bf16's 8 bits, not a wrong answer


def test_only_linears_with_whole_vectors_become_bf16():
    rng = np.random.default_rng(1)
    x = rng.standard_normal((3, 64)).astype(F32)
    head = bf16_graph(linear_graph(x, rng.standard_normal((2, 64)).astype(F32), None))  # a classifier's head
    assert [n.op for n in head.nodes] == ["aten.linear.default"]
    w = rng.standard_normal((32, 64)).astype(F32)
    packed = pack_weight(w)
    assert packed.shape == (32, 32, 2) and np.array_equal(packed[5, 3], bfloat16.to_bf16(w[3, 10:12]))


@pytest.mark.parametrize("target, core", PAIRS, ids=PAIR_IDS)
def test_bf16_programs_batched_equal_stepped_and_counts_equal_cost(target, core):
    t = ALL_TARGETS[target]
    rng = np.random.default_rng(5)
    graph = bf16_graph(linear_graph(rng.standard_normal((3, 32)).astype(F32),
                                    rng.standard_normal((32, 32)).astype(F32), rng.standard_normal(32).astype(F32)))
    lowered = lower_graph(graph)
    backend, m = backend_for(t), load_machine(core)
    storages = run_graph(lowered, t, machine=m, keep=None)
    used = set()
    for kernel in lowered.kernels:
        program = backend.select(kernel, t, m)
        used |= mnemonics(program)
        (batched, events), (stepped, step_events) = both_executors(program, storages, target, m.name)
        assert np.array_equal(batched.data, stepped.data), kernel.op
        assert dict(events.instructions) == dict(step_events.instructions) == backend.counts(program, m)
    assert ({"vdpbf16ps_zmm", "vcvtneps2bf16_zmm"} if target == "avx512" else {"bfdot_4s", "bfcvtn_4s"}) <= used


@pytest.mark.parametrize("target, core", PAIRS, ids=PAIR_IDS)
@pytest.mark.parametrize("rows, n, k", [(4, 1024, 64), (48, 384, 384)])
def test_bf16_code_assembles_and_runs_as_the_executor_does(target, core, rows, n, k):
    """GNU as takes every bf16 kernel; where this host runs the target (natively, or NEON under qemu -cpu max,
    whose bfdot rounds as the Arm ARM says), the machine code's outputs equal the executor's bit for bit."""
    t = ALL_TARGETS[target]
    backend, m = backend_for(t), load_machine(core)
    rng = np.random.default_rng(7)
    graph = bf16_graph(linear_graph(rng.standard_normal((rows, k)).astype(F32),
                                    rng.standard_normal((n, k)).astype(F32), rng.standard_normal(n).astype(F32)))
    lowered = lower_graph(graph)
    try:
        for kernel in lowered.kernels:
            program = backend.select(kernel, t, m)
            native.assemble(t.isa, emit(program, t), symbol(program.name))
    except native.NativeUnavailable as e:
        pytest.skip(str(e))
    why = backend.can_run_native(t, "bf16", m)
    if why:
        pytest.skip(why)
    executed = run_graph(lowered, t, machine=m, keep=None)
    ran = run_graph(lowered, t, native=True, machine=m, keep=None)
    for b in ("linear_bf16", "linear"):
        assert np.array_equal(ran[b], executed[b]), b


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    return save_bert(tmp_path_factory.mktemp("bf16") / "tiny", 0, hidden_size=64, num_hidden_layers=1,
                     num_attention_heads=2, intermediate_size=128, vocab_size=100, max_position_embeddings=64)


def test_bf16_trace_and_its_refusals(capsys, tiny):
    code, out, err = cli(capsys, "trace", str(tiny), "--seq", "8", "--precision", "bf16", "--format", "csv")
    assert code == 0, err
    assert "isasim.linear_bf16" in out and "isasim.round_bf16" in out
    assert "avx512,sapphirerapids" in out and "neon,neoverse-v1" in out  # each target on a core with bf16
    assert "note: target avx2 left out" in err and "note: target x86-64 left out" in err
    for argv, says in ((("--target", "avx2"), "avx2 has no bf16 instructions"),
                       (("--target", "neon", "--uarch", "neoverse-n1"), "lacks bf16"),
                       (("--target", "avx512", "--uarch", "skylake-x"), "lacks avx512_bf16"),
                       (("--core-aten",), "drop one")):
        code, out, err = cli(capsys, "trace", str(tiny), "--seq", "8", "--precision", "bf16", *argv)
        assert code == 2 and says in err and len(err.strip().splitlines()) == 1, err


def test_bf16_check_passes_with_every_op_as_its_instructions_round(capsys, tiny):
    import json

    code, out, err = cli(capsys, "check", str(tiny), "--seq", "8", "--precision", "bf16", "--format", "json",
                         "--jobs", "1")
    assert code == 0, err
    report = json.loads(out)
    targets = {t["target"] for t in report["targets"]}
    assert report["precision"] == "bf16" and targets == {"avx512", "neon", "amx", "simt"}
    for t in report["targets"]:
        assert t["passed"] and t["ops_exact"] and t["counts_match_cost_model"]
        assert 1e-4 < t["max_abs_err_fp32"] < 0.5  # bf16 moves the output, a little


def test_a_bf16_op_that_differs_from_its_reference_fails_the_check(tiny, monkeypatch):
    from isasim import api
    from isasim.models import bf16

    real = bf16.reference_op

    def nearest_even(node, inputs, dot):  # the wrong rounding for Arm's bfdot
        return real(node, inputs, "vdpbf16ps" if node.op == "isasim.linear_bf16" else dot)

    monkeypatch.setattr(bf16, "reference_op", nearest_even)
    report = api.check(str(tiny), "neon", seq=8, precision="bf16", jobs=1)
    assert not report.passed and report.targets[0].ops_exact is False
