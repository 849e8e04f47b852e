"""int8 inference (models/quantize.py, lowering/ops_quant.py, lowering/isel_gemm_int8.py) on every CPU target:
exact integer accumulators, every new op bit-identical to its numpy reference, both executors and the cost
model agreeing, code that GNU as accepts and that runs natively (or under qemu) as the executor does, and the
command line's refusals."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st
from tiny import cli

from isasim.backends import backend_for, load_machine, machine_names
from isasim.engine.run import run_graph
from isasim.isa import native
from isasim.isa.dtype import DType
from isasim.isa.emit import emit, symbol
from isasim.isa.program import Loop
from isasim.isa.targets import ALL_TARGETS
from isasim.lowering.pipeline import lower_graph, materialize
from isasim.models.graph import Graph, Node, Placeholder, PlaceholderKind, Ref, TensorMeta
from isasim.models.quantize import accumulators, quantize_graph, quantize_weight, reference_op
from oprunner import both_executors

DOT = {"vnni": "vpdpbusd", "maddubs": "vpmaddubsw", "sdot": "sdot"}
# each target on a core of each way it multiplies int8: AVX2 with vpmaddubsw (Zen 3) and with AVX-VNNI (Sapphire
# Rapids); AVX-512 needs VNNI, so Sapphire Rapids
PAIRS = [("x86-64", "zen3"), ("aarch64", "neoverse-n1"), ("avx2", "zen3"), ("avx2", "sapphirerapids"),
         ("avx512", "sapphirerapids"), ("neon", "neoverse-n1")]
PAIR_IDS = [f"{t}-{m}" for t, m in PAIRS]


def machine(target: str, core: str | None = None):
    """The named core, or the first core of the target that has what int8 needs (AVX-512: VNNI)."""
    return load_machine(core or machine_names(ALL_TARGETS[target], "int8")[0])


def linear_graph(x: np.ndarray, w: np.ndarray, bias: np.ndarray | None) -> Graph:
    """One float32 aten.linear of an input by a parameter, as capture gives it."""
    n, k = w.shape
    ph = [Placeholder("x", PlaceholderKind.INPUT, TensorMeta(x.shape, DType.F32), "x"),
          Placeholder("w", PlaceholderKind.PARAMETER, TensorMeta((n, k), DType.F32), "w")]
    values = {"x": x, "w": w}
    args: tuple = (Ref("x"), Ref("w"))
    if bias is not None:
        ph.append(Placeholder("b", PlaceholderKind.PARAMETER, TensorMeta((n,), DType.F32), "b"))
        values["b"], args = bias, args + (Ref("b"),)
    node = Node("linear", "aten.linear.default", args, (), (TensorMeta(x.shape[:-1] + (n,), DType.F32),), "test")
    return Graph("test", tuple(ph), (node,), (Ref("linear"),), values, {})


def accumulator_graph(xq: np.ndarray, packed: np.ndarray) -> Graph:
    """An int8 linear whose scales are 1 and whose shift is 0, so its output is float(acc), exact below 2^24."""
    m, k = xq.shape
    n = packed.shape[1]
    values = {"xq": xq, "params": np.array([1, 1, 0], np.float32), "wq": packed,
              "table": np.stack([np.ones(n), np.zeros(n), np.zeros(n)]).astype(np.float32)}
    dtypes = {"xq": DType.U8, "params": DType.F32, "wq": DType.I8, "table": DType.F32}
    ph = tuple(Placeholder(name, PlaceholderKind.INPUT, TensorMeta(v.shape, dtypes[name]), name)
               for name, v in values.items())
    node = Node("acc", "isasim.linear_int8", tuple(Ref(name) for name in values), (),
                (TensorMeta((m, n), DType.F32),), "test")
    return Graph("test", ph, (node,), (Ref("acc"),), values, {})


def mnemonics(program) -> set[str]:
    found = set()

    def walk(items):
        for it in items:
            if isinstance(it, Loop):
                walk(it.body)
            else:
                found.add(it.mnemonic)
    walk(program.body)
    return found


@pytest.mark.parametrize("target, core", PAIRS, ids=PAIR_IDS)
@settings(max_examples=8, deadline=None)
@given(m=st.integers(1, 7), n=st.sampled_from([3, 4, 8, 16, 20, 32, 48]), k4=st.integers(1, 24),
       seed=st.integers(0, 2**16))
@example(m=6, n=32, k4=24, seed=1)  # a full register block with every vector width's lanes dividing n
def test_int8_accumulators_equal_the_integer_reference_bit_for_bit(target, core, m, n, k4, seed):
    rng = np.random.default_rng(seed)
    xq = rng.integers(0, 128, (m, 4 * k4), dtype=np.uint8)  # 7-bit activations, as quantize_u7 makes them
    packed = rng.integers(-127, 128, (k4, n, 4), dtype=np.int8)
    graph = accumulator_graph(xq, packed)
    lowered = lower_graph(graph)
    storages = run_graph(lowered, ALL_TARGETS[target], machine=machine(target, core))
    got = materialize(lowered.context.views[Ref("acc")], storages)
    want = accumulators(xq, packed)
    assert np.abs(want).max() < 2**24  # so float(acc) is the accumulator itself
    assert np.array_equal(got, want.astype(np.float32))


@pytest.mark.parametrize("target, core", PAIRS, ids=PAIR_IDS)
def test_vector_targets_use_their_dot_product_instruction(target, core):
    t, m = ALL_TARGETS[target], machine(target, core)
    rng = np.random.default_rng(0)
    graph = accumulator_graph(rng.integers(0, 128, (4, 64), dtype=np.uint8),
                              rng.integers(-127, 128, (16, 32, 4), dtype=np.int8))
    used = mnemonics(backend_for(t).select(lower_graph(graph).kernels[0], t, m))
    if t.vector is None:
        assert {"imul", "mul"} & used  # a scalar core multiplies byte by byte
    else:
        assert any(u.startswith(DOT[t.int8_dot(m.features)]) for u in used), used
    if (target, core) == ("avx2", "sapphirerapids"):
        assert "vpdpbusd_ymm" in used and "vpmaddubsw_ymm" not in used  # AVX-VNNI


@pytest.mark.parametrize("target, core", PAIRS, ids=PAIR_IDS)
@pytest.mark.parametrize("bias", [True, False])
def test_a_quantized_linear_equals_its_numpy_reference_op_by_op(target, core, bias):
    """minmax_rows, quant_params, quantize_u7 and linear_int8, each from the inputs the executor gave it."""
    rng = np.random.default_rng(3)
    x = (rng.standard_normal((2, 5, 64)) * 3 + 0.5).astype(np.float32)
    w = rng.standard_normal((48, 64)).astype(np.float32) * 0.1
    graph = quantize_graph(linear_graph(x, w, rng.standard_normal(48).astype(np.float32) if bias else None))
    assert [n.op for n in graph.nodes] == ["isasim.minmax_rows", "isasim.quant_params", "isasim.quantize_u7",
                                           "isasim.linear_int8"]
    lowered = lower_graph(graph)
    storages = run_graph(lowered, ALL_TARGETS[target], machine=machine(target, core))
    for node in graph.nodes:
        inputs = [materialize(lowered.context.views[a], storages) for a in node.args]
        got = materialize(lowered.context.views[Ref(node.name)], storages)
        assert np.array_equal(got, reference_op(node, inputs).reshape(got.shape)), node.op
    # and the int8 output is close to float32's: the quantization error, not a wrong answer
    y = materialize(lowered.context.views[Ref("linear")], storages)
    want = x @ w.T + (graph.values["w_int8_epilogue"][2])
    assert np.abs(y - want).max() < 0.05 * np.abs(want).max()


def test_weights_quantize_per_channel_symmetrically_and_pack_four_k_together():
    rng = np.random.default_rng(1)
    w = rng.standard_normal((6, 8)).astype(np.float32)
    w[2] *= 100  # one channel much larger: its own scale, the others keep their resolution
    packed, table = quantize_weight(w, None)
    q = packed.transpose(1, 0, 2).reshape(6, 8).astype(np.int64)
    assert np.abs(q).max() == 127 and np.all(np.abs(q).max(axis=1) == 127)
    assert np.allclose(q * table[0][:, None], w, atol=table[0].max() / 2 + 1e-6)
    assert np.array_equal(packed[1, 3], q[3, 4:8])  # k = 4..7 of output 3 side by side
    assert np.allclose(table[1], table[0] * q.sum(axis=1))


@pytest.mark.parametrize("target, core", PAIRS, ids=PAIR_IDS)
def test_int8_programs_batched_equal_stepped_and_counts_equal_cost(target, core):
    t = ALL_TARGETS[target]
    rng = np.random.default_rng(5)
    x = rng.standard_normal((3, 32)).astype(np.float32)
    graph = quantize_graph(linear_graph(x, rng.standard_normal((16, 32)).astype(np.float32), None))
    lowered = lower_graph(graph)
    backend, m = backend_for(t), machine(target, core)
    storages = run_graph(lowered, t, machine=m, keep=None)
    for kernel in lowered.kernels:
        program = backend.select(kernel, t, m)
        (batched, events), (stepped, step_events) = both_executors(program, storages, target, m.name)
        assert np.array_equal(batched.data, stepped.data), kernel.op
        assert dict(events.instructions) == dict(step_events.instructions) == backend.counts(program, m)


@pytest.mark.parametrize("target, core", PAIRS, ids=PAIR_IDS)
@pytest.mark.parametrize("rows, n, k", [
    (4, 1024, 64),  # the epilogue table's rows start 4096 bytes apart: AArch64's add takes that as #1, lsl #12
    (48, 384, 384),  # NEON's 6x6 block saves an odd number of x registers and some d registers: never one pair
])
def test_int8_code_assembles_and_runs_as_the_executor_does(target, core, rows, n, k):
    """GNU as takes every int8 kernel (AArch64 with the dot product extension); where this host runs the
    target (natively, or under qemu with every optional feature), the machine code's outputs equal the
    executor's bit for bit."""
    t = ALL_TARGETS[target]
    backend, m = backend_for(t), machine(target, core)
    rng = np.random.default_rng(7)
    x = rng.standard_normal((rows, k)).astype(np.float32)
    graph = quantize_graph(linear_graph(x, rng.standard_normal((n, k)).astype(np.float32),
                                        rng.standard_normal(n).astype(np.float32)))
    lowered = lower_graph(graph)
    try:
        for kernel in lowered.kernels:
            program = backend.select(kernel, t, m)
            native.assemble(t.isa, emit(program, t), symbol(program.name))
    except native.NativeUnavailable as e:
        pytest.skip(str(e))
    why = backend.can_run_native(t, "int8", m)
    if why:
        pytest.skip(why)
    executed = run_graph(lowered, t, machine=m, keep=None)
    ran = run_graph(lowered, t, native=True, machine=m, keep=None)
    for b in ("linear_minmax", "linear_qparams", "linear_quantize", "linear"):
        assert np.array_equal(ran[b], executed[b]), b


def test_int8_trace_and_its_refusals(capsys, tmp_path):
    from tiny import save_bert

    folder = save_bert(tmp_path / "tiny", 0, hidden_size=64, num_hidden_layers=1, num_attention_heads=2,
                       intermediate_size=128, vocab_size=100, max_position_embeddings=64)
    code, out, err = cli(capsys, "trace", str(folder), "--seq", "8", "--precision", "int8", "--format", "csv")
    assert code == 0, err
    assert "isasim.linear_int8" in out and "isasim.quantize_u7" in out
    assert "simt left out" not in err and "avx512,sapphirerapids" in out  # VNNI's core, not Skylake-X
    for argv, says in ((("--target", "avx512", "--uarch", "skylake-x"), "lacks avx512_vnni"),
                       (("--training",), "float32 fine-tuning step")):
        code, out, err = cli(capsys, "trace", str(folder), "--seq", "8", "--precision", "int8", *argv)
        assert code == 2 and says in err and len(err.strip().splitlines()) == 1, err


def test_int8_check_passes_against_its_reference_and_reports_the_error_against_float32(capsys, tmp_path):
    import json

    from tiny import save_bert

    folder = save_bert(tmp_path / "tiny", 0, hidden_size=64, num_hidden_layers=1, num_attention_heads=2,
                       intermediate_size=128, vocab_size=100, max_position_embeddings=64)
    code, out, err = cli(capsys, "check", str(folder), "--seq", "8", "--precision", "int8", "--target", "avx2",
                         "--target", "neon", "--format", "json", "--jobs", "1")
    assert code == 0, err
    report = json.loads(out)
    assert report["precision"] == "int8"
    for t in report["targets"]:
        assert t["passed"] and t["ops_exact"] and t["counts_match_cost_model"]
        assert 1e-4 < t["max_abs_err_fp32"] < 0.5  # quantization moves the output, a little


def test_an_int8_op_that_differs_from_its_reference_fails_the_check(tmp_path, monkeypatch):
    from isasim import api
    from isasim.models import quantize
    from tiny import save_bert

    folder = save_bert(tmp_path / "tiny", 0, hidden_size=64, num_hidden_layers=1, num_attention_heads=2,
                       intermediate_size=128, vocab_size=100, max_position_embeddings=64)

    def off_by_one(node, inputs):
        out = reference_op(node, inputs)
        return out + 1 if node.op == "isasim.quantize_u7" else out

    monkeypatch.setattr(quantize, "reference_op", off_by_one)
    report = api.check(str(folder), "x86-64", seq=8, precision="int8", jobs=1)
    assert not report.passed and report.targets[0].ops_exact is False
