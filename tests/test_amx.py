"""The `amx` target (lowering/isel_gemm_amx.py, isa/amx.py): int8 and bf16 GEMMs on AMX tiles, exact against
the integer reference and the SDM's bf16 order, both executors and the cost model agreeing, code that GNU as
accepts, and what the command line says about a target that runs no float32."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st
from test_bf16 import accumulator_graph as bf16_accumulators
from test_int8 import accumulator_graph as int8_accumulators
from test_int8 import linear_graph, mnemonics
from tiny import cli, save_bert

from isasim.backends import backend_for, load_machine, machine_names
from isasim.engine.run import run_graph
from isasim.isa import amx, bfloat16, native
from isasim.isa.dtype import DType
from isasim.isa.emit import emit, symbol
from isasim.isa.semantics import fma_f32
from isasim.isa.targets import ALL_TARGETS
from isasim.lowering.isel_gemm_amx import tile_config
from isasim.lowering.pipeline import lower_graph, materialize
from isasim.models.bf16 import bf16_graph, linear_bf16, pack_weight
from isasim.models.bf16 import reference_op as bf16_reference
from isasim.models.graph import Ref
from isasim.models.quantize import accumulators, quantize_graph
from isasim.models.quantize import reference_op as int8_reference
from oprunner import both_executors

AMX = ALL_TARGETS["amx"]
F32 = np.float32


def machine():
    return load_machine("sapphirerapids")


def test_amx_runs_on_sapphire_rapids_in_int8_and_bf16_only():
    assert machine_names(AMX, "int8") == machine_names(AMX, "bf16") == ("sapphirerapids",)
    assert machine_names(AMX) == ()  # no float32 on tiles: the float32 reports leave it out
    # compare's peak: the tile unit's (one multiply every 16 cycles), not the VNNI or BF16 vector instructions'
    assert machine().peak_ops_per_cycle(AMX.peak_unit(DType.I8)) == 2048
    assert machine().peak_ops_per_cycle(AMX.peak_unit(DType.BF16)) == 1024


def test_tile_multiplies_follow_the_sdm():
    rng = np.random.default_rng(0)
    a = rng.integers(0, 128, (16, 64), dtype=np.uint8)  # 16 rows of 16 dwords of four unsigned bytes
    b = rng.integers(-128, 128, (16, 64), dtype=np.int8)  # 16 k dwords x 16 columns of four signed bytes
    c = rng.integers(-1000, 1000, (16, 16), dtype=np.int32)
    got = amx.tdpbusd(a.view(F32).reshape(-1), b.view(F32).reshape(-1), c.view(F32).reshape(-1), 16, 16)
    want = c + a.reshape(16, 16, 4).astype(np.int64).reshape(16, 64) @ b.reshape(16, 16, 4).transpose(
        0, 2, 1).reshape(64, 16).astype(np.int64)
    assert np.array_equal(got.view(np.int32).reshape(16, 16), want)
    # bf16: even and odd products summed apart from zero, then together, then added to C (nearest even each)
    one, eps = bfloat16.to_bf16(np.array([1.0], F32)), bfloat16.to_bf16(np.array([2.0 ** -24], F32))
    pairs = lambda lo, hi: (lo.astype(np.uint32) | (hi.astype(np.uint32) << 16)).view(F32)  # noqa: E731
    a1 = pairs(eps, eps).reshape(1, 1)  # A[0, 0] = (2^-24, 2^-24)
    b1 = np.zeros((1, 16), F32)
    b1[0, 0] = pairs(one, one)[0]  # B[0, 0] = (1, 1)
    out = amx.bf16_tile_product(a1, b1, np.ones((1, 16), F32), fma_f32)
    assert out[0, 0] == F32(1.0 + 2 ** -23)  # the pair's sum 2^-23 survives, where two separate adds would not


def test_the_tile_configuration_is_palette_1_with_each_tiles_shape():
    cfg = tile_config([(16, 64)] * 4 + [(8, 32)])
    assert len(cfg) == 64 and cfg[0] == 1 and cfg[1] == 0
    assert cfg[16:18] == (64, 0) and cfg[24:26] == (32, 0) and cfg[48:53] == (16, 16, 16, 16, 8)


def test_a_tile_used_in_another_shape_than_configured_is_an_error():
    """The executor keeps the shapes ldtilecfg set and holds every tile instruction to them, as the hardware
    would compute (or fault) on the configured ones."""
    from dataclasses import replace

    from isasim.isa.program import Instr, Loop
    from isasim.isa.semantics import Prim

    rng = np.random.default_rng(1)
    graph = int8_accumulators(rng.integers(0, 128, (16, 64), dtype=np.uint8),
                              rng.integers(-127, 128, (16, 16, 4), dtype=np.int8))
    lowered = lower_graph(graph)
    storages = run_graph(lowered, AMX, machine=machine(), keep=None)
    program = backend_for(AMX).select(lowered.kernels[0], AMX, machine())

    def misconfigured(items):
        out = []
        for it in items:
            if isinstance(it, Loop):
                out.append(replace(it, body=misconfigured(it.body)))
            elif isinstance(it, Instr) and it.prim is Prim.TILE_CONFIG:
                cfg = list(it.srcs[0].value)
                cfg[48] = 8  # tmm0 (an accumulator) gets 8 rows, where the code uses 16
                out.append(replace(it, srcs=(type(it.srcs[0])(tuple(cfg)),)))
            else:
                out.append(it)
        return tuple(out)

    assert any(isinstance(i, Instr) and i.prim is Prim.TILE_CONFIG for i in program.body)
    with pytest.raises(ValueError, match="tmm0 is configured 8 rows"):
        both_executors(replace(program, body=misconfigured(program.body)), storages, "amx", "sapphirerapids")


@settings(max_examples=10, deadline=None)
@given(m=st.integers(1, 40), n=st.sampled_from([16, 32, 48, 64]), kd=st.integers(1, 40), seed=st.integers(0, 2**16))
@example(m=32, n=32, kd=32, seed=0)  # a full 2 x 2 block of full tiles, two k steps
def test_amx_gemms_equal_their_references_bit_for_bit(m, n, kd, seed):
    rng = np.random.default_rng(seed)
    xq = rng.integers(0, 128, (m, 4 * kd), dtype=np.uint8)
    packed = rng.integers(-127, 128, (kd, n, 4), dtype=np.int8)
    lowered = lower_graph(int8_accumulators(xq, packed))
    got = materialize(lowered.context.views[Ref("acc")], run_graph(lowered, AMX, machine=machine()))
    assert np.array_equal(got, accumulators(xq, packed).astype(F32))
    xb = bfloat16.to_bf16(rng.standard_normal((m, 2 * kd)).astype(F32))
    pb = pack_weight(rng.standard_normal((n, 2 * kd)).astype(F32))
    lowered = lower_graph(bf16_accumulators(xb, pb))
    got = materialize(lowered.context.views[Ref("acc")], run_graph(lowered, AMX, machine=machine()))
    assert np.array_equal(got, linear_bf16(xb, pb, None, "tdpbf16ps"))


@pytest.mark.parametrize("precision", ["int8", "bf16"])
def test_amx_linears_equal_their_references_and_both_executors_agree(precision):
    rng = np.random.default_rng(5)
    x = rng.standard_normal((3, 2, 64)).astype(F32)  # a batch dimension too
    transform = quantize_graph if precision == "int8" else bf16_graph
    graph = transform(linear_graph(x, rng.standard_normal((32, 64)).astype(F32), rng.standard_normal(32).astype(F32)))
    lowered = lower_graph(graph)
    backend, m = backend_for(AMX), machine()
    storages = run_graph(lowered, AMX, machine=m, keep=None)
    for node in graph.nodes:
        inputs = [storages_value(lowered, storages, a) for a in node.args]
        got = storages_value(lowered, storages, Ref(node.name))
        want = int8_reference(node, inputs) if precision == "int8" else bf16_reference(node, inputs, "tdpbf16ps")
        assert np.array_equal(got, want.reshape(got.shape)), node.op
    used = set()
    for kernel in lowered.kernels:
        program = backend.select(kernel, AMX, m)
        used |= mnemonics(program)
        (batched, events), (stepped, step_events) = both_executors(program, storages, "amx", m.name)
        assert np.array_equal(batched.data, stepped.data), kernel.op
        assert dict(events.instructions) == dict(step_events.instructions) == backend.counts(program, m)
    multiply = "tdpbusd" if precision == "int8" else "tdpbf16ps"
    assert {"ldtilecfg", "tileloadd", multiply, "tilestored", "tilerelease"} <= used


def storages_value(lowered, storages, ref):
    return materialize(lowered.context.views[ref], storages)


@pytest.mark.parametrize("precision", ["int8", "bf16"])
def test_amx_code_assembles(precision):
    """GNU as takes every kernel; a host with AMX would run it (after arch_prctl, isa/native.py), this one
    says why it cannot."""
    rng = np.random.default_rng(7)
    transform = quantize_graph if precision == "int8" else bf16_graph
    graph = transform(linear_graph(rng.standard_normal((48, 384)).astype(F32),
                                   rng.standard_normal((384, 384)).astype(F32), rng.standard_normal(384).astype(F32)))
    backend, m = backend_for(AMX), machine()
    try:
        for kernel in lower_graph(graph).kernels:
            program = backend.select(kernel, AMX, m)
            text = emit(program, AMX)
            native.assemble(AMX.isa, text, symbol(program.name))
    except native.NativeUnavailable as e:
        pytest.skip(str(e))
    assert "ldtilecfg [rip + " in text and "tilerelease" in text
    why = backend.can_run_native(AMX, precision, m)
    if why:
        assert "amx_tile" in why or "avx512" in why
        pytest.skip(why)
    # a host with AMX: the machine code (after arch_prctl) computes what the executor does, bit for bit
    lowered = lower_graph(graph)
    executed = run_graph(lowered, AMX, machine=m, keep=None)
    ran = run_graph(lowered, AMX, native=True, machine=m, keep=None)
    assert np.array_equal(ran["linear"], executed["linear"])


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    return save_bert(tmp_path_factory.mktemp("amx") / "tiny", 0, hidden_size=64, num_hidden_layers=1,
                     num_attention_heads=2, intermediate_size=128, vocab_size=100, max_position_embeddings=64)


def test_amx_on_the_command_line(capsys, tiny):
    import json

    code, out, err = cli(capsys, "trace", str(tiny), "--seq", "8", "--target", "amx")
    assert code == 2 and "not float32: add --precision int8 or --precision bf16" in err
    assert len(err.strip().splitlines()) == 1
    code, out, err = cli(capsys, "trace", str(tiny), "--seq", "8", "--format", "csv")
    assert code == 0 and ",amx," not in out and "amx" not in err  # float32 reports leave it out, silently
    code, out, err = cli(capsys, "check", str(tiny), "--seq", "8", "--target", "amx", "--precision", "int8",
                         "--format", "json", "--jobs", "1")
    assert code == 0, err
    t = json.loads(out)["targets"][0]
    assert t["target"] == "amx" and t["passed"] and t["ops_exact"] and t["counts_match_cost_model"]
