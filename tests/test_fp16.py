"""--precision fp16 on the GPU's tensor cores: mma.m16n8k16 fragments as the PTX ISA lays them out, the
linear layer's bits equal to models/fp16.py's reference in both executors, ptxas's verdict, the CPU targets
refused, and the check of a model."""

from __future__ import annotations

import re
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
from isasim.isa.simt_cost import memory_costs, registers
from isasim.isa.targets import GPU_TARGETS
from isasim.lowering.isel_simt_gemm import gemm_shape, merged_rows
from isasim.lowering.isel_simt_mma import MmaBuilder, matmul_shape, mma_shape
from isasim.lowering.mma_layout import TILES
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


@settings(max_examples=16, deadline=None)
@given(m=st.integers(1, 200), n32=st.integers(1, 9), k16=st.integers(1, 8), seed=st.integers(0, 99),
       half_out=st.booleans(), bm=st.sampled_from(TILES), narrow=st.booleans())
@example(m=128, n32=4, k16=2, seed=0, half_out=False, bm=128, narrow=False)  # whole 128 x 128 tiles: no row guard
@example(m=1, n32=3, k16=1, seed=1, half_out=True, bm=128, narrow=False)  # one row (the pooler); N = 96: 32 columns
@example(m=130, n32=2, k16=3, seed=2, half_out=True, bm=128, narrow=False)  # a second row of tiles with two rows
@example(m=64, n32=4, k16=7, seed=3, half_out=True, bm=128, narrow=False)  # 7 slices: two trips of the loop, one more
@example(m=70, n32=4, k16=3, seed=4, half_out=True, bm=32, narrow=True)  # 32 x 32 tiles: one mma per warp
@example(m=100, n32=2, k16=4, seed=5, half_out=False, bm=64, narrow=False)  # 64-row tiles, the last one guarded
def test_the_tensor_core_linear_is_the_reference_bit_for_bit_in_both_executors(m, n32, k16, seed, half_out, bm,
                                                                                narrow):
    """Every block tile (BM rows of 128, 64 or 32; BN columns the largest that divides N, or 32)."""
    rng = np.random.default_rng(seed)
    n, k = 32 * n32, 16 * k16
    x = rng.standard_normal((m, k)).astype(np.float32)
    w = rng.standard_normal((n, k)).astype(np.float32)
    bias = rng.standard_normal(n).astype(np.float32)
    g = fp16_linear_graph(x, w, bias, half_out)
    (kernel,) = lower_graph(g).kernels
    prog = MmaBuilder(kernel, SIMT, mma_shape(kernel), bm, 32 if narrow else None).build()
    assert any(i.prim is Prim.MMA_F16 for i in _instrs(prog.body)) and f"{bm}x" in prog.launch.strategy
    want = linear_fp16(x, g.values["w"], bias).astype(np.float16 if half_out else np.float32)
    storages = {name: np.ascontiguousarray(v).reshape(-1) for name, v in g.values.items()}
    assert_both_executors_give(prog, storages, want)


def assert_both_executors_give(prog, storages: dict, want: np.ndarray) -> None:
    """The grid executor and the stepped one write `want` to "out", bit for bit; each counts the instructions
    the cost model counts, and both count the same sectors, wavefronts and requests (cp.async and ldmatrix
    included), which the cost model's closed forms count too."""
    backend = backend_for(SIMT)
    counted = []
    for run in (backend.execute, backend.step):
        mem = load_memory(prog, storages)
        counted.append(run(prog, mem, A100))
        assert mem.read("out").tobytes() == want.reshape(-1).tobytes()
        assert dict(counted[-1].instructions) == backend.counts(prog, A100)
    first, second = counted
    keys = ("sectors", "global_requests", "wavefronts", "shared_requests", "thread_instructions")
    assert [getattr(first, k) for k in keys] == [getattr(second, k) for k in keys]
    m = memory_costs(prog, A100)
    assert (m.sectors, m.global_requests, m.wavefronts, m.shared_requests, m.thread_bytes) == \
        (first.sectors, first.global_requests, first.wavefronts, first.shared_requests,
         first.bytes_loaded + first.bytes_stored)



def test_a_batch_1_layer_gets_the_block_tile_the_cost_model_finds_fastest():
    """bert-base's batch-1 query layer (128 x 768 x 768): 128-row tiles make 6 blocks for 108 SMs; the GPU's
    choice is the fastest of every tile the layer allows, costed, and runs many more blocks."""
    from isasim.isa.simt_cost import cost_simt

    rng = np.random.default_rng(6)
    x, w = rng.standard_normal((128, 768)).astype(np.float32), rng.standard_normal((768, 768)).astype(np.float32)
    (kernel,) = lower_graph(fp16_linear_graph(x, w, np.zeros(768, np.float32), True)).kernels
    chosen = backend_for(SIMT).select(kernel, SIMT, A100)
    every = {(bm, bn): cost_simt(MmaBuilder(kernel, SIMT, mma_shape(kernel), bm, bn).build(), A100).cycles
             for bm in TILES for bn in TILES}
    assert cost_simt(chosen, A100).cycles == min(every.values()) < every[128, 128]
    assert chosen.launch.grid >= 48 and every[128, 128] > 1.5 * min(every.values())

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


def attention_matmul_graph(a: np.ndarray, b: np.ndarray, b_rows: bool) -> Graph:
    """out[i, h] = A[i, h] @ B[i, h] as --precision fp16 runs attention's matmuls: both operands fp16 activations
    (copies of the inputs), B either held [K, N] (the values: b_rows) or [N, K] and transposed (the keys)."""
    f32 = DType.F32
    batch, (m, k) = a.shape[:-2], a.shape[-2:]
    n = b.shape[-1] if b_rows else b.shape[-2]
    ph = (Placeholder("a", PlaceholderKind.INPUT, TensorMeta(a.shape, f32), "a"),
          Placeholder("b", PlaceholderKind.INPUT, TensorMeta(b.shape, f32), "b"))
    nodes = [Node("ah", "aten.clone.default", (Ref("a"),), (), (TensorMeta(a.shape, f32),), "t"),
             Node("bh", "aten.clone.default", (Ref("b"),), (), (TensorMeta(b.shape, f32),), "t")]
    right = Ref("bh")
    if not b_rows:
        nodes.append(Node("bt", "aten.transpose.int", (Ref("bh"), -1, -2), (), (TensorMeta(batch + (k, n), f32),),
                          "t"))
        right = Ref("bt")
    nodes.append(Node("out", "aten.matmul.default", (Ref("ah"), right), (), (TensorMeta(batch + (m, n), f32),), "t"))
    return Graph("test", ph, tuple(nodes), (Ref("out"),), {"a": a, "b": b}, {"precision": "fp16"})


@settings(max_examples=12, deadline=None)
@given(heads=st.integers(1, 3), m=st.integers(32, 140), n32=st.integers(1, 4), k16=st.integers(1, 5),
       b_rows=st.booleans(), seed=st.integers(0, 99), tile=st.sampled_from([None] + [(r, 32) for r in TILES]))
@example(heads=2, m=128, n32=4, k16=4, b_rows=False, seed=0, tile=None)  # attention's scores: Q [s, d] by K^T
@example(heads=2, m=128, n32=2, k16=8, b_rows=True, seed=1, tile=None)  # its context: P [s, s] by V [s, d]
@example(heads=1, m=45, n32=1, k16=5, b_rows=True, seed=2, tile=None)  # .x2.trans; rows past M; a loop and a rest
@example(heads=2, m=70, n32=2, k16=3, b_rows=True, seed=3, tile=(32, 32))  # 32 x 32 tiles, matrix after matrix
def test_attention_matmuls_run_on_tensor_cores_bit_for_bit_as_float32_fmas(heads, m, n32, k16, b_rows, seed, tile):
    """fp16 operands: the tensor-core GEMM's sums equal float32 FMAs over k in order (each fp16 product is
    exact), in both executors, with ldmatrix.trans where B is held [K, N]; with the tile the A100 is given
    (None), or a block tile of BM rows and 32 columns."""
    rng = np.random.default_rng(seed)
    n, k = 32 * n32, 16 * k16
    a = rng.standard_normal((2, heads, m, k)).astype(np.float32)
    b = rng.standard_normal((2, heads, k, n) if b_rows else (2, heads, n, k)).astype(np.float32)
    lowered = lower_graph(attention_matmul_graph(a, b, b_rows))
    kernel = lowered.kernels[-1]
    prog = backend_for(SIMT).select(kernel, SIMT, A100)
    if tile is not None:
        kernel = merged_rows(kernel)
        prog = MmaBuilder(kernel, SIMT, matmul_shape(kernel, gemm_shape(kernel)), *tile).build()
    ops = {i.prim for i in _instrs(prog.body)}
    assert Prim.MMA_F16 in ops and (Prim.LDMATRIX_T in ops) == b_rows
    ah, bh = a.astype(np.float16), b.astype(np.float16)
    right = (bh if b_rows else np.swapaxes(bh, -1, -2)).astype(np.float32)
    acc = np.zeros((2, heads, m, n), np.float32)
    for kk in range(k):  # float32 FMAs in k order: exact products, one rounding per sum
        acc = acc + ah[..., :, kk, None].astype(np.float32) * right[..., kk, None, :]
    storages = {"ah": ah.reshape(-1), "bh": bh.reshape(-1)}
    assert_both_executors_give(prog, storages, acc.astype(np.float16))


@pytest.mark.skipif(shutil.which("ptxas") is None, reason="ptxas (CUDA) is not installed")
@pytest.mark.parametrize("gpu", gpu_names())
@pytest.mark.parametrize("b_rows", [False, True])
def test_ptxas_accepts_the_attention_matmuls_on_tensor_cores(gpu, b_rows, tmp_path):
    rng = np.random.default_rng(4)
    a = rng.standard_normal((1, 2, 40, 32)).astype(np.float32)
    b = rng.standard_normal((1, 2, 32, 64) if b_rows else (1, 2, 64, 32)).astype(np.float32)
    kernel = lower_graph(attention_matmul_graph(a, b, b_rows)).kernels[-1]
    machine = load_gpu(gpu)
    prog = backend_for(SIMT).select(kernel, SIMT, machine)
    r = subprocess.run(["ptxas", f"-arch={machine.ptx_target}", "-v", "-", "-o", str(tmp_path / "k.cubin")],
                       input=emit_ptx(prog, machine), capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    used = int(re.search(r"Used (\d+) registers", r.stdout + r.stderr).group(1))
    assert used / 2 <= registers(prog) <= 2 * used


def finite_halves(rng, shape) -> np.ndarray:
    """Random fp16 bit patterns, every finite one as likely (subnormals, zeros of both signs and values near
    65504 included), as float32 values that fp16 holds exactly."""
    bits = rng.integers(0, 1 << 16, size=shape, dtype=np.uint32).astype(np.uint16)
    bits = np.where((bits & 0x7C00) == 0x7C00, bits & 0x83FF, bits)  # no infinities or NaNs: exponent 31 -> 0
    return bits.view(np.float16).astype(np.float32)


# (aten op, second operand: a tensor or a constant, the paired instruction or None where float32 must be kept)
PAIR_OPS = {"add": ("aten.add.Tensor", "y", "add.rn.f16x2"), "sub": ("aten.sub.Tensor", "y", "sub.rn.f16x2"),
            "mul": ("aten.mul.Tensor", "y", "mul.rn.f16x2"), "scale": ("aten.mul.Tensor", 0.125, "mul.rn.f16x2"),
            "inexact scale": ("aten.mul.Tensor", 0.1, None), "copy": ("aten.clone.default", None, None)}


@settings(max_examples=20, deadline=None)
@given(rows=st.integers(1, 40), half=st.integers(1, 70), op=st.sampled_from(sorted(PAIR_OPS)),
       broadcast=st.sampled_from(["none", "row", "column"]), seed=st.integers(0, 99))
@example(rows=3, half=5, op="mul", broadcast="row", seed=0)
@example(rows=3, half=5, op="add", broadcast="column", seed=1)  # one element in both halves: prmt.b32
@example(rows=2, half=3, op="scale", broadcast="none", seed=2)  # 0.125 in both halves: mov.b32
@example(rows=2, half=3, op="inexact scale", broadcast="none", seed=3)  # 0.1 is no fp16: float32, then round
@example(rows=2, half=3, op="copy", broadcast="none", seed=4)  # two elements' bits in one load and one store
def test_fp16_elementwise_ops_run_a_thread_per_pair_with_the_same_bits(rows, half, op, broadcast, seed):
    """An fp16 output's elementwise op, two neighbours a thread and one 32-bit store, equals a thread per
    element (each element computed in float32, then rounded to nearest even) in both executors; counts agree.
    One add, subtract or multiply of fp16 operands, and a copy, run on .f16x2 registers with no conversion."""
    from isasim.lowering.isel_simt_pairs import half_pairs
    from isasim.lowering.select import select_elementwise

    aten, other, paired_mn = PAIR_OPS[op]
    rng = np.random.default_rng(seed)
    n = 2 * half
    x = finite_halves(rng, (rows, n))
    y = finite_halves(rng, {"none": (rows, n), "row": (1, n), "column": (rows, 1)}[broadcast])
    f32 = DType.F32
    ph = (Placeholder("x", PlaceholderKind.INPUT, TensorMeta(x.shape, f32), "x"),
          Placeholder("y", PlaceholderKind.INPUT, TensorMeta(y.shape, f32), "y"))
    args = (Ref("xh"),) + ((Ref("yh"),) if other == "y" else () if other is None else (other,))
    nodes = (Node("xh", "aten.clone.default", (Ref("x"),), (), (TensorMeta(x.shape, f32),), "t"),
             Node("yh", "aten.clone.default", (Ref("y"),), (), (TensorMeta(y.shape, f32),), "t"),
             Node("out", aten, args, (), (TensorMeta(x.shape, f32),), "t"))
    g = Graph("test", ph, nodes, (Ref("out"),), {"x": x, "y": y}, {"precision": "fp16"})
    kernel = lower_graph(g).kernels[-1]
    backend = backend_for(SIMT)
    paired = backend.select(kernel, SIMT, A100)
    single = select_elementwise(kernel, SIMT, A100)
    assert half_pairs(kernel) is not None and "pair" in paired.launch.strategy and "pair" not in single.launch.strategy
    used = {i.mnemonic for i in _instrs(paired.body)}
    if paired_mn or op == "copy":  # no conversion: the halves are computed (or moved) as fp16
        assert not any(m.startswith("cvt.") and "f16" in m for m in used), used
        assert paired_mn is None or paired_mn in used
    else:
        assert "cvt.rn.f16x2.f32" in used and not any(m.endswith(".f16x2") and "cvt" not in m for m in used)
    xh, yh = x.astype(np.float16), y.astype(np.float16)
    value = {"add": lambda a, b: a + b, "sub": lambda a, b: a - b, "mul": lambda a, b: a * b,
             "scale": lambda a, b: a * np.float32(0.125), "inexact scale": lambda a, b: a * np.float32(0.1),
             "copy": lambda a, b: a}[op]
    with np.errstate(over="ignore"):  # (finite fp16 operands may round to infinity, as PyTorch's do)
        want = value(xh.astype(np.float32), yh.astype(np.float32)).astype(np.float16)
    storages = {"xh": xh.reshape(-1), "yh": yh.reshape(-1)}
    for prog in (paired, single):
        assert_both_executors_give(prog, storages, want)


@pytest.mark.skipif(shutil.which("ptxas") is None, reason="ptxas (CUDA) is not installed")
@pytest.mark.parametrize("gpu", gpu_names())
def test_ptxas_accepts_paired_fp16_arithmetic(gpu, tmp_path):
    """add.rn.f16x2 on two 32-bit loads, sub.rn.f16x2 on a prmt.b32 broadcast, mul.rn.f16x2 by a mov.b32
    constant: each kernel assembles for the GPU's architecture."""
    rng = np.random.default_rng(5)
    machine = load_gpu(gpu)
    f32 = DType.F32
    for aten, shape, other in (("aten.add.Tensor", (1, 8), "y"), ("aten.sub.Tensor", (3, 1), "y"),
                               ("aten.mul.Tensor", (1, 8), 0.125)):
        x, y = finite_halves(rng, (3, 8)), finite_halves(rng, shape)
        ph = (Placeholder("x", PlaceholderKind.INPUT, TensorMeta(x.shape, f32), "x"),
              Placeholder("y", PlaceholderKind.INPUT, TensorMeta(y.shape, f32), "y"))
        nodes = (Node("xh", "aten.clone.default", (Ref("x"),), (), (TensorMeta(x.shape, f32),), "t"),
                 Node("yh", "aten.clone.default", (Ref("y"),), (), (TensorMeta(y.shape, f32),), "t"),
                 Node("out", aten, (Ref("xh"), Ref("yh") if other == "y" else other), (),
                      (TensorMeta(x.shape, f32),), "t"))
        g = Graph("test", ph, nodes, (Ref("out"),), {"x": x, "y": y}, {"precision": "fp16"})
        prog = backend_for(SIMT).select(lower_graph(g).kernels[-1], SIMT, machine)
        ptx = emit_ptx(prog, machine)
        assert ".f16x2 " in ptx
        r = subprocess.run(["ptxas", f"-arch={machine.ptx_target}", "-", "-o", str(tmp_path / "k.cubin")],
                           input=ptx, capture_output=True, text=True)
        assert r.returncode == 0, r.stderr
