"""--precision int8 on the GPU's tensor cores: mma.m16n8k32 .s8 fragments as the PTX ISA lays them out, the
int8 linear layer's accumulators exact in both executors, the quantization ops bit-identical to their numpy
reference, ptxas's verdict, and the check of a model."""

from __future__ import annotations

import shutil
import subprocess

import numpy as np
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st
from test_bf16_simt import A100, run_both
from test_fp16 import SIMT, _instrs, tiny_folder  # noqa: F401 (a fixture)
from test_int8 import accumulator_graph, linear_graph
from tiny import cli

from isasim import api
from isasim.backends import backend_for
from isasim.engine.run import run_graph
from isasim.isa import mma
from isasim.isa.emit_ptx import emit_ptx
from isasim.isa.gpu import gpu_names, load_gpu
from isasim.isa.semantics import Prim
from isasim.isa.simt_cost import registers
from isasim.lowering.isel_simt_mma import MmaBuilder, mma_shape
from isasim.lowering.mma_layout import TILES
from isasim.lowering.pipeline import lower_graph, materialize
from isasim.models.graph import Ref
from isasim.models.quantize import accumulators, quantize_graph, reference_op


def quad(values) -> int:
    """Four int8, the first in the lowest byte, as one 32-bit register."""
    return int.from_bytes(np.asarray(values, np.int8).tobytes(), "little")


@settings(max_examples=20, deadline=None)
@given(seed=st.integers(0, 10_000))
def test_the_int8_mma_reads_its_fragments_as_the_ptx_isa_lays_them_out(seed):
    """Written element by element from the PTX ISA's m16n8k32 .s8 tables, independently of isa/mma.py:
    a_i at row g (+ 8 for a4..a7 and a12..a15), column 4t + (i % 4) (+ 16 from a8); b_i at row 4t + (i % 4)
    (+ 16 from b4), column g; c_i at row g (+ 8 from c2), column 2t + (i % 2)."""
    rng = np.random.default_rng(seed)
    a = rng.integers(-128, 128, (16, 32))
    b = rng.integers(-128, 128, (32, 8))
    c = rng.integers(-2**20, 2**20, (16, 8))
    regs_a, regs_b, regs_c = np.zeros((4, 32), np.int64), np.zeros((2, 32), np.int64), np.zeros((4, 32), np.int64)
    for lane in range(32):
        g, t = lane >> 2, lane % 4
        for r in range(4):
            regs_a[r, lane] = quad([a[g + 8 * (r % 2), 4 * t + 16 * (r // 2) + i] for i in range(4)])
        for r in range(2):
            regs_b[r, lane] = quad([b[4 * t + 16 * r + i, g] for i in range(4)])
        for i in range(4):
            regs_c[i, lane] = c[g + 8 * (i >= 2), 2 * t + (i & 1)]
    d = mma.mma_m16n8k32_s8(list(regs_a), list(regs_b), list(regs_c))
    got = np.zeros((16, 8), np.int64)
    for lane in range(32):
        for i in range(4):
            got[(lane >> 2) + 8 * (i >= 2), (lane % 4) * 2 + (i & 1)] = d[i][lane]
    assert np.array_equal(got, a @ b + c)


@settings(max_examples=10, deadline=None)
@given(m=st.integers(1, 200), n32=st.integers(1, 9), k32=st.integers(1, 4), seed=st.integers(0, 99),
       bm=st.sampled_from(TILES))
@example(m=128, n32=4, k32=2, seed=0, bm=128)  # whole 128 x 128 tiles: no row guard
@example(m=1, n32=3, k32=1, seed=1, bm=32)  # one row (the pooler); 32-column tiles
@example(m=130, n32=2, k32=3, seed=2, bm=128)  # a second row of tiles with two rows; 64-column tiles
@example(m=70, n32=4, k32=2, seed=3, bm=64)  # 64-row tiles, the second guarded
def test_the_int8_tensor_core_accumulators_are_exact_in_both_executors(m, n32, k32, seed, bm):
    rng = np.random.default_rng(seed)
    xq = rng.integers(0, 128, (m, 32 * k32), dtype=np.uint8)  # 7-bit activations, as quantize_u7 makes them
    packed = rng.integers(-127, 128, (8 * k32, 32 * n32, 4), dtype=np.int8)
    graph = accumulator_graph(xq, packed)
    (kernel,) = lower_graph(graph).kernels
    prog = MmaBuilder(kernel, SIMT, mma_shape(kernel), bm).build()  # (every block tile's rows)
    assert any(i.prim is Prim.MMA_S8 for i in _instrs(prog.body))
    first, again = run_both(prog, {name: np.ascontiguousarray(v).reshape(-1) for name, v in graph.values.items()})
    want = accumulators(xq, packed).astype(np.float32)  # below 2^24: float(acc) is acc
    assert first["acc"].tobytes() == want.reshape(-1).tobytes() == again["acc"].tobytes()


@pytest.mark.parametrize("n, bias", [(96, True), (96, False), (2, True)])
def test_a_quantized_linear_on_simt_equals_its_numpy_reference_op_by_op(n, bias):
    """minmax_rows (a warp per row), quant_params, quantize_u7 and linear_int8 (the tensor cores; a layer of 2
    outputs, a classifier's, byte by byte), each from the inputs the executor gave it."""
    rng = np.random.default_rng(3)
    x = (rng.standard_normal((2, 5, 64)) * 3 + 0.5).astype(np.float32)
    w = rng.standard_normal((n, 64)).astype(np.float32) * 0.1
    graph = quantize_graph(linear_graph(x, w, rng.standard_normal(n).astype(np.float32) if bias else None))
    lowered = lower_graph(graph)
    linear = backend_for(SIMT).select(lowered.kernels[-1], SIMT, A100)
    assert any(i.prim is Prim.MMA_S8 for i in _instrs(linear.body)) == (n == 96)
    storages = run_graph(lowered, SIMT, machine=A100)
    for node in graph.nodes:
        inputs = [materialize(lowered.context.views[a], storages) for a in node.args]
        got = materialize(lowered.context.views[Ref(node.name)], storages)
        assert np.array_equal(got, reference_op(node, inputs).reshape(got.shape)), node.op
    y = materialize(lowered.context.views[Ref("linear")], storages)
    want = x @ w.T + (graph.values["w_int8_epilogue"][2] if bias else 0)
    assert np.abs(y - want).max() < 0.05 * np.abs(want).max()  # the quantization error, not a wrong answer


@pytest.mark.skipif(shutil.which("ptxas") is None, reason="ptxas (CUDA) is not installed")
@pytest.mark.parametrize("gpu", gpu_names())
def test_ptxas_accepts_the_int8_kernels(gpu, tmp_path):
    rng = np.random.default_rng(4)
    machine = load_gpu(gpu)
    kernels = []
    for n in (96, 2):  # the tensor cores; a classifier's two outputs, byte by byte
        graph = quantize_graph(linear_graph(rng.standard_normal((150, 64)).astype(np.float32),
                                            rng.standard_normal((n, 64)).astype(np.float32), None))
        kernels += lower_graph(graph).kernels
    for kernel in kernels:
        prog = backend_for(SIMT).select(kernel, SIMT, machine)
        r = subprocess.run(["ptxas", f"-arch={machine.ptx_target}", "-v", "-", "-o", str(tmp_path / "k.cubin")],
                           input=emit_ptx(prog, machine), capture_output=True, text=True)
        assert r.returncode == 0, (kernel.name, r.stderr)
        used = int((r.stderr + r.stdout).split("Used ")[1].split(" registers")[0])
        assert used / 2 <= registers(prog) <= 2 * used, (kernel.name, used, registers(prog))


def test_check_in_int8_on_simt_holds_every_quantization_op_to_its_reference(tiny_folder):  # noqa: F811
    report = api.check(str(tiny_folder), seq=20, targets=["simt"], precision="int8")
    (t,) = report.targets
    assert report.precision == "int8" and t.passed and t.counts_match_cost_model
    # 13 linear layers, and the minmax, params and quantize of their 9 distinct inputs
    assert t.ops_exact and t.ops_checked == 13 + 3 * 9
    assert 0 < t.max_abs_err_fp32 < 0.5


def test_int8_traces_on_simt_next_to_the_cpu_targets(capsys, tiny_folder):  # noqa: F811
    code, out, err = cli(capsys, "trace", str(tiny_folder), "--seq", "16", "--precision", "int8", "--format", "csv")
    assert code == 0, err
    assert any(line.startswith("simt,") and "isasim.linear_int8" in line for line in out.splitlines())
    assert "simt left out" not in err
