"""--precision fp16 on the GPU's tensor cores: mma.m16n8k16 fragments as the PTX ISA lays them out, the
linear layer's bits equal to models/fp16.py's reference in both executors, ptxas's verdict, the CPU targets
refused, and the check of a model."""

from __future__ import annotations

import shutil
import subprocess

import numpy as np
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st
from tiny import cli, save_bert

from isasim import api
from isasim.backends import backend_for
from isasim.backends.base import load_memory
from isasim.isa import mma
from isasim.isa.dtype import DType
from isasim.isa.emit_ptx import emit_ptx
from isasim.isa.gpu import gpu_names, load_gpu
from isasim.isa.semantics import Prim
from isasim.isa.simt_cost import registers
from isasim.isa.targets import GPU_TARGETS
from isasim.lowering.pipeline import lower_graph
from isasim.models.fp16 import linear_fp16
from isasim.models.graph import Graph, Node, Placeholder, PlaceholderKind, Ref, TensorMeta

SIMT = GPU_TARGETS["simt"]
A100 = load_gpu("a100")


def fragments_by_hand(a, b, c, pack=mma.pack_f16x2):
    """The registers of each lane, element by element as the PTX ISA's fragment tables list them (written
    independently of isa/mma.py's vectorised form): a_i, b_i and c_i with row and column per lane; `pack`
    makes a register of two elements (hi, lo)."""
    regs_a, regs_b, regs_c = np.zeros((4, 32), np.int64), np.zeros((2, 32), np.int64), np.zeros((4, 32), np.float32)
    for lane in range(32):
        group, pair = lane >> 2, lane % 4
        elems = []  # a0..a7: rows group (a0, a1, a4, a5) or group + 8; columns 2 pair + (0, 1), + 8 from a4
        for i in range(8):
            row = group + 8 if i in (2, 3, 6, 7) else group
            col = pair * 2 + (i & 1) + (8 if i >= 4 else 0)
            elems.append(a[row, col])
        for r in range(4):
            regs_a[r, lane] = int(pack(elems[2 * r + 1], elems[2 * r]))
        for r in range(2):  # b0..b3: rows (k) 2 pair + (0, 1), + 8 from b2; column group
            k = pair * 2 + 8 * r
            regs_b[r, lane] = int(pack(b[k + 1, group], b[k, group]))
        for i in range(4):  # c0..c3: row group (+ 8 from c2), column 2 pair + (0, 1)
            regs_c[i, lane] = c[group + 8 * (i >= 2), pair * 2 + (i & 1)]
    return list(regs_a), list(regs_b), list(regs_c)


@settings(max_examples=20, deadline=None)
@given(seed=st.integers(0, 10_000))
def test_mma_reads_and_writes_its_fragments_as_the_ptx_isa_lays_them_out(seed):
    rng = np.random.default_rng(seed)
    a = rng.standard_normal((16, 16)).astype(np.float16).astype(np.float32)
    b = rng.standard_normal((16, 8)).astype(np.float16).astype(np.float32)
    c = rng.standard_normal((16, 8)).astype(np.float32)
    d = mma.mma_m16n8k16(*fragments_by_hand(a, b, c))
    want = c.copy()
    for k in range(16):  # isasim's order: k by k, each product exact, each sum rounded
        want = want + a[:, k, None] * b[None, k, :]
    got = np.zeros((16, 8), np.float32)
    for lane in range(32):
        for i in range(4):
            got[(lane >> 2) + 8 * (i >= 2), (lane % 4) * 2 + (i & 1)] = d[i][lane]
    assert got.tobytes() == want.tobytes()
    np.testing.assert_allclose(got, a.astype(np.float64) @ b + c, rtol=1e-5, atol=1e-5)


def fp16_linear_graph(x: np.ndarray, w: np.ndarray, bias: np.ndarray, half_out: bool = False) -> Graph:
    """x @ w^T + bias as --precision fp16 runs it: x an fp16 activation; the output float32, or (half_out) in
    fp16 as the graphs of models/fp16.py store every activation."""
    n, k = w.shape
    wh = w.astype(np.float16)
    ph = (Placeholder("x", PlaceholderKind.INPUT, TensorMeta(x.shape, DType.F16), "x"),  # an fp16 activation
          Placeholder("w", PlaceholderKind.CONSTANT, TensorMeta((n, k), DType.F16), "w"),
          Placeholder("b", PlaceholderKind.INPUT, TensorMeta((n,), DType.F32), "b"))
    node = Node("out", "isasim.linear_fp16", (Ref("x"), Ref("w"), Ref("b")), (),
                (TensorMeta(x.shape[:-1] + (n,), DType.F32),), "test")
    return Graph("test", ph, (node,), (Ref("out"),), {"x": x.astype(np.float16), "w": wh, "b": bias},
                 {"precision": "fp16"} if half_out else {})


@settings(max_examples=12, deadline=None)
@given(m=st.integers(1, 200), n32=st.integers(1, 9), k16=st.integers(1, 8), seed=st.integers(0, 99),
       half_out=st.booleans())
@example(m=128, n32=4, k16=2, seed=0, half_out=False)  # whole 128 x 128 tiles: no row guard
@example(m=1, n32=3, k16=1, seed=1, half_out=True)  # one row (the pooler); N = 96: 32-column tiles
@example(m=130, n32=2, k16=3, seed=2, half_out=True)  # a second row of tiles with two rows; 64-column tiles
@example(m=64, n32=4, k16=7, seed=3, half_out=True)  # 7 slices: two trips of the 3-stage loop, then one more
def test_the_tensor_core_linear_is_the_reference_bit_for_bit_in_both_executors(m, n32, k16, seed, half_out):
    rng = np.random.default_rng(seed)
    n, k = 32 * n32, 16 * k16
    x = rng.standard_normal((m, k)).astype(np.float32)
    w = rng.standard_normal((n, k)).astype(np.float32)
    bias = rng.standard_normal(n).astype(np.float32)
    g = fp16_linear_graph(x, w, bias, half_out)
    (kernel,) = lower_graph(g).kernels
    backend = backend_for(SIMT)
    prog = backend.select(kernel, SIMT, A100)
    assert any(i.prim is Prim.MMA_F16 for i in _instrs(prog.body))
    want = linear_fp16(x, g.values["w"], bias).astype(np.float16 if half_out else np.float32)
    storages = {name: np.ascontiguousarray(v).reshape(-1) for name, v in g.values.items()}
    outs = []
    for run in (backend.execute, backend.step):
        mem = load_memory(prog, storages)
        events = run(prog, mem, A100)
        outs.append(mem.read("out"))
        assert dict(events.instructions) == backend.counts(prog, A100)
    assert outs[0].tobytes() == want.reshape(-1).tobytes()
    assert outs[1].tobytes() == outs[0].tobytes()


def _instrs(items):
    for it in items:
        if hasattr(it, "body"):
            yield from _instrs(it.body)
            yield from it.latch
        else:
            yield it


@pytest.mark.skipif(shutil.which("ptxas") is None, reason="ptxas (CUDA) is not installed")
@pytest.mark.parametrize("gpu", gpu_names())
def test_ptxas_accepts_the_tensor_core_kernels(gpu, tmp_path):
    rng = np.random.default_rng(3)
    x, w, b = (rng.standard_normal(s).astype(np.float32) for s in ((150, 48), (96, 48), (96,)))
    (kernel,) = lower_graph(fp16_linear_graph(x, w, b)).kernels
    machine = load_gpu(gpu)
    prog = backend_for(SIMT).select(kernel, SIMT, machine)
    r = subprocess.run(["ptxas", f"-arch={machine.ptx_target}", "-v", "-", "-o", str(tmp_path / "k.cubin")],
                       input=emit_ptx(prog, machine), capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    used = int(r.stderr.split("Used ")[1].split(" registers")[0]) if "Used " in r.stderr else \
        int(r.stdout.split("Used ")[1].split(" registers")[0])
    assert used / 2 <= registers(prog) <= 2 * used


def test_a_cpu_target_is_refused_in_fp16_and_left_out_of_every_target(capsys):
    code, out, err = cli(capsys, "trace", "bert-base", "--seq", "16", "--precision", "fp16", "--target", "avx2")
    assert code != 0 and err.count("\n") == 1 and "no fp16 lowering" in err and "--target simt" in err
    code, out, err = cli(capsys, "trace", "bert-base", "--seq", "16", "--precision", "fp16")
    assert code == 0 and "simt" in out and "avx2 left out" in err + out


@pytest.fixture(scope="module")
def tiny_folder(tmp_path_factory):
    return save_bert(tmp_path_factory.mktemp("tiny-fp16"), 4, hidden_size=32, num_hidden_layers=2,
                     num_attention_heads=4, intermediate_size=64, vocab_size=100, max_position_embeddings=40)


def test_check_in_fp16_holds_every_linear_to_its_reference_and_the_output_near_float32(tiny_folder):
    report = api.check(str(tiny_folder), seq=20, targets=["simt"], precision="fp16")
    (t,) = report.targets
    assert report.precision == "fp16" and t.passed and t.counts_match_cost_model
    assert t.ops_exact and t.ops_checked == 13  # Q, K, V, out, FFN up and down in 2 layers, and the pooler
    assert 0 < t.max_abs_err_fp32 < 1e-2
