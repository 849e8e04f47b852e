"""The GPU SIMT target: every BERT op lowers to a kernel that computes what PyTorch computes; the batched
executor equals the stepped per-warp interpreter bit for bit; the cost model's warp instructions, sectors and
bank wavefronts equal what the executor counts from real addresses; the PTX is accepted by ptxas."""

import dataclasses
import re
import shutil
import subprocess

import numpy as np
import pytest
import torch
from hypothesis import example, given, settings
from hypothesis import strategies as st
from oprunner import both_executors, one_op_graph
from tiny import capture_bert

from isasim.backends import backend_for
from isasim.backends.base import load_memory
from isasim.engine.run import run_graph
from isasim.isa import simt_memory
from isasim.isa.emit_ptx import emit_ptx
from isasim.isa.gpu import gpu_names, load_gpu
from isasim.isa.program import walk
from isasim.isa.semantics import Prim
from isasim.isa.simt_cost import cost_simt, memory_costs, occupancy, registers
from isasim.isa.targets import ALL_TARGETS
from isasim.lowering.isel_simt_gemm import REGISTER_TILES, GemmBuilder, gemm_shape
from isasim.lowering.kernel import Const, Reduce
from isasim.lowering.pipeline import lower_graph, materialize
from isasim.lowering.select import select_simt
from isasim.models.graph import Ref

SIMT = ALL_TARGETS["simt"]
A100 = load_gpu("a100")
EXAMPLES = settings(max_examples=5, deadline=None)


def simt_program(kernel, gpu=None):
    return select_simt(kernel, SIMT, gpu)


def run(prog, values: dict, step: bool = False):
    """Run the kernel in the grid executor (or the stepped interpreter): its memory, and what it counted."""
    mem = load_memory(prog, {name: np.ascontiguousarray(v).reshape(-1) for name, v in values.items()})
    backend = backend_for(SIMT)
    return mem, (backend.step if step else backend.execute)(prog, mem, A100)


def checked(graph, want: np.ndarray, atol: float = 1e-5, gpu=None):
    """Run the graph's kernel both ways, on GEMM tiles and grids bigger than tests/test_executors.py's shapes:
    the same bits and warp instructions, and the SIMT-only counts (sectors, wavefronts) the same in both
    executors and in the cost model's closed forms."""
    (kernel,) = lower_graph(graph).kernels
    prog = simt_program(kernel, gpu)
    mb, eb = executors_agree(prog, graph.values)
    np.testing.assert_allclose(mb.read("out").reshape(want.shape), want, rtol=1e-5, atol=atol)
    return prog, eb


def executors_agree(prog, values: dict):
    """Both executors' bits and counts equal, and the cost model's closed forms count the same."""
    (mb, eb), (ms, es) = both_executors(prog, values, "simt")
    assert mb.data.tobytes() == ms.data.tobytes()
    assert eb.instructions == es.instructions == backend_for(SIMT).counts(prog, A100)
    assert (eb.sectors, eb.global_requests, eb.wavefronts, eb.shared_requests, eb.thread_instructions) == \
        (es.sectors, es.global_requests, es.wavefronts, es.shared_requests, es.thread_instructions)
    m = memory_costs(prog, A100)
    assert (m.sectors, m.global_requests, m.wavefronts, m.shared_requests, m.thread_bytes) == \
        (eb.sectors, eb.global_requests, eb.wavefronts, eb.shared_requests, eb.bytes_loaded + eb.bytes_stored)
    return mb, eb


def rand(rng, *shape):
    return rng.standard_normal(shape).astype(np.float32)


@EXAMPLES
@given(m=st.integers(1, 80), n=st.integers(1, 80), k=st.integers(1, 50), seed=st.integers(0, 99))
@example(m=64, n=64, k=16, seed=0)  # whole tiles: no guards
@example(m=37, n=70, k=45, seed=1)  # every edge partial
@example(m=1, n=40, k=33, seed=2)  # the pooler's single row: a warp per output
def test_linear(m, n, k, seed):
    rng = np.random.default_rng(seed)
    x, w, b = rand(rng, m, k), rand(rng, n, k), rand(rng, n)
    g = one_op_graph("aten.linear.default", {"x": x, "w": w, "b": b}, (Ref("x"), Ref("w"), Ref("b")), [(m, n)])
    prog, _ = checked(g, x @ w.T + b, atol=max(1e-5, 2e-6 * k))
    tiled = any(ins.prim is Prim.BARRIER for ins in _instrs(prog))
    assert tiled == (min(m, n) >= 32)


def test_a_linear_over_a_batch_of_short_sequences_is_one_tiled_gemm():
    """A linear layer over [batch, seq, hidden] is one GEMM of batch x seq rows: short sequences still fill
    the tiles. Attention's batched matmul, whose second operand changes with the batch, keeps its batch."""
    rng = np.random.default_rng(7)
    x, w, b = rand(rng, 4, 20, 48), rand(rng, 40, 48), rand(rng, 40)
    g = one_op_graph("aten.linear.default", {"x": x, "w": w, "b": b}, (Ref("x"), Ref("w"), Ref("b")), [(4, 20, 40)])
    prog, _ = checked(g, x @ w.T + b, atol=1e-4)
    assert any(ins.prim is Prim.BARRIER for ins in _instrs(prog)) and prog.launch.grid == 2  # 80 rows, 64-row tiles
    q, k = rand(rng, 3, 40, 16), rand(rng, 3, 16, 40)
    g = one_op_graph("aten.bmm.default", {"q": q, "k": k}, (Ref("q"), Ref("k")), [(3, 40, 40)])
    prog, _ = checked(g, q @ k, atol=1e-4)
    assert prog.launch.grid == 3  # a tile per batch item


def test_tiled_gemm_is_bit_identical_to_the_scalar_cpu_loop():
    """Each output's k sum is one FMA chain in k order, as in the scalar x86-64 kernel."""
    rng = np.random.default_rng(3)
    a, b = rand(rng, 2, 40, 33), rand(rng, 2, 33, 72)
    g = one_op_graph("aten.bmm.default", {"a": a, "b": b}, (Ref("a"), Ref("b")), [(2, 40, 72)])
    lowered = lower_graph(g)
    want = run_graph(lowered, ALL_TARGETS["x86-64"])["out"]
    got = run_graph(lower_graph(g), SIMT)["out"]
    assert got.tobytes() == want.tobytes()


@EXAMPLES
@given(rows=st.integers(1, 20), n=st.integers(1, 100), seed=st.integers(0, 99))
@example(rows=3, n=37, seed=0)  # a row that is not a multiple of 32: guarded lanes
@example(rows=2, n=64, seed=0)
def test_softmax_and_layer_norm_rows(rows, n, seed):
    x = rand(np.random.default_rng(seed), rows, n)
    g = one_op_graph("aten.softmax.int", {"x": x}, (Ref("x"), -1), [(rows, n)])
    prog, _ = checked(g, torch.softmax(torch.from_numpy(x), -1).numpy())
    assert sum(ins.prim is Prim.SHFL_XOR for ins in _instrs(prog)) == 10  # two reductions, five steps each
    w, b = rand(np.random.default_rng(seed + 1), n), rand(np.random.default_rng(seed + 2), n)
    g = one_op_graph("aten.layer_norm.default", {"x": x, "w": w, "b": b}, (Ref("x"), [n], Ref("w"), Ref("b"), 1e-5),
                     [(rows, n)])
    want = torch.nn.functional.layer_norm(torch.from_numpy(x), [n], torch.from_numpy(w), torch.from_numpy(b)).numpy()
    checked(g, want, atol=1e-4)


def test_a_row_reduction_whose_init_is_not_neutral_keeps_a_thread_per_row():
    """Each lane starts from the init and the butterfly combines 32 partials: an init of 1 would be counted 32
    times, so such a reduction is not given a warp (softmax with its sum started at 1 here)."""
    rng = np.random.default_rng(4)
    x = rand(rng, 6, 40)
    g = one_op_graph("aten.softmax.int", {"x": x}, (Ref("x"), -1), [(6, 40)])
    (kernel,) = lower_graph(g).kernels
    phases = tuple(dataclasses.replace(p, init=Const(1.0)) if isinstance(p, Reduce) and p.init == Const(0.0) else p
                   for p in kernel.phases)
    prog = simt_program(dataclasses.replace(kernel, phases=phases))
    assert prog.launch.strategy == "thread per element"
    mem, _ = run(prog, g.values)
    e = np.exp(x - x.max(-1, keepdims=True))
    np.testing.assert_allclose(mem.read("out").reshape(6, 40), e / (e.sum(-1, keepdims=True) + 1), rtol=1e-5)


def test_a_store_does_not_hold_its_warp():
    """A global store is fire-and-forget: it adds an issue cycle to a warp's path, not a memory latency."""
    from isasim.isa.simt_cost import warp_path

    x = rand(np.random.default_rng(0), 4, 64)
    prog = simt_program(lower_graph(one_op_graph("aten.relu.default", {"x": x}, (Ref("x"),), [(4, 64)])).kernels[0])
    body = prog.body
    assert body[-1].prim is Prim.STORE
    without = dataclasses.replace(prog, body=body[:-1])
    assert warp_path(prog, A100, A100.dram_latency) == warp_path(without, A100, A100.dram_latency) + 1


@pytest.mark.parametrize("op", ["gemm", "gelu", "softmax"])
def test_a_grid_runs_in_slices_of_whole_blocks_as_in_one_pass(op, monkeypatch):
    """run_simt bounds its arrays by running slices of blocks: one block per slice gives the bits and every
    count that one pass over the whole grid gives (a tiled GEMM through shared memory and barriers; a
    guarded elementwise tail; rows whose idle lanes exit)."""
    from isasim.isa import simt_exec

    rng = np.random.default_rng(7)
    x, w = rand(rng, 70, 40), rand(rng, 90, 40)
    graph = {"gemm": lambda: one_op_graph("aten.linear.default", {"x": x, "w": w}, (Ref("x"), Ref("w")), [(70, 90)]),
             "gelu": lambda: one_op_graph("aten.gelu.default", {"x": x}, (Ref("x"),), [(70, 40)]),
             "softmax": lambda: one_op_graph("aten.softmax.int", {"x": x}, (Ref("x"), -1, False), [(70, 40)])}[op]()
    prog = simt_program(lower_graph(graph).kernels[0], A100)
    assert prog.launch.grid > 1
    whole_mem, whole = run(prog, graph.values)
    monkeypatch.setattr(simt_exec, "SLICE_THREADS", 1)
    sliced_mem, sliced = run(prog, graph.values)
    assert sliced_mem.data.tobytes() == whole_mem.data.tobytes()
    assert sliced == whole and sliced.thread_instructions > 0


def test_thread_instructions_count_the_threads_that_execute():
    """Each warp instruction counts the threads that run it: 70 elements take three warps (96 threads), which
    all run up to the exit of those past the end, and 70 of them run the rest."""
    x = rand(np.random.default_rng(0), 70)
    g = one_op_graph("aten.relu.default", {"x": x}, (Ref("x"),), [(70,)])
    prog = simt_program(lower_graph(g).kernels[0])
    prims = [i.prim for i in _instrs(prog)]
    before = prims.index(Prim.EXIT_IF) + 1
    assert prog.launch.grid * prog.launch.block == 96
    _, ev = run(prog, g.values)
    assert ev.thread_instructions == before * 96 + (len(prims) - before) * 70


def test_elementwise_is_one_thread_per_element_and_coalesced():
    x = rand(np.random.default_rng(0), 5, 70)
    g = one_op_graph("aten.gelu.default", {"x": x}, (Ref("x"),), [(5, 70)])
    want = torch.nn.functional.gelu(torch.from_numpy(x)).numpy()
    prog, ev = checked(g, want)
    assert prog.launch.grid * prog.launch.block >= 350 and prog.launch.strategy == "thread per element"
    # 350 floats read and written: 1400 bytes each way, in 32-byte sectors of consecutive threads
    assert ev.sectors == 2 * sum(-(-min(32, 350 - w * 32) * 4 // 32) for w in range(-(-350 // 32)))


@pytest.mark.parametrize("n", [5000, 4096, 3000])
def test_grid_stride_loop_beyond_what_the_gpu_holds(n):
    """A grid larger than the GPU holds at once becomes a grid-stride loop (here a one-SM A100: 8 blocks of
    256 threads), its last trip guarded unless the elements divide evenly."""
    one_sm = dataclasses.replace(A100, sms=1)
    x = rand(np.random.default_rng(n), 2, n // 2)
    g = one_op_graph("aten.gelu.default", {"x": x}, (Ref("x"),), [(2, n // 2)])
    want = torch.nn.functional.gelu(torch.from_numpy(x)).numpy()
    prog, ev = checked(g, want, gpu=one_sm)
    assert prog.launch.grid * prog.launch.block == 2048 and "grid-stride" in prog.launch.strategy
    loads = [i for i in _instrs(prog) if i.prim is Prim.LOAD]
    assert all((i.mask is not None) == (n % 2048 != 0) for i in loads)
    assert ev.sectors == 2 * n * 4 // 32  # every element read and written once, coalesced
    if shutil.which("ptxas"):
        r = subprocess.run(["ptxas", "-arch=sm_80", "-", "-o", "/dev/null"], input=emit_ptx(prog, A100),
                           capture_output=True, text=True)
        assert r.returncode == 0, r.stderr


def _instrs(prog):
    from isasim.isa.program import walk
    return [ins for ins, _, _ in walk(prog.body)]


def test_a_missing_barrier_shows_in_the_stepped_interpreter():
    """The stepped interpreter really interleaves warps: without bar.sync the tiles race and results change."""
    from isasim.isa.program import Instr, Loop

    def drop(items):
        return tuple(dataclasses.replace(it, body=drop(it.body)) if isinstance(it, Loop) else it
                     for it in items if not (isinstance(it, Instr) and it.prim is Prim.BARRIER))

    rng = np.random.default_rng(0)
    x, w, b = rand(rng, 64, 48), rand(rng, 64, 48), rand(rng, 64)
    g = one_op_graph("aten.linear.default", {"x": x, "w": w, "b": b}, (Ref("x"), Ref("w"), Ref("b")), [(64, 64)])
    prog = simt_program(lower_graph(g).kernels[0])
    racy = dataclasses.replace(prog, body=drop(prog.body))
    good, _ = run(prog, g.values, step=True)
    bad, _ = run(racy, g.values, step=True)
    np.testing.assert_allclose(good.read("out").reshape(64, 64), x @ w.T + b, rtol=1e-5, atol=1e-4)
    assert not np.allclose(bad.read("out"), good.read("out"))


def test_a_gpu_with_another_warp_size_is_refused():
    """The lowering's warps (the simt target's) and the GPU's must agree; every GPU described does."""
    from isasim.isa.datafile import MachineFileError

    assert {load_gpu(n).warp_size for n in gpu_names()} == {SIMT.simt.warp_size}
    (kernel,) = lower_graph(one_op_graph("aten.relu.default", {"x": np.ones((4, 8), np.float32)}, (Ref("x"),),
                                         [(4, 8)])).kernels
    with pytest.raises(MachineFileError, match="warp_size 64"):
        backend_for(SIMT).select(kernel, SIMT, dataclasses.replace(A100, warp_size=64))


def test_sectors_and_bank_conflicts_by_hand():
    """32-byte sectors, 32 banks of 4 bytes, 32-thread warps: A100's geometry (isa/gpu/a100.toml)."""
    active = np.ones(32, dtype=bool)
    lanes = np.arange(32, dtype=np.int64)
    assert simt_memory.sectors(4096 + 4 * lanes, active, A100, 4) == 4  # 128 consecutive bytes
    assert simt_memory.sectors(4096 + 128 * lanes, active, A100, 4) == 32  # a column: one sector per thread
    assert simt_memory.sectors(4100 + 4 * lanes, active, A100, 4) == 5  # misaligned by one word
    assert simt_memory.wavefronts(4 * lanes, active, A100) == 1  # one word per bank
    assert simt_memory.wavefronts(np.zeros(32, dtype=np.int64), active, A100) == 1  # broadcast
    assert simt_memory.wavefronts(128 * lanes, active, A100) == 32  # [32][32] column: one bank
    assert simt_memory.wavefronts(132 * lanes, active, A100) == 1  # [32][33]: padding removes it
    assert simt_memory.wavefronts(8 * lanes, active, A100) == 2  # stride 2: two words per bank
    half = lanes < 16
    assert simt_memory.sectors(4096 + 4 * lanes, half, A100, 4) == 2 and simt_memory.requests(~active, A100) == 0


def test_gemm_tiles_are_read_with_vector_loads_without_bank_conflicts():
    """Each k step's register-tile operands come in one ld.shared.v4 each, their banks free of conflicts, so the
    path that returns 128 bytes a clock to the registers decides: A's (threads n and n^1 read one address:
    two wavefronts), B's (four, one per register each thread receives)."""
    rng = np.random.default_rng(0)
    x, w = rand(rng, 64, 32), rand(rng, 64, 32)
    g = one_op_graph("aten.mm.default", {"x": x, "w": w.T.copy()}, (Ref("x"), Ref("w")), [(64, 64)])
    prog, ev = checked(g, x @ w.T)
    mem = memory_costs(prog, A100)
    per_request = {ins.warp.buf: mem.by_instruction[pos][1] / mem.by_instruction[pos][0]
                   for pos, (ins, _, _) in enumerate(walk(prog.body)) if ins.prim is Prim.LOAD_SHARED_V}
    assert per_request == {"As": 2.0, "Bs": 4.0}
    assert not any(ins.prim is Prim.LOAD_SHARED for ins, _, _ in walk(prog.body))


@pytest.mark.parametrize("gpu", gpu_names())
def test_occupancy_follows_the_programming_guide(gpu):
    g = load_gpu(gpu)
    rng = np.random.default_rng(0)
    x, w = rand(rng, 128, 64), rand(rng, 128, 64)
    gr = one_op_graph("aten.mm.default", {"x": x, "w": w.T.copy()}, (Ref("x"), Ref("w")), [(128, 128)])
    prog = simt_program(lower_graph(gr).kernels[0])
    for regs in (32, 64, 128, 255):
        blocks, limiter = occupancy(prog, regs, g)
        per_warp = -(-regs * 32 // g.register_alloc_unit) * g.register_alloc_unit
        limits = {"registers": g.registers_per_sm // (per_warp * prog.launch.block // 32),
                  "shared memory": g.shared_per_sm // (prog.launch.shared_bytes + g.shared_reserved_per_block),
                  "warps": g.max_warps_per_sm // (prog.launch.block // 32),
                  "threads": g.max_threads_per_sm // prog.launch.block,
                  "blocks": g.max_blocks_per_sm}
        assert blocks == min(limits.values()) and limits[limiter] == blocks
    # 255 registers a thread: one 8-warp block needs 8 x 8192 of the SM's 65536 registers
    assert occupancy(prog, 255, g) == (1, "registers")


@pytest.mark.parametrize("gpu", gpu_names())
def test_cycles_are_the_deciding_bound_plus_the_launch(gpu):
    g = load_gpu(gpu)
    rng = np.random.default_rng(0)
    x, w, b = rand(rng, 128, 96), rand(rng, 96, 96), rand(rng, 96)
    gr = one_op_graph("aten.linear.default", {"x": x, "w": w, "b": b}, (Ref("x"), Ref("w"), Ref("b")), [(128, 96)])
    c = cost_simt(simt_program(lower_graph(gr).kernels[0]), g)
    launch = g.launch_overhead_us * 1e3 * g.clock_ghz  # isa/gpu/*.toml: microseconds at the SM clock
    work = max(b.cycles for b in c.bounds if b.kind != "launch")
    assert c.cycles == pytest.approx(work + launch)
    assert c.bytes["l2"] >= (x.nbytes + w.nbytes + 128 * 96 * 4)  # every byte at least once
    bigger = one_op_graph("aten.linear.default", {"x": rand(rng, 256, 96), "w": w, "b": b},
                          (Ref("x"), Ref("w"), Ref("b")), [(256, 96)])
    assert cost_simt(simt_program(lower_graph(bigger).kernels[0]), g).cycles >= c.cycles


@pytest.fixture(scope="module")
def tiny_bert():
    return capture_bert(37, hidden_size=64, num_hidden_layers=1, num_attention_heads=2, intermediate_size=96,
                        vocab_size=60, max_position_embeddings=64)


def test_every_bert_op_runs_on_simt(tiny_bert):
    from isasim.models import reference

    lowered = lower_graph(tiny_bert.graph)
    storages = run_graph(lowered, SIMT)
    got = materialize(lowered.context.views[tiny_bert.graph.outputs[0]], storages)
    want = reference.final_hidden_state(tiny_bert)
    np.testing.assert_allclose(got.reshape(want.shape), want, atol=1e-4)
    strategies = {simt_program(k).launch.strategy for k in lowered.kernels}
    assert len(strategies) == 3  # tiles for the projections, warps for rows, threads for the rest


@pytest.mark.skipif(shutil.which("ptxas") is None, reason="ptxas (CUDA) is not installed")
@pytest.mark.parametrize("gpu", gpu_names())
@pytest.mark.parametrize("precision", ["fp32", "fp16"])  # fp16: every activation loaded and stored as 16 bits
def test_ptxas_accepts_every_kernel(tiny_bert, gpu, precision, tmp_path):
    from isasim.engine.graphs import in_precision

    arch = load_gpu(gpu).ptx_target
    for i, k in enumerate(lower_graph(in_precision(tiny_bert.graph, precision)).kernels):
        f = tmp_path / f"k{i}.ptx"
        f.write_text(emit_ptx(simt_program(k), load_gpu(gpu)))
        r = subprocess.run(["ptxas", f"-arch={arch}", "-v", str(f), "-o", str(tmp_path / "k.cubin")],
                           capture_output=True, text=True)
        assert r.returncode == 0, f"{k.op}: {r.stderr}"
        used = int(re.search(r"Used (\d+) registers", r.stdout + r.stderr).group(1))
        estimate = registers(simt_program(k))  # what occupancy is computed from: within 2x of ptxas's count
        assert used / 2 <= estimate <= 2 * used, (k.op, estimate, used)


@pytest.mark.skipif(shutil.which("ptxas") is None, reason="ptxas (CUDA) is not installed")
@pytest.mark.parametrize("per", REGISTER_TILES)
def test_ptxas_accepts_every_register_tile(per, tmp_path):
    """The cost model picks a GEMM's register tile per GPU; each one it may pick computes the GEMM, in both
    executors alike and counted as the cost model counts it, and assembles."""
    rng = np.random.default_rng(per)
    x, w, b = rand(rng, 70, 45), rand(rng, 37, 45), rand(rng, 37)
    g = one_op_graph("aten.linear.default", {"x": x, "w": w, "b": b}, (Ref("x"), Ref("w"), Ref("b")), [(70, 37)])
    (kernel,) = lower_graph(g).kernels
    prog = GemmBuilder(kernel, SIMT, gemm_shape(kernel), per).build()
    mem, _ = executors_agree(prog, g.values)
    np.testing.assert_allclose(mem.read("out").reshape(70, 37), x @ w.T + b, rtol=1e-5, atol=1e-4)
    for gpu in map(load_gpu, gpu_names()):  # sm_80, sm_90
        r = subprocess.run(["ptxas", f"-arch={gpu.ptx_target}", "-", "-o", str(tmp_path / "k.cubin")],
                           input=emit_ptx(prog, gpu), capture_output=True, text=True)
        assert r.returncode == 0, r.stderr


def test_cost_model_chunks_add_up(monkeypatch):
    """Big grids are costed one period of an access's pattern, or a slice of warps at a time: both give the
    totals of evaluating every thread at once."""
    from isasim.isa import simt_cost

    rng = np.random.default_rng(5)
    x, w, b = rand(rng, 37, 45), rand(rng, 70, 45), rand(rng, 70)
    g = one_op_graph("aten.linear.default", {"x": x, "w": w, "b": b}, (Ref("x"), Ref("w"), Ref("b")), [(37, 70)])
    progs = [simt_program(lower_graph(g).kernels[0])]
    g = one_op_graph("aten.softmax.int", {"x": x}, (Ref("x"), -1), [(37, 45)])
    progs.append(simt_program(lower_graph(g).kernels[0]))
    whole = [(dataclasses.asdict(memory_costs(p, A100)), simt_cost.live_counts(p, A100)) for p in progs]
    shared = next(i.warp for i in _instrs(progs[0]) if i.prim is Prim.LOAD_SHARED_V)
    assert simt_cost.repeat_period(progs[0], shared, A100.warp_size) \
        < progs[0].launch.threads  # the shared tiles' pattern repeats every block: the default takes one period
    monkeypatch.setattr(simt_cost, "CHUNK", 96)
    monkeypatch.setattr(simt_cost, "repeat_period", lambda prog, wa, warp, align: None)
    assert whole == [(dataclasses.asdict(memory_costs(p, A100)), simt_cost.live_counts(p, A100)) for p in progs]
    assert progs[1].launch.threads > 96


def test_a_growing_batch_index_repeats_up_to_a_shift(monkeypatch):
    """A batched matmul's addresses have a batch term without a modulo: each batch's warps touch the previous
    batch's sectors moved by one matrix, so one period stands for the grid, and its totals are those of every
    thread evaluated (and of a Lin shifted by whole periods: `shift`)."""
    from isasim.isa import simt_cost
    from isasim.isa.program import Lin

    rng = np.random.default_rng(6)
    a, b = rand(rng, 4, 3, 20, 12), rand(rng, 4, 3, 12, 24)
    g = one_op_graph("aten.matmul.default", {"a": a, "b": b}, (Ref("a"), Ref("b")), [(4, 3, 20, 24)])
    prog = simt_program(lower_graph(g).kernels[0])
    growing = [i.warp for i in _instrs(prog) if i.prim is Prim.LOAD and any(not m for _, m, _ in i.warp.byte.terms)]
    assert growing, "the batched matmul's global loads have a batch term without a modulo"
    period = simt_cost.repeat_period(prog, growing[0], A100.warp_size, 128)
    assert period is not None and period < prog.launch.threads
    whole = dataclasses.asdict(memory_costs(prog, A100))
    monkeypatch.setattr(simt_cost, "repeat_period", lambda prog, wa, warp, align: None)
    monkeypatch.setattr(simt_cost, "CHUNK", 64)
    assert whole == dataclasses.asdict(memory_costs(prog, A100))
    lin = Lin(8, ((6, 0, 20), (2, 3, 4), (1, 0, -1)))
    gid = np.arange(300)
    assert simt_cost.shift(lin, 36) is not None and (lin.at(gid + 36) == lin.at(gid) + simt_cost.shift(lin, 36)).all()
    assert simt_cost.shift(lin, 4) is None  # 4 threads on, the (gid // 2) % 3 term does not return to itself


def test_grid_stride_trips_grouped_by_shift_give_every_trips_totals(monkeypatch):
    """An elementwise op too big for one grid loops with a grid stride; its full trips move every address by one
    amount and cost what trip 0 costs at that amount, the tail is evaluated thread by thread: the totals equal
    evaluating every trip."""
    from isasim.isa import simt_cost

    rng = np.random.default_rng(7)
    x, y = rand(rng, 3, 250_001), rand(rng, 3, 250_001)
    g = one_op_graph("aten.add.Tensor", {"x": x, "y": y}, (Ref("x"), Ref("y")), [(3, 250_001)])
    prog = simt_program(lower_graph(g).kernels[0], A100)  # (sized for the A100's resident grid)
    assert any(i.warp.byte.gid_steps for i in _instrs(prog) if i.prim in (Prim.LOAD, Prim.STORE))  # grid-stride
    grouped = dataclasses.asdict(memory_costs(prog, A100))
    monkeypatch.setattr(simt_cost, "shift", lambda lin, moved: None)  # every trip evaluated thread by thread
    assert grouped == dataclasses.asdict(memory_costs(prog, A100))


def test_the_tuned_gemm_is_costed_once_and_costs_what_a_fresh_build_costs(monkeypatch):
    """select_gemm costs each register tile and hands on the very program it picked; cost_simt remembers the
    last programs it costed (by identity), so the report does not cost that one again, and gets what a
    rebuilt program costs."""
    from isasim.isa import simt_cost
    from isasim.lowering import isel_simt_gemm

    rng = np.random.default_rng(3)
    x, w, b = rand(rng, 96, 40), rand(rng, 72, 40), rand(rng, 72)
    g = one_op_graph("aten.linear.default", {"x": x, "w": w, "b": b}, (Ref("x"), Ref("w"), Ref("b")), [(96, 72)])
    (kernel,) = lower_graph(g).kernels
    monkeypatch.setattr(isel_simt_gemm, "_CHOSEN", {})
    evaluated = []
    real = simt_cost.cost_simt_afresh
    monkeypatch.setattr(simt_cost, "cost_simt_afresh", lambda prog, gpu: evaluated.append(prog) or real(prog, gpu))
    prog = simt_program(kernel, A100)
    assert len(evaluated) == len(REGISTER_TILES) and any(p is prog for p in evaluated)
    cost = cost_simt(prog, A100)
    assert len(evaluated) == len(REGISTER_TILES)  # remembered, not costed again
    rebuilt = simt_program(kernel, A100)  # the tile is chosen now: a new program, costed afresh
    assert rebuilt is not prog and cost_simt(rebuilt, A100) == cost and len(evaluated) == len(REGISTER_TILES) + 1


def test_an_all_reduce_moves_2_n_minus_1_over_n_of_the_bytes_at_the_bus_bandwidth():
    """nccl-tests' busbw is defined so that a ring's time is 2(N-1)/N x bytes / busbw: large messages recover
    the described bus bandwidth from the time, tiny ones cost the latency; one GPU reduces nothing."""
    from isasim.isa.gpu import load_gpu

    for name in ("a100", "h100", "h200"):
        for link in load_gpu(name).links.values():
            assert link.allreduce_seconds(1e9, 1) == 0
            for n in (2, 4, 8):
                size = 8e9
                busbw = size / link.allreduce_seconds(size, n) * 2 * (n - 1) / n / 1e9
                assert busbw == pytest.approx(link.busbw_gb_s, rel=1e-3)
                assert link.allreduce_seconds(8, n) == pytest.approx(link.latency_us * 1e-6, rel=1e-3)
    a100 = load_gpu("a100").links
    assert a100["pcie"].allreduce_seconds(1e9, 8) > 5 * a100["nvlink"].allreduce_seconds(1e9, 8)
