"""Many cores (lowering/split.py): each kernel split into per-core chunks of one parallel loop, each chunk
lowered and executed on its own; together they write exactly what the whole kernel writes, bit for bit."""

from __future__ import annotations

import numpy as np
import pytest
from tiny import save_bert

from isasim.backends import backend_for, load_machine
from isasim.backends.base import load_memory
from isasim.engine.run import run_graph
from isasim.isa.targets import ALL_TARGETS
from isasim.lowering.pipeline import lower_graph
from isasim.isa.dtype import DType
from isasim.lowering.kernel import Affine, Buffer, Index, Kernel, Map
from isasim.lowering.split import shares, split_var
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
