"""Many cores (lowering/split.py, engine/cores.py): each kernel split into per-core chunks of one parallel loop,
each chunk lowered and executed on its own; together they write exactly what the whole kernel writes, bit for
bit. Their cost: the slowest core's, or the socket's shared DRAM, plus the fork and join, each named."""

from __future__ import annotations

import numpy as np
import pytest
from tiny import save_bert

from isasim.backends import backend_for, load_machine
from isasim.backends.base import load_memory
from isasim.engine.run import run_graph
from isasim.isa.targets import ALL_TARGETS
from isasim.lowering.pipeline import lower_graph
from isasim.engine.cores import core_shards, split_cost
from isasim.engine.trace import cost_kernel
from isasim.isa.dtype import DType
from isasim.isa.semantics import Prim
from isasim.lowering.kernel import Affine, Buffer, Const, Index, Kernel, Load, Map, Reduce, Scalar, op
from isasim.lowering.split import box_kernel, boxes, domain_boxes, grids, shares, split_var
from isasim.models import capture, registry


@pytest.fixture(scope="module")
def tiny_lowered(tmp_path_factory):
    folder = save_bert(tmp_path_factory.mktemp("cores") / "tiny", 0, hidden_size=64, num_hidden_layers=1,
                       num_attention_heads=2, intermediate_size=128, vocab_size=100, max_position_embeddings=64)
    return lower_graph(capture.capture(registry.resolve(str(folder)), 12, 2, with_values=True).graph)


@pytest.mark.parametrize("target, core", [("x86-64", "zen5"), ("avx512", "zen5"), ("neon", "neoverse-v1")])
@pytest.mark.parametrize("cores", [3, 8])
def test_the_cores_chunks_together_write_what_one_core_writes(tiny_lowered, target, core, cores):
    t, m = ALL_TARGETS[target], load_machine(core)
    backend = backend_for(t)
    whole = run_graph(tiny_lowered, t, machine=m, keep=None)
    split = 0
    for step in tiny_lowered.steps:
        if step.kernel is None:
            continue
        parts = shares(step.kernel, cores)
        split += len(parts) > 1
        assert len(parts) <= cores
        programs = [backend.select(p, t, m) for p in parts]
        mem = load_memory(programs[0], whole)  # the kernel's inputs as one core computed them, outputs zero
        for program in programs:
            backend.execute(program, mem, m)
        for b in programs[0].buffers:
            if b.is_output:
                assert mem.read(b.name).tobytes() == np.ascontiguousarray(whole[b.name]).reshape(-1).tobytes(), \
                    (step.kernel.name, cores)
    assert split > len(tiny_lowered.kernels) // 2  # most kernels do split


def test_the_split_loop_is_the_outermost_wide_enough_and_a_loop_read_as_a_value_stays_whole(tiny_lowered):
    by_op = {}
    for k in tiny_lowered.kernels:
        by_op.setdefault(k.op, k)
    linear = by_op["aten.linear.default"]
    assert split_var(linear, 4) == next(v for v, e in linear.parallel if e >= 4)
    assert split_var(linear, 1) is None
    # out[i] = i over a parallel loop: each chunk would count from 0, so the loop stays whole
    counting = Kernel("count", "test", (Buffer("out", 12, DType.I64, True),), (("i", 12),),
                      (Map(None, 1, "out", Affine(0, (("i", 1),)), Index("i")),))
    assert split_var(counting, 4) is None and shares(counting, 4) == [counting]
    sizes = [dict(p.parallel)[split_var(linear, 5)] for p in shares(linear, 5)]
    assert sum(sizes) == dict(linear.parallel)[split_var(linear, 5)] and len(set(sizes[:-1])) == 1


# ---- the cost on many cores (engine/cores.py) and what runs (engine/run.py) -------------------------------------

def _add(n: int) -> Kernel:
    """out[i] = a[i] + b[i] over n elements: a kernel whose work and traffic both grow with n."""
    i = Affine(0, (("i", 1),))
    return Kernel(f"add{n}", "aten.add.Tensor", (Buffer("a", n, DType.F32), Buffer("b", n, DType.F32),
                                                 Buffer("out", n, DType.F32, True)), (("i", n),),
                  (Map(None, 1, "out", i, op(Prim.FADD, Load("a", i), Load("b", i))),))


def _row_sums(rows: int, k: int) -> Kernel:
    """out[i] = sum of row i of x (rows x k): `rows` heavy iterations to share."""
    x = Affine(0, (("i", k), ("k", 1)))
    return Kernel(f"rows{rows}", "aten.sum.dim_IntList", (Buffer("x", rows * k, DType.F32),
                                                          Buffer("out", rows, DType.F32, True)), (("i", rows),),
                  (Reduce("k", k, "s", Const(0.0), op(Prim.FADD, Scalar("s"), Load("x", x))),
                   Map(None, 1, "out", Affine(0, (("i", 1),)), Scalar("s"))))


def test_one_core_is_the_one_core_cost_and_a_split_is_never_slower():
    t, m = ALL_TARGETS["avx512"], load_machine("zen5")
    kernel = _add(1 << 16)
    one = split_cost(kernel, t, m, 1)
    assert one.chunks == (kernel,) and one.cost == cost_kernel(kernel, t, m)
    for cores in (2, 3, 8, 128):
        assert split_cost(kernel, t, m, cores).cost.cycles <= one.cost.cycles


def test_as_an_add_grows_its_bound_moves_from_one_core_to_sync_to_the_sockets_dram():
    """An elementwise add on all 128 cores of a Zen 5 socket: a few hundred elements stay on one core (the fork
    costs more than they take), then the fork and join decides, and once the operands leave the caches, the
    socket's DRAM bandwidth, which every core shares (128 cores never wait on their own work)."""
    t, m = ALL_TARGETS["avx512"], load_machine("zen5")
    seen = []
    for n in (1 << e for e in range(8, 26, 2)):
        s = split_cost(_add(n), t, m, 128)
        kind = "one core" if len(s.chunks) == 1 else s.cost.bound.kind
        if not seen or seen[-1] != kind:
            seen.append(kind)
    assert seen == ["one core", "sync", "shared dram"]


def test_beyond_one_socket_half_of_each_sockets_bytes_cross_to_the_other():
    """An add too big for the caches on a two-socket Skylake-SP server: on one socket's 28 cores its DRAM
    decides; on 56, the pages are interleaved, each socket's memory serves half the bytes and half of each
    socket's own cross the 41.6 GB/s UPI links, which then decide."""
    from isasim.engine.cores import cores_for
    from isasim.isa.errors import UserError

    t, m = ALL_TARGETS["avx512"], load_machine("skylake-x")
    assert cores_for(m, 56) == 56 and cores_for(m, "all") == 28  # 'all': one socket
    with pytest.raises(UserError, match="2 sockets .* use 1..56"):
        cores_for(m, 57)
    with pytest.raises(UserError, match="its socket .* use 1..128"):
        cores_for(load_machine("zen5"), 129)
    kernel = _add(1 << 24)
    one = split_cost(kernel, t, m, 28)
    assert one.cost.bound.kind == "shared dram"
    two = split_cost(kernel, t, m, 56)
    assert two.cost.bound.kind == "remote dram"
    dram = two.cost.bytes["dram"]
    sync = m.socket.fork_join_cycles(56, m.clock_ghz)
    assert two.cost.cycles == pytest.approx(dram / 2 / 2 / (41.6 / m.clock_ghz) + sync, rel=1e-4)
    assert 1 < one.cost.cycles / two.cost.cycles < 2  # more cores, but the link holds them back
    inside = split_cost(kernel, t, load_machine("sapphirerapids"), 56)  # one 56-core socket: nothing remote
    assert "remote dram" not in {b.kind for b in inside.cost.bounds}


def test_three_rows_on_two_cores_are_named_imbalance():
    t, m = ALL_TARGETS["x86-64"], load_machine("zen5")
    s = split_cost(_row_sums(3, 1 << 14), t, m, 2)
    assert [dict(c.parallel)["i"] for c in s.chunks] == [2, 1]
    assert s.cost.bound.kind == "imbalance"
    alone = cost_kernel(_row_sums(3, 1 << 14), t, m)
    assert s.cost.cycles == pytest.approx(alone.cycles * 2 / 3, rel=0.05)  # the slowest core runs two of three


def test_a_weight_is_fetched_from_dram_once_per_llc_domain_not_once_per_core(tiny_lowered):
    """A GEMM split by rows: every core reads the whole weight, but cores that share a last-level cache fetch it
    from DRAM once between them (Sapphire Rapids: one LLC for 56 cores; Zen 4: one per 8-core CCD)."""
    t = ALL_TARGETS["avx512"]
    linear = next(k for k in tiny_lowered.kernels if k.op == "aten.linear.default")
    for uarch in ("sapphirerapids", "zen4"):
        m = load_machine(uarch)
        alone = cost_kernel(linear, t, m)
        on16 = split_cost(linear, t, m, 16)
        assert len(on16.chunks) > 1
        domains = -(-len(on16.chunks) // m.socket.llc_cores)
        assert alone.bytes["dram"] <= on16.cost.bytes["dram"] <= domains * alone.bytes["dram"]


ALL_FAMILIES = {"linear", "matmul", "softmax", "gelu"}


# (NEON's softmax on the tiny model is too short to gain from four cores, so split_cost keeps it on one)
@pytest.mark.parametrize("target, core, families", [("x86-64", "zen5", ALL_FAMILIES), ("avx512", "zen5", ALL_FAMILIES),
                                                    ("avx2", "zen3", ALL_FAMILIES),
                                                    ("neon", "neoverse-v1", ALL_FAMILIES - {"softmax"})])
def test_run_graph_on_many_cores_is_bit_identical_to_one_core(tiny_lowered, target, core, families):
    t, m = ALL_TARGETS[target], load_machine(core)
    one = run_graph(tiny_lowered, t, machine=m, keep=None)
    split = set()  # the ops of the kernels that ran as chunks (a tiny elementwise one may stay on one core)
    many = run_graph(tiny_lowered, t, lambda step, program, events: split.add(step.node.op.split(".")[1])
                     if isinstance(program, tuple) else None, machine=m, keep=None, shards=core_shards(t, m, 4))
    assert families <= split
    assert one.keys() == many.keys()
    for name in one:
        assert np.ascontiguousarray(one[name]).tobytes() == np.ascontiguousarray(many[name]).tobytes(), name


def _cells(kernel: Kernel, box) -> set:
    """The (outer, inner) iterations a box covers."""
    ranges = [range(start, start + size) for _, start, size in box]
    return {(i, j) for i in ranges[0] for j in (ranges[1] if len(ranges) > 1 else [0])}


@pytest.mark.parametrize("cores, llc", [(6, 4), (8, 8), (12, 8), (16, 3)])
def test_a_grid_of_row_and_column_blocks_covers_the_output_once_and_its_domains_cover_their_cores(
        tiny_lowered, cores, llc):
    t, m = ALL_TARGETS["avx512"], load_machine("zen5")
    linear = next(k for k in tiny_lowered.kernels if k.op == "aten.linear.default")
    two_d = [g for g in grids(linear, cores) if len(g) == 2]
    assert two_d, grids(linear, cores)
    whole = run_graph(tiny_lowered, t, machine=m, keep=None)
    for grid in two_d:
        chunks = boxes(linear, grid)
        cells = [_cells(linear, b) for b in chunks]
        assert sum(map(len, cells)) == len(set().union(*cells))  # no iteration twice
        by_domain = [set().union(*cells[lo:lo + llc]) for lo in range(0, len(chunks), llc)]
        domains = domain_boxes(linear, grid, llc)
        assert len(domains) == len(by_domain)
        for mine, want in zip(domains, by_domain):  # each domain's rectangles: its cores' cells, exactly
            covered = [_cells(linear, b) for b in mine]
            assert sum(map(len, covered)) == len(set().union(*covered)) and set().union(*covered) == want
        programs = [backend_for(t).select(box_kernel(linear, b), t, m) for b in chunks]
        mem = load_memory(programs[0], whole)
        for program in programs:
            backend_for(t).execute(program, mem, m)
        out = next(b.name for b in programs[0].buffers if b.is_output)
        assert mem.read(out).tobytes() == np.ascontiguousarray(whole[out]).reshape(-1).tobytes(), grid
