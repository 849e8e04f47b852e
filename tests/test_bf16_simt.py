"""--precision bf16 on the GPU's tensor cores: the .bf16 mma's fragments, the rounding kernel's pairs
(cvt.rn.bf16x2.f32: nearest even, denormals kept), the linear layer bit for bit against models/bf16.py's "mma"
reference in both executors, ptxas's verdict, and the check of a model."""

from __future__ import annotations

import shutil
import subprocess

import numpy as np
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st
from test_fp16 import SIMT, _instrs, fragments_by_hand, tiny_folder  # noqa: F401 (a fixture)
from test_int8 import linear_graph
from tiny import cli

from isasim import api
from isasim.backends import backend_for
from isasim.backends.base import load_memory
from isasim.isa import bfloat16, mma
from isasim.isa.emit_ptx import emit_ptx
from isasim.isa.gpu import gpu_names, load_gpu
from isasim.isa.semantics import Prim
from isasim.isa.simt_cost import memory_costs, registers
from isasim.lowering.isel_simt_mma import MmaBuilder, mma_shape
from isasim.lowering.mma_layout import TILES
from isasim.lowering.pipeline import lower_graph
from isasim.models.bf16 import bf16_graph, reference_op
from isasim.models.graph import Ref

A100 = load_gpu("a100")
F32 = np.float32


def to_bf16_values(x: np.ndarray) -> np.ndarray:
    return bfloat16.from_bf16(bfloat16.to_bf16(np.asarray(x, F32)))


@settings(max_examples=20, deadline=None)
@given(seed=st.integers(0, 10_000))
def test_the_bf16_mma_reads_its_fragments_as_the_ptx_isa_lays_them_out(seed):
    """One fragment layout for .f16 and .bf16 (PTX ISA, mma.m16n8k16): bf16 pairs in the same places."""
    rng = np.random.default_rng(seed)
    a = to_bf16_values(rng.standard_normal((16, 16)) * 100)
    b = to_bf16_values(rng.standard_normal((16, 8)))
    c = rng.standard_normal((16, 8)).astype(F32)
    d = mma.mma_m16n8k16(*fragments_by_hand(a, b, c, mma.pack_bf16x2), bf16=True)
    want = c.copy()
    for k in range(16):
        want = want + a[:, k, None] * b[None, k, :]
    got = np.zeros((16, 8), F32)
    for lane in range(32):
        for i in range(4):
            got[(lane >> 2) + 8 * (i >= 2), (lane % 4) * 2 + (i & 1)] = d[i][lane]
    assert got.tobytes() == want.tobytes()
    np.testing.assert_allclose(got, a.astype(np.float64) @ b + c, rtol=1e-5, atol=1e-3)


def test_cvt_bf16x2_rounds_to_nearest_even_keeps_denormals_and_puts_its_second_operand_low():
    tie_even, tie_odd = np.uint32(0x3F808000).view(F32), np.uint32(0x3F818000).view(F32)  # exactly halfway
    denormal = np.uint32(0x00012345).view(F32)
    packed = mma.pack_bf16x2(np.array([tie_even, denormal], F32), np.array([tie_odd, -1.0], F32))
    assert [hex(int(v)) for v in packed] == ["0x3f803f82", "0x1bf80"]  # 1.0|1.0234375; denormal kept|-1.0


def bf16_linear(m: int, n: int, k: int, seed: int, scale: float = 1.0):
    rng = np.random.default_rng(seed)
    x = (rng.standard_normal((m, k)) * scale).astype(F32)
    w = rng.standard_normal((n, k)).astype(F32)
    return x, w, rng.standard_normal(n).astype(F32)


def run_both(prog, storages: dict) -> list:
    """Every buffer after the batched executor and after the stepped one, with the counts checked: the
    instructions, and the sectors, requests and wavefronts the cost model's closed forms count."""
    backend, outs = backend_for(SIMT), []
    m = memory_costs(prog, A100)
    for run in (backend.execute, backend.step):
        mem = load_memory(prog, storages)
        events = run(prog, mem, A100)
        assert dict(events.instructions) == backend.counts(prog, A100)
        assert (m.sectors, m.global_requests, m.wavefronts, m.shared_requests, m.thread_bytes) == \
            (events.sectors, events.global_requests, events.wavefronts, events.shared_requests,
             events.bytes_loaded + events.bytes_stored)
        outs.append({b.name: mem.read(b.name) for b in prog.buffers if b.is_output})
    return outs


@settings(max_examples=10, deadline=None)
@given(m=st.integers(1, 200), n32=st.integers(1, 9), k16=st.integers(1, 4), seed=st.integers(0, 99),
       bm=st.sampled_from(TILES))
@example(m=128, n32=4, k16=2, seed=0, bm=128)  # whole 128 x 128 tiles: no row guard
@example(m=1, n32=3, k16=1, seed=1, bm=32)  # one row (the pooler); 32-column tiles
@example(m=130, n32=2, k16=3, seed=2, bm=128)  # a second row of tiles with two rows; 64-column tiles
@example(m=70, n32=4, k16=2, seed=3, bm=64)  # 64-row tiles, the second guarded
def test_the_bf16_rounding_and_tensor_core_linear_are_the_reference_bit_for_bit_in_both_executors(m, n32, k16,
                                                                                                  seed, bm):
    x, w, bias = bf16_linear(m, 32 * n32, 16 * k16, seed, scale=3.0)
    x[0, :3] = [1e-39, -3e-40, np.uint32(0x3F808000).view(F32)]  # denormals kept, a tie to even
    graph = bf16_graph(linear_graph(x, w, bias))
    lowered = lower_graph(graph)
    rounding, linear = lowered.kernels
    backend = backend_for(SIMT)
    values = {name: np.ascontiguousarray(v).reshape(-1) for name, v in graph.values.items()}
    round_prog = backend.select(rounding, SIMT, A100)
    assert any(i.prim is Prim.CVT_BF16X2 for i in _instrs(round_prog.body))
    first, again = run_both(round_prog, values)
    xb = bfloat16.to_bf16(x)  # nearest even, nothing flushed
    (name,) = first
    assert first[name].tobytes() == xb.reshape(-1).tobytes() == again[name].tobytes()
    lin_prog = MmaBuilder(linear, SIMT, mma_shape(linear), bm).build()  # (every block tile's rows)
    assert any(i.prim is Prim.MMA_BF16 for i in _instrs(lin_prog.body))
    first, again = run_both(lin_prog, {**values, name: first[name]})
    node = graph.nodes[-1]
    want = reference_op(node, [xb, graph.values[node.args[1].name], bias], "mma")
    (out,) = first
    assert first[out].tobytes() == want.reshape(-1).tobytes() == again[out].tobytes()


@pytest.mark.skipif(shutil.which("ptxas") is None, reason="ptxas (CUDA) is not installed")
@pytest.mark.parametrize("gpu", gpu_names())
def test_ptxas_accepts_the_bf16_kernels(gpu, tmp_path):
    machine = load_gpu(gpu)
    for kernel in lower_graph(bf16_graph(linear_graph(*bf16_linear(150, 96, 48, 3)))).kernels:
        prog = backend_for(SIMT).select(kernel, SIMT, machine)
        r = subprocess.run(["ptxas", f"-arch={machine.ptx_target}", "-v", "-", "-o", str(tmp_path / "k.cubin")],
                           input=emit_ptx(prog, machine), capture_output=True, text=True)
        assert r.returncode == 0, (kernel.name, r.stderr)
        log = r.stderr + r.stdout
        used = int(log.split("Used ")[1].split(" registers")[0])
        assert used / 2 <= registers(prog) <= 2 * used, (kernel.name, used, registers(prog))


def test_check_in_bf16_on_simt_holds_every_added_op_to_its_reference(tiny_folder):  # noqa: F811
    report = api.check(str(tiny_folder), seq=20, targets=["simt"], precision="bf16")
    (t,) = report.targets
    assert report.precision == "bf16" and t.passed and t.counts_match_cost_model
    # 13 linear layers (Q, K, V, out, FFN up and down in 2 layers, and the pooler) and 9 roundings of their
    # 9 distinct inputs (Q, K and V share one)
    assert t.ops_exact and t.ops_checked == 22
    assert 0 < t.max_abs_err_fp32 < 5e-2


def test_bf16_traces_on_simt_with_the_cpu_targets_and_compares_against_the_tensor_core_peak(capsys,
                                                                                            tiny_folder):  # noqa: F811
    code, out, err = cli(capsys, "trace", str(tiny_folder), "--seq", "16", "--precision", "bf16", "--format", "csv")
    assert code == 0, err
    rows = [line.split(",") for line in out.splitlines()]
    assert {"simt", "avx512", "neon"} <= {r[0] for r in rows}
    assert any(r[0] == "simt" and "isasim.linear_bf16" in r for r in rows)
    code, out, err = cli(capsys, "compare", str(tiny_folder), "--seq", "16", "--precision", "bf16",
                         "--format", "json")
    assert code == 0, err
    assert "simt" in out
    code, out, err = cli(capsys, "trace", str(tiny_folder), "--seq", "16", "--precision", "bf16", "--target",
                         "x86-64")
    assert code != 0 and err.count("\n") == 1 and "simt (tensor cores)" in err


def test_a_linear_layer_narrower_than_a_gpu_tile_stays_float32_for_every_bf16_target(capsys, tmp_path):
    """bf16 converts only layers whose N is a multiple of 32 (a GPU block's narrowest tile), so a model of
    width 48 still runs on every bf16 target, the GPU's included, with its 48-wide layers in float32."""
    from tiny import save_bert

    folder = save_bert(tmp_path / "w48", 0, hidden_size=48, num_hidden_layers=1, num_attention_heads=2,
                       intermediate_size=96, vocab_size=100, max_position_embeddings=64)
    code, out, err = cli(capsys, "trace", str(folder), "--seq", "8", "--precision", "bf16", "--format", "csv")
    assert code == 0, err
    rows = [line.split(",") for line in out.splitlines()]
    assert {"avx512", "neon", "amx", "simt"} <= {r[0] for r in rows}
    simt = {cell for r in rows if r[0] == "simt" for cell in r}
    assert {"isasim.linear_bf16", "aten.linear.default"} <= simt  # the 96-wide layer in bf16, 48-wide ones not
