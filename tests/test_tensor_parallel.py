"""Tensor parallelism (lowering/tensor_split.py, engine/tensor_parallel.py): Megatron-LM's split of each layer
across GPUs, executed shard by shard with the row-parallel partial sums added, equals one GPU's forward pass
within float32 rounding; what one GPU costs is its shards, the kernels it runs whole, and two all-reduces a
layer."""

from __future__ import annotations

import json

import numpy as np
import pytest
from tiny import cli, save_bert

from isasim.backends import backend_for, load_machine
from isasim.backends.base import load_memory
from isasim.engine.run import run_graph
from isasim.engine.tensor_parallel import shards
from isasim.isa.errors import UserError
from isasim.isa.targets import ALL_TARGETS
from isasim.lowering.pipeline import lower_graph, materialize
from isasim.lowering.tensor_split import role, rows_of, shards as split
from isasim.models import capture, registry


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    return save_bert(tmp_path_factory.mktemp("tp") / "tiny", 5, hidden_size=32, num_hidden_layers=2,
                     num_attention_heads=4, intermediate_size=48, vocab_size=80, max_position_embeddings=32)


@pytest.fixture(scope="module")
def lowered(folder):
    return lower_graph(capture.capture(registry.resolve(str(folder)), 10, 2, with_values=True).graph)


def test_each_layer_splits_as_megatron_does(lowered):
    roles = {}
    for step in lowered.steps:
        if step.kernel is not None and ".layer.0." in step.node.module:
            roles.setdefault(role(step.node.module, step.node.op), set()).add(step.node.module.split("layer.0.")[1])
    assert roles["columns"] == {"attention.self.query", "attention.self.key", "attention.self.value",
                                "intermediate.dense"}
    assert roles["rows"] == {"attention.output.dense", "output.dense"}
    assert roles["inner"] == {"intermediate.intermediate_act_fn"} and roles["heads"] == {"attention.self"}
    assert {"attention.output", "attention.output.LayerNorm", "output", "output.LayerNorm"} <= roles[None]


def test_a_row_parallel_linear_is_partial_sums_and_gpu_0_adds_the_bias(lowered):
    t, m = ALL_TARGETS["x86-64"], load_machine("skylake-x")
    step = next(s for s in lowered.steps if s.kernel is not None and s.node.module.endswith("layer.0.output.dense"))
    whole = run_graph(lowered, t, machine=m, keep=None)
    out = step.kernel.name
    parts = []
    for g, start in enumerate((0, 24)):
        program = backend_for(t).select(rows_of(step.kernel, "k", start, 24, g == 0), t, m)
        mem = load_memory(program, whole)
        backend_for(t).execute(program, mem, m)
        parts.append(mem.read(out))
    assert not np.array_equal(parts[0], parts[1])
    np.testing.assert_allclose(parts[0] + parts[1], whole[out].reshape(-1), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("target", ["simt", "avx2", "x86-64"])
@pytest.mark.parametrize("gpus", [2, 4])
def test_the_shards_together_compute_one_gpus_forward_pass(lowered, target, gpus):
    t = ALL_TARGETS[target]
    m = load_machine(t.default_uarch)
    out = lowered.context.views[lowered.graph.outputs[0]]
    one = materialize(out, run_graph(lowered, t, machine=m))
    split_steps = []
    many = materialize(out, run_graph(lowered, t, lambda s, p, e: split_steps.append(isinstance(p, tuple)),
                                      machine=m, shards=shards(lowered, gpus)))
    assert sum(split_steps) == 2 * 13  # per layer: q, k, v, 6 attention kernels, 2 rows, the FFN's linear, GELU
    np.testing.assert_allclose(many, one, rtol=0, atol=1e-5 * np.abs(one).max())


def test_heads_that_do_not_split_evenly_are_refused(lowered):
    step = next(s for s in lowered.steps if s.kernel is not None and s.node.module.endswith("attention.self.query"))
    with pytest.raises(UserError, match="4 heads do not split over 3 GPUs"):
        split(step.kernel, step.node.module, step.node.op, 3, 4)


def test_check_and_trace_on_gpus(capsys, folder):
    code, out, _ = cli(capsys, "check", str(folder), "--seq", "10", "--target", "simt", "--gpus", "2",
                       "--parallel", "tensor")
    text = " ".join(out.split())
    assert code == 0 and "each layer split across 2 GPUs (tensor parallel), 26 kernels" in text
    code, out, _ = cli(capsys, "trace", str(folder), "--seq", "10", "--gpus", "2", "--format", "json")
    report = json.loads(out)
    (t,) = report["targets"]  # every GPU target: simt
    reduces = [r for r in t["ops"] if r["op"] == "isasim.all_reduce"]
    assert code == 0 and t["gpus"] == 2 and len(reduces) == 4 and all(r["bound"] == "link nvlink" for r in reduces)
    one = json.loads(cli(capsys, "trace", str(folder), "--seq", "10", "--target", "simt", "--format", "json")[1])
    linear = [r for r in one["targets"][0]["ops"] if r["op"] == "aten.linear.default"]
    shard = [r for r in t["ops"] if r["op"] == "aten.linear.default"]
    assert sum(r["instructions"] for r in shard) < sum(r["instructions"] for r in linear)
    code, _, err = cli(capsys, "check", str(folder), "--seq", "10", "--target", "avx2", "--gpus", "2")
    assert code == 2 and "avx2 runs on a CPU" in err
    code, _, err = cli(capsys, "trace", str(folder), "--seq", "10", "--gpus", "3")
    assert code == 2 and "4 heads do not split over 3 GPUs" in err


def test_scale_over_gpus_in_tensor_parallel(capsys, folder):
    code, out, _ = cli(capsys, "scale", str(folder), "--target", "simt", "--seq", "10", "--gpus", "1,2,4",
                       "--parallel", "tensor", "--format", "json")
    report = json.loads(out)
    assert code == 0 and report["parallel"] == "tensor" and report["link"]["name"] == "nvlink"
    points = report["points"]
    assert [p["gpus"] for p in points] == [1, 2, 4] and points[0]["allreduce_ms"] == 0
    assert all(p["allreduce_ms"] > 0 and p["efficiency"] == pytest.approx(p["speedup"] / p["gpus"])
               for p in points[1:])
    one = json.loads(cli(capsys, "trace", str(folder), "--seq", "10", "--target", "simt", "--gpus", "2",
                         "--format", "json")[1])["targets"][0]
    assert points[1]["seconds"] == pytest.approx(one["seconds"])
