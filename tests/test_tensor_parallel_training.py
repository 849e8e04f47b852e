"""A tensor-parallel fine-tuning step (models/tensor_parallel.py, engine/tensor_parallel_training.py): each
GPU's share of the model captured as a step of its own, every GPU's step executed in lockstep with the
all-reduces summing their buffers, gives one GPU's gradients within float32 rounding; what one GPU costs is
its share and four all-reduces a layer."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import transformers
from tiny import cli, save_bert

from isasim.backends import load_machine
from isasim.engine.tensor_parallel_training import assemble, gradients
from isasim.isa.targets import GPU_TARGETS
from isasim.models import registry
from isasim.models.megatron import split_dim
from isasim.models.tensor_parallel import ALL_REDUCE_OP
from isasim.models.training import capture_training

CONFIG = dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=48, vocab_size=60,
              max_position_embeddings=32)


@pytest.fixture(scope="module")
def spec():
    return dataclasses.replace(registry.resolve("bert-base"), config=transformers.BertConfig(**CONFIG), name="tiny")


def test_each_gpu_holds_megatrons_share_and_all_reduces_four_times_a_layer(spec):
    whole = capture_training(spec, 8, 2)
    share = capture_training(spec, 8, 2, tensor=(1, 4))
    shapes = {p.target: p.meta.shape for p in whole.captured.graph.placeholders if p.name.startswith("param.")}
    mine = {p.target: p.meta.shape for p in share.captured.graph.placeholders if p.name.startswith("param.")}
    assert mine.keys() == shapes.keys()
    for name, shape in shapes.items():
        dim = split_dim(name)
        want = shape if dim is None else tuple(s // 4 if d == dim else s for d, s in enumerate(shape))
        assert mine[name] == want, name
    assert split_dim("model.bert.encoder.layer.0.attention.self.value.bias") == 0
    assert split_dim("model.bert.encoder.layer.0.output.dense.weight") == 1
    assert split_dim("model.bert.encoder.layer.0.output.dense.bias") is None
    assert split_dim("model.bert.pooler.dense.weight") is None
    reduces = [n.module for n in share.captured.graph.nodes if n.op == ALL_REDUCE_OP]
    assert reduces == ["forward"] * 4 + ["backward"] * 4  # 2 layers: after each row-parallel linear, before each
    assert not [n for n in whole.captured.graph.nodes if n.op == ALL_REDUCE_OP]  # column-parallel block


def test_a_feed_forward_that_does_not_split_evenly_is_refused(spec):
    from isasim.isa.errors import UserError

    odd = dataclasses.replace(spec, config=transformers.BertConfig(**{**CONFIG, "intermediate_size": 50}))
    with pytest.raises(UserError, match="feed-forward's 50 columns, which 4 does not divide"):
        capture_training(odd, 8, 2, tensor=(0, 4))
    assert capture_training(odd, 8, 2, tensor=(0, 2)).params  # 2 divides 4 heads and 50 columns


@pytest.mark.parametrize("gpus", [2, 4])
def test_the_gpus_shares_of_a_step_give_one_gpus_gradients(spec, gpus):
    t = GPU_TARGETS["simt"]
    one, shares = gradients(spec, 8, 2, gpus, t, load_machine(t.default_uarch))
    assert len(shares) == gpus and len(one) > 30
    for name, want in one.items():
        mine = [s[name] for s in shares]
        if split_dim(name) is None:  # held whole: every GPU computes the same bits from the same sums
            assert all(np.array_equal(m, mine[0]) for m in mine), name
        got = assemble(name, mine)
        assert got.shape == want.shape, name
        assert np.abs(want).max() > 0 or "key.bias" in name, name  # (the key's bias gradient is zero in theory)
        err = np.abs(got - want).max()
        assert err <= 1e-5 * (np.abs(want).max() + 1e-3), (name, err)


def test_a_partial_sum_left_unreduced_is_caught(spec, monkeypatch):
    """Without the all-reduce's sum, the layers after it see one GPU's partial products: the gradients differ."""
    from isasim.engine import tensor_parallel_training

    monkeypatch.setattr(tensor_parallel_training, "ALL_REDUCE_OP", "none")
    t = GPU_TARGETS["simt"]
    one, shares = gradients(spec, 8, 2, 2, t, load_machine(t.default_uarch))
    name = "model.classifier.weight"
    assert np.abs(assemble(name, [s[name] for s in shares]) - one[name]).max() > 1e-4


def test_trace_a_tensor_parallel_step(capsys, tmp_path):
    folder = save_bert(tmp_path / "tiny", 5, **CONFIG)
    args = ("trace", str(folder), "--training", "--target", "simt", "--seq", "16", "--batch", "2")
    rows = {}
    for gpus, parallel in ((1, "data"), (2, "tensor"), (2, "data")):
        code, out, _ = cli(capsys, *args, "--gpus", str(gpus), "--parallel", parallel, "--format", "csv")
        header, row = out.splitlines()[:2]
        assert code == 0
        rows[gpus, parallel] = dict(zip(header.split(","), row.split(",")))
    tp = rows[2, "tensor"]
    assert tp["parallel"] == "tensor" and float(tp["allreduce_ms"]) > 0
    assert float(tp["waits_ms"]) == pytest.approx(float(tp["allreduce_ms"]))  # nothing hides an all-reduce
    one = rows[1, "data"]
    assert float(tp["forward_cycles"]) < float(one["forward_cycles"])  # half the heads and linear columns
    code, out, _ = cli(capsys, *args, "--gpus", "2", "--parallel", "tensor")
    assert code == 0 and "tensor parallel on 2 GPUs over nvlink (Megatron-LM)" in " ".join(out.split())
    assert "8 all-reduces per step" in " ".join(out.split())
    code, _, err = cli(capsys, *args, "--gpus", "3", "--parallel", "tensor")
    assert code == 2 and "4 heads do not split over 3 GPUs" in err
    code, _, err = cli(capsys, *args, "--gpus", "2", "--parallel", "tensor", "--lora", "4")
    assert code == 2 and "--lora with --parallel tensor is not modelled" in err
