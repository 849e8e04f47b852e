"""Cost-model invariants: named bounds, exact counts, traffic that agrees with what the executor moves."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from oprunner import PAIR_IDS, PAIRS, both_executors, one_op_graph, programs

from isasim.backends import backend_for, load_machine
from isasim.isa.machine import load_uarch
from isasim.isa.program import walk
from isasim.isa.targets import TARGETS
from isasim.models.graph import Ref

SCALAR = [(t, u) for t, u in PAIRS if t.simt is None and t.vector is None]
SIMD = [(t, u) for t, u in PAIRS if t.vector is not None]


def linear_graph(m, n, k, seed=0):
    rng = np.random.default_rng(seed)
    x, w, b = (rng.standard_normal(s).astype(np.float32) for s in ((m, k), (n, k), (n,)))
    return one_op_graph("aten.linear.default", {"x": x, "w": w, "b": b}, (Ref("x"), Ref("w"), Ref("b")), [(m, n)])


def cost(graph, target, machine):
    (prog,) = programs(graph, target.name, machine)
    return prog, backend_for(target).cost(prog, load_machine(machine))


def chains_in_flight(prog, core) -> float:
    """1 + W / U: the oldest output's chain and the outputs the reorder buffer of W holds behind it, U micro-ops
    each (~ the instructions of one output, for these scalar loops)."""
    outputs = 64  # linear_graph(8, 8, k)
    return 1 + core.reorder_buffer / (sum(n for _, n, _ in walk(prog.body)) / outputs)


@pytest.mark.parametrize("target,uarch", SCALAR, ids=[f"{t.name}-{u}" for t, u in SCALAR])
def test_one_accumulator_gemm_is_bound_by_the_fma_chain(target, uarch):
    """A dot product much longer than the reorder buffer waits for its own chain, one FMA latency a trip, but
    for the last stretch, which the next outputs' chains overlap."""
    core = load_uarch(uarch)
    prog, c = cost(linear_graph(8, 8, 512), target, uarch)
    fma = core.timing(target.mnemonics[next(p for p in target.mnemonics if p.name == "FMA")])
    assert c.inner_loop.bound.kind == "latency"
    assert 0.8 * fma.latency < c.inner_loop.latency < fma.latency  # the accumulator chain: one FMA per trip
    assert c.inner_loop.latency == pytest.approx(fma.latency / chains_in_flight(prog, core), rel=0.05)
    assert c.inner_loop.alone == pytest.approx(fma.latency)  # one run with nothing beside it, as llvm-mca sees it
    assert c.bound.kind == "latency" and c.bound.cycles == c.cycles


@pytest.mark.parametrize("target,uarch", SCALAR, ids=[f"{t.name}-{u}" for t, u in SCALAR])
def test_short_dot_products_overlap_in_the_reorder_buffer(target, uarch):
    """The next outputs' chains start while this one's is still running (the scalar attention matmul's
    32-trip dot products): the chain's latency per trip is shared by the 1 + W / U outputs in flight, W the
    reorder buffer and U one output's micro-ops, down to what the ports allow (benchmarks/chain_overlap.py
    measures it)."""
    core = load_uarch(uarch)
    fma = core.timing(target.mnemonics[next(p for p in target.mnemonics if p.name == "FMA")])
    prog, short = cost(linear_graph(8, 8, 16), target, uarch)
    _, long = cost(linear_graph(8, 8, 512), target, uarch)
    assert short.inner_loop.latency < fma.latency / 2
    assert short.inner_loop.latency == pytest.approx(fma.latency / chains_in_flight(prog, core), rel=0.3)
    assert short.cycles / 16 < long.cycles / 512  # per trip, the short ones run faster


@pytest.mark.parametrize("target,uarch", SIMD, ids=[f"{t.name}-{u}" for t, u in SIMD])
def test_register_blocked_gemm_is_bound_by_throughput(target, uarch):
    """Several accumulators hide the FMA latency: the micro-kernel's loop is limited by its ports (or issue),
    and the whole GEMM runs several times faster than the one-accumulator scalar loop on the same core."""
    g = linear_graph(24, 64, 256)
    prog, c = cost(g, target, uarch)
    loop = c.inner_loop
    assert loop.cycles == max(loop.ports, loop.issue)  # throughput decides (the chain may tie it, no more)
    scalar = next(t for t in TARGETS.values() if t.isa == target.isa and t.vector is None)
    _, s = cost(g, scalar, uarch)
    assert s.cycles > target.vector_lanes * c.cycles  # more than the lanes alone: blocking pays too



@pytest.mark.parametrize("target,uarch", PAIRS, ids=PAIR_IDS)
@settings(max_examples=8, deadline=None)
@given(m=st.integers(1, 12), n=st.integers(1, 12), k=st.integers(1, 40))
def test_counts_and_bytes_agree_with_the_executor(target, uarch, m, n, k):
    g = linear_graph(m, n, k)
    prog, c = cost(g, target, uarch)
    if target in [t for t, _ in SCALAR]:  # one FMA per multiply-add
        fma = target.mnemonics[next(p for p in target.mnemonics if p.name == "FMA")]
        assert c.by_mnemonic[fma] == m * n * k
    assert c.flops == 2 * m * n * k
    assert c.fp_ops >= 2 * m * n * k  # every multiply-add, at least (lanes or threads may idle)
    (_, events), _ = both_executors(prog, g.values, target.name, uarch)
    assert c.instructions == events.total
    assert c.bytes["l1"] == events.bytes_loaded + events.bytes_stored


@pytest.mark.parametrize("target,uarch", PAIRS, ids=PAIR_IDS)
def test_traffic_is_ordered_and_covers_what_must_move(target, uarch):
    x = np.ones((64, 1000), np.float32)
    g = one_op_graph("aten.add.Tensor", {"x": x, "y": x.copy()}, (Ref("x"), Ref("y")), [x.shape])
    _, c = cost(g, target, uarch)
    # A masked tail and the vector loop before it share a cache line the model counts once for each, so
    # fills from L2 can exceed the core's bytes by that line per row (1.6% here).
    assert c.bytes["l1"] * 1.02 >= c.bytes["l2"] >= c.bytes["llc"] >= c.bytes["dram"]
    compulsory = 3 * x.nbytes  # two inputs read, one output written (write-allocate), each once
    assert c.bytes["dram"] >= compulsory


@pytest.mark.parametrize("target,uarch", [SCALAR[0], SIMD[-1]], ids=lambda p: getattr(p, "name", p))
def test_cost_grows_with_the_problem(target, uarch):
    """On a CPU core every size costs more (a GPU this small is launch-bound: tests/test_simt.py)."""
    prev = None
    for size in (8, 16, 32, 64, 128):
        _, c = cost(linear_graph(size, size, size), target, uarch)
        if prev:
            assert c.cycles > prev.cycles and c.instructions > prev.instructions
            assert all(c.bytes[lv] >= prev.bytes[lv] for lv in c.bytes)
        prev = c


def test_loop_latch_macro_fuses_where_the_core_fuses_sub_and_jnz():
    """`sub counter, 1; jnz` issues as one uop on Skylake-X (and Zen 4, Sapphire Rapids), two on Neoverse N1."""
    from isasim.isa.cost import block_cost
    from isasim.isa.emit import hottest_loop

    x = np.ones((4, 64), np.float32)
    g = one_op_graph("aten.add.Tensor", {"x": x, "y": x.copy()}, (Ref("x"), Ref("y")), [x.shape])
    for target, uarch, fuses in (("x86-64", "skylake-x", True), ("aarch64", "neoverse-n1", False)):
        (prog,) = programs(g, target)
        loop = hottest_loop(prog.body)[1]
        block = list(loop.body) + list(loop.latch)
        u = load_uarch(uarch)
        assert u.fuses_sub_branch is fuses and (not fuses or "fusion" in u.fusion_source)
        slots = sum(u.timing(i.mnemonic).uops for i in block)
        sub = next(i for i in block if i.prim.name == "DEC_FLAGS")
        want = (slots - (u.timing(sub.mnemonic).uops if fuses else 0)) / u.issue_width
        assert block_cost(block, u, False).issue == pytest.approx(want)


CPU_PAIRS = [(t, u) for t, u in PAIRS if t.simt is None]


def _steady_cycles(body, uarch, iterations=120):
    """Cycles per iteration of the cycle-by-cycle timeline (isa/timeline.py) in steady state."""
    from isasim.isa.timeline import simulate

    last: dict[int, int] = {}
    for e in simulate(body, uarch, iterations):
        last[e.iteration] = max(last.get(e.iteration, 0), e.retired)
    half = iterations // 2
    return (last[iterations - 1] - last[half - 1]) / (iterations - half)


@pytest.mark.parametrize("target,uarch", CPU_PAIRS, ids=[f"{t.name}-{u}" for t, u in CPU_PAIRS])
def test_the_window_bound_agrees_with_the_cycle_level_timeline(target, uarch):
    """GELU's loop holds a long chain (erf, exp) inside each independent trip. The analytic bound (ports, issue,
    and the reorder buffer and scheduler by Little's law) and the timeline, which stalls dispatch when either
    is full, are two models of the same core: they agree within a third (where ports and window compound, the
    bound runs the trips on the timeline itself). A core with room for twice the micro-ops is never predicted
    slower."""
    from dataclasses import replace

    from isasim.isa.cost import block_cost
    from isasim.isa.emit import hottest_loop

    x = np.random.default_rng(0).standard_normal((4, 64)).astype(np.float32)
    (prog,) = programs(one_op_graph("aten.gelu.default", {"x": x}, (Ref("x"),), [(4, 64)]), target.name, uarch)
    _, loop = hottest_loop(prog.body)
    body, core = list(loop.body) + list(loop.latch), load_uarch(uarch)
    bc = block_cost(body, core, not loop.parallel)
    assert bc.window > 0 and bc.cycles == pytest.approx(_steady_cycles(body, core), rel=0.35)
    roomier = replace(core, reorder_buffer=2 * core.reorder_buffer, scheduler=2 * core.scheduler)
    assert block_cost(body, roomier, not loop.parallel).cycles <= bc.cycles


def test_the_window_decides_gelu_on_zen3():
    """The chain of AVX2 GELU on Zen 3 is longer than its ports' work, so its trips overlap only as far as the
    64-entry FP scheduler holds them (llvm-mca-19 -mcpu=znver3 gives 20.0 cycles per trip on the same loop);
    with twice the room the ports would decide."""
    from dataclasses import replace

    from isasim.isa.cost import block_cost
    from isasim.isa.emit import hottest_loop

    x = np.random.default_rng(0).standard_normal((4, 64)).astype(np.float32)
    (prog,) = programs(one_op_graph("aten.gelu.default", {"x": x}, (Ref("x"),), [(4, 64)]), "avx2", "zen3")
    _, loop = hottest_loop(prog.body)
    body, zen3 = list(loop.body) + list(loop.latch), load_uarch("zen3")
    bc = block_cost(body, zen3, False)
    assert bc.bound.kind == "window" and bc.window > 1.2 * bc.ports
    roomier = replace(zen3, reorder_buffer=2 * zen3.reorder_buffer, scheduler=2 * zen3.scheduler)
    assert block_cost(body, roomier, False).cycles < 0.9 * bc.cycles
