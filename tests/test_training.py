"""A fine-tuning step (models/training.py): captured forward + backward + AdamW, lowered on every target, executed,
and compared with torch.autograd and torch.optim.AdamW; the backward lowerings one by one; `--training` reports."""

import dataclasses
import json

import numpy as np
import pytest
import torch
import transformers
from oprunner import one_op_graph, run_op

from isasim.cli.main import main
from isasim.isa.targets import GPU_TARGETS, TARGETS
from isasim.engine.run import run_graph
from isasim.lowering.pipeline import lower_graph, materialize
from isasim.models import registry
from isasim.models.graph import Ref
from isasim.models.training import PHASES, capture_training, reference_step

ALL = {n: t for n, t in {**TARGETS, **GPU_TARGETS}.items() if t.fp32}


@pytest.fixture(scope="module")
def tiny_step():
    cfg = transformers.BertConfig(hidden_size=64, num_hidden_layers=1, num_attention_heads=2, intermediate_size=96,
                                  vocab_size=60, max_position_embeddings=64)
    spec = dataclasses.replace(registry.resolve("bert-base"), config=cfg, name="tiny")
    step = capture_training(spec, 8, 2, with_values=True)
    return step, reference_step(step), lower_graph(step.captured.graph)


@pytest.mark.parametrize("target", sorted(ALL))
def test_gradients_and_updated_weights_match_torch(tiny_step, target):
    """Every gradient and every AdamW-updated parameter within 1e-4 of torch's, relative to the tensor's largest
    value (+1e-3: the attention key's bias has a gradient of exactly zero in theory, 1e-12 rounding noise in
    practice, which no two summation orders agree on)."""
    assert_step_matches_torch(*tiny_step, target)


def assert_step_matches_torch(step, want, lowered, target: str, nonzero: bool = False) -> None:
    """The loss, every gradient and every updated parameter of the step executed on `target` against torch's
    (`nonzero`: every reference tensor must be non-zero too, or it would test nothing)."""
    storages = run_graph(lowered, ALL[target])
    got = [materialize(lowered.context.views[r], storages) for r in step.captured.graph.outputs]
    n = len(step.params)
    assert abs(float(got[0].reshape(())) - float(want["loss"][0])) < 1e-4
    for i, name in enumerate(step.params):
        for kind, value in (("grad", got[1 + i]), ("param", got[1 + n + i])):
            ref = want[f"{kind}.{name}"]
            assert not nonzero or np.abs(ref).max() > 0, (kind, name)
            err = np.abs(value.reshape(ref.shape) - ref).max()
            assert err <= 1e-4 * (np.abs(ref).max() + 1e-3), (kind, name, err)


@pytest.mark.parametrize("target", ["avx2", "neon"])
def test_a_step_on_many_cores_is_bit_identical_to_one_core(tiny_step, target):
    """Forward, backward and AdamW kernels split across 3 cores (engine/cores.py, as `trace --training
    --cores 3` costs them): the loss, every gradient and every update bit for bit as on one core, with many
    kernels really split (at this tiny size, most of the rest are too short to pay for a fork)."""
    from isasim.backends import load_machine
    from isasim.engine.cores import core_shards

    step, _, lowered = tiny_step
    t = ALL[target]
    m = load_machine(t.default_uarch)
    split = []
    shards = core_shards(t, m, 3)

    def counted(s):
        pieces = shards(s)
        split.append(pieces is not None)
        return pieces

    one = run_graph(lowered, t, machine=m)
    many = run_graph(lowered, t, machine=m, shards=counted)
    for r in step.captured.graph.outputs:
        view = lowered.context.views[r]
        assert np.array_equal(materialize(view, one), materialize(view, many)), r
    assert sum(split) > len(split) / 4, (sum(split), len(split))


def test_every_node_has_its_phase(tiny_step):
    step, _, lowered = tiny_step
    phases = {}
    for node in step.captured.graph.nodes:
        phases.setdefault(node.module.split(".")[0], []).append(node)
    assert set(phases) == set(PHASES)
    ops = {p: {n.op for n in nodes} for p, nodes in phases.items()}
    assert "aten.nll_loss_forward.default" in ops["forward"] and "aten.gelu_backward.default" in ops["backward"]
    assert "aten.embedding_dense_backward.default" in ops["backward"] and "aten.lerp.Scalar" in ops["optimizer"]
    owners = {n.module.removeprefix("optimizer.") for n in phases["optimizer"]}
    assert owners == set(step.params)  # every parameter's update, and nothing else, in the optimizer phase


def test_embedding_gradient_adds_repeated_ids_and_skips_padding():
    rng = np.random.default_rng(0)
    g = rng.standard_normal((2, 5, 3)).astype(np.float32)
    ids = np.array([[1, 4, 1, 0, 1], [4, 2, 0, 0, 1]], dtype=np.int64)
    graph = one_op_graph("aten.embedding_dense_backward.default", {"g": g, "ids": ids},
                         (Ref("g"), Ref("ids"), 6, 0, False), [(6, 3)])
    want = torch.ops.aten.embedding_dense_backward(torch.from_numpy(g), torch.from_numpy(ids), 6, 0, False).numpy()
    for target in ("x86-64", "avx512", "neon"):
        np.testing.assert_allclose(run_op(graph, target)[0], want, rtol=1e-6, atol=1e-6)
    assert np.all(want[0] == 0) and np.all(want[5] == 0)  # padding id 0 and an unused id stay zero


@pytest.mark.parametrize("op,args,fn", [
    ("aten._log_softmax.default", (Ref("x"), -1, False), lambda x: torch.log_softmax(x, -1)),
    ("aten.sum.dim_IntList", (Ref("x"), [0]), lambda x: x.sum(0)),
    ("aten.tanh_backward.default", (Ref("x"), Ref("y")), lambda x: torch.ops.aten.tanh_backward(x, x.tanh())),
    ("aten.gelu_backward.default", (Ref("x"), Ref("x")), lambda x: torch.ops.aten.gelu_backward(x, x)),
    ("aten._softmax_backward_data.default", (Ref("x"), Ref("y"), -1, torch.float32),
     lambda x: torch.ops.aten._softmax_backward_data(x, x.tanh(), -1, torch.float32)),
])
def test_backward_ops_match_torch(op, args, fn):
    rng = np.random.default_rng(1)
    x = (rng.standard_normal((7, 40)) * 3).astype(np.float32)
    y = np.tanh(x)
    args = tuple("torch.float32" if a is torch.float32 else a for a in args)
    want = fn(torch.from_numpy(x)).numpy()
    graph = one_op_graph(op, {"x": x, "y": y}, args, [want.shape])
    for target in ("x86-64", "aarch64", "avx2", "neon"):
        np.testing.assert_allclose(run_op(graph, target)[0].reshape(want.shape), want, rtol=1e-5, atol=2e-5)


def test_trace_training_on_many_cores(capsys):
    """`trace --training --cores N`: each phase costed with its kernels split (cheaper than on one core), each
    target's count in the report; `--cores all`: each core's own socket count, in JSON and CSV alike."""
    args = ["trace", "minilm", "--training", "--seq", "32", "--batch", "4", "--target", "avx2", "--format", "json"]
    assert main(args) == 0
    one = json.loads(capsys.readouterr().out)
    assert main(args + ["--cores", "8"]) == 0
    eight = json.loads(capsys.readouterr().out)
    assert one["targets"][0]["cores"] == 1 and eight["targets"][0]["cores"] == 8
    for p in PHASES:
        assert eight["targets"][0]["cycles"][p] < one["targets"][0]["cycles"][p] / 2, p
    every = args[:7] + ["--target", "avx2", "--target", "neon", "--cores", "all"]
    assert main(every + ["--format", "json"]) == 0
    counts = {t["uarch"]: t["cores"] for t in json.loads(capsys.readouterr().out)["targets"]}
    assert counts == {"skylake-x": 28, "neoverse-n1": 64}  # one socket of each core's part
    assert main(every + ["--format", "csv"]) == 0
    rows = capsys.readouterr().out.splitlines()
    header = rows[0].split(",")
    assert {r.split(",")[header.index("uarch")]: r.split(",")[header.index("cores")] for r in rows[1:]} == \
        {"skylake-x": "28", "neoverse-n1": "64"}
    assert main(every) == 0
    assert "every kernel split across 28 skylake-x cores, 64 neoverse-n1 cores" in \
        " ".join(capsys.readouterr().out.split())


def test_trace_training_reports_each_phase_and_the_run(capsys):
    assert main(["trace", "minilm", "--training", "--seq", "8", "--batch", "4", "--target", "avx2", "--target",
                 "simt", "--epochs", "2", "--format", "json"]) == 0
    r = json.loads(capsys.readouterr().out)
    assert r["steps_per_epoch"] == -(-r["train_sentences"] // 4) and r["epochs"] == 2
    for t in r["targets"]:
        assert all(t["cycles"][p] > 0 for p in PHASES)
        step_s = sum(t["cycles"].values()) / (t["clock_ghz"] * 1e9)
        assert t["step_ms"] == pytest.approx(step_s * 1e3)
        assert t["run_s"] == pytest.approx(step_s * r["steps_per_epoch"] * 2)
        assert t["cycles"]["backward"] > t["cycles"]["forward"]  # two GEMMs per forward GEMM
    assert main(["trace", "minilm", "--training", "--epochs", "0"]) == 2
    assert main(["trace", "minilm", "--epochs", "2"]) == 2  # an epoch count without a run to size
    assert main(["compare", "minilm", "--training", "--plot", "x.png"]) == 2  # the roofline is the forward's


def test_training_markdown_lists_every_phase():
    from isasim.cli.training import render_markdown
    from isasim.engine.training import StepCost, TrainingReport

    cost = StepCost("simt", "a100", 1.0, 3, 10, {"forward": 1e6, "backward": 2e6, "optimizer": 5e5}, 3.5, 42.0)
    text = render_markdown(TrainingReport("m", 8, 2, 1, 10, 5, {}, [cost]))
    assert "| simt | a100 | 1.00 | 2.00 | 0.50 | 3.50 | 42.00 s |" in text


@pytest.mark.parametrize("target", ["simt", "avx2"])
def test_a_data_parallel_steps_reduced_gradients_equal_one_gpus(target):
    """Four shards of a batch of 8, each through forward and backward in the executor, their gradients summed
    as the all-reduce sums them and divided by 4 (engine/data_parallel.py): the whole batch's gradients on one
    device, within float32 rounding (the mean loss makes the shards' mean the batch's gradient)."""
    from isasim.backends import load_machine
    from isasim.engine.data_parallel import data_parallel_gradients

    cfg = transformers.BertConfig(hidden_size=32, num_hidden_layers=1, num_attention_heads=2, intermediate_size=48,
                                  vocab_size=60, max_position_embeddings=32)
    spec = dataclasses.replace(registry.resolve("bert-base"), config=cfg, name="tiny")
    t = ALL[target]
    reduced, one = data_parallel_gradients(spec, 8, 8, 4, t, load_machine(t.default_uarch))
    assert reduced.keys() == one.keys() and len(one) > 10
    for name, want in one.items():
        assert np.abs(want).max() > 0 or "key.bias" in name, name  # (the key's bias gradient is zero in theory)
        err = np.abs(reduced[name].reshape(want.shape) - want).max()
        assert err <= 1e-5 * (np.abs(want).max() + 1e-3), (name, err)


def test_ddp_hides_the_all_reduce_behind_backward_all_but_its_last_bucket():
    """engine/training.py: the step waits for the larger of the last 25 MB bucket's all-reduce and the whole
    all-reduce less the backward it overlaps."""
    from types import SimpleNamespace

    from isasim.engine.training import DDP_BUCKET_BYTES, data_parallel
    from isasim.isa.gpu import load_gpu

    nvlink = load_gpu("a100").links["nvlink"]

    def step(backward_ms: float):
        return SimpleNamespace(uarch="a100", clock_ghz=1.0, ops=[SimpleNamespace(module="backward.x",
                                                                                  cycles=backward_ms * 1e6,
                                                                                  bound=SimpleNamespace(kind="pipe"))])

    whole = nvlink.allreduce_seconds(1e9, 8) * 1e3
    last = nvlink.allreduce_seconds(DDP_BUCKET_BYTES, 8) * 1e3
    short = data_parallel(step(1.0), 8, "nvlink", int(1e9), 4)
    assert short.allreduce_ms == pytest.approx(whole) and short.exposed_ms == pytest.approx(whole - 1.0)
    long = data_parallel(step(100.0), 8, "nvlink", int(1e9), 4)
    assert long.exposed_ms == pytest.approx(last) and last < whole / 10
