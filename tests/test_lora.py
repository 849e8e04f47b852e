"""LoRA (models/lora.py): its fine-tuning step captured, lowered on every target, executed and compared with
torch.autograd and AdamW over the adapters; what the step leaves out; `trace --training --lora`; `finetune
--lora` and the check of its merged model; bad input."""

import dataclasses
import json

import numpy as np
import pytest
import torch
import transformers
from test_finetune import tiny_base  # noqa: F401 (a fixture)
from test_training import ALL, assert_step_matches_torch
from tiny import cli

from isasim.lowering.pipeline import lower_graph
from isasim.models import registry
from isasim.models.lora import Lora
from isasim.models.training import capture_training, reference_step

TINY = transformers.BertConfig(hidden_size=64, num_hidden_layers=2, num_attention_heads=2, intermediate_size=96,
                               vocab_size=60, max_position_embeddings=64)


@pytest.fixture(scope="module")
def lora_step():
    """A LoRA step whose B starts random too (peft's B = 0 would make every gradient of A zero)."""
    spec = dataclasses.replace(registry.resolve("bert-base"), config=TINY, name="tiny")
    step = capture_training(spec, 8, 2, with_values=True, lora=Lora(4, 8.0, ("query", "value"), False))
    return step, reference_step(step), lower_graph(step.captured.graph)


@pytest.mark.parametrize("target", sorted(ALL))
def test_lora_gradients_and_updated_adapters_match_torch(lora_step, target):
    """As tests/test_training.py holds the full step: every gradient and updated parameter within 1e-4 of
    torch's, relative to the tensor's largest value."""
    assert_step_matches_torch(*lora_step, target, nonzero=True)


def test_the_lora_step_trains_adapters_and_head_and_computes_no_frozen_weight_gradient(lora_step):
    step, _, _ = lora_step
    graph = step.captured.graph
    assert all(".lora_A." in k or ".lora_B." in k or ".classifier.modules_to_save." in k for k in step.params)
    assert len(step.params) == 2 * 2 * 2 + 2  # A and B on query and value in 2 layers, the head's weight and bias
    owners = {n.module.removeprefix("optimizer.") for n in graph.nodes if n.module.startswith("optimizer")}
    assert owners == set(step.params)
    full = capture_training(dataclasses.replace(registry.resolve("bert-base"), config=TINY, name="tiny"), 8, 2)

    def weight_shapes(s, trained: bool) -> set:  # linear layers' (an embedding's gradient is no mm)
        return {tuple(p.meta.shape) for p in s.captured.graph.placeholders if p.name.startswith("param.")
                and len(p.meta.shape) == 2 and "embeddings" not in p.name
                and (p.name.removeprefix("param.") in s.params) == trained}

    def gradient_gemms(s) -> set:  # the shapes the backward's matrix products make
        return {tuple(m.shape) for n in s.captured.graph.nodes if n.module == "backward"
                and n.op == "aten.mm.default" for m in n.outs}

    # a weight [N, K]'s gradient is an mm of that shape (or its transpose); the full step makes them all
    assert all(w in gradient_gemms(full) or w[::-1] in gradient_gemms(full) for w in weight_shapes(full, True))
    frozen = weight_shapes(step, False) - weight_shapes(step, True)
    assert frozen and not any(w in gradient_gemms(step) or w[::-1] in gradient_gemms(step) for w in frozen)
    assert graph.config["frozen_params"] > 0 and graph.config["params"] < full.captured.graph.config["params"] / 20


def test_trace_training_with_lora_sets_each_targets_full_step_next_to_its_lora_step(capsys):
    code, out, err = cli(capsys, "trace", "minilm", "--training", "--lora", "4", "--seq", "8", "--batch", "4",
                         "--target", "avx2", "--target", "simt", "--format", "json")
    assert code == 0, err
    r = json.loads(out)
    assert r["optimizer"]["lora"] == {"r": 4, "alpha": 8.0, "targets": ["query", "value"]}
    assert 0 < r["trained_params"] < r["frozen_params"] / 100
    for t in r["targets"]:
        assert t["full_step_ms"] > t["step_ms"] > 0  # cheaper on every target
    code, out, err = cli(capsys, "trace", "minilm", "--training", "--lora", "4", "--seq", "8", "--batch", "4",
                         "--target", "avx2")
    assert code == 0 and "saving" in out and "trained parameters" in out


@pytest.mark.parametrize("argv, says", [
    (("--training", "--lora", "0"), "--lora 0 is out of range"),
    (("--training", "--lora", "1000000000"), "above the model's hidden size 384"),
    (("--training", "--lora", "4", "--lora-targets", "query,attn"), "attn is not one of BERT's linear layers"),
    (("--training", "--lora", "4", "--lora-alpha", "-1"), "--lora-alpha -1.0 is out of range"),
    (("--lora", "4",), "add --training"),
    (("--training", "--lora-alpha", "8"), "add --lora RANK"),
])
def test_bad_lora_arguments_get_one_line(capsys, argv, says):
    code, out, err = cli(capsys, "trace", "minilm", "--seq", "8", *argv)
    assert code == 2 and says in err and err.count("\n") == 1, err


def test_finetune_with_lora_saves_the_adapter_and_a_merged_model_that_check_reads(capsys, tiny_base,  # noqa: F811
                                                                                   tmp_path):
    out = tmp_path / "lora"
    code, text, err = cli(capsys, "finetune", "--base", str(tiny_base), "--lora", "4", "--epochs", "2", "--batch",
                          "32", "--lr", "1e-2", "-o", str(out))
    assert code == 0, err
    report = json.loads((out / "finetune.json").read_text())
    assert report["lora"]["r"] == 4 and 0 < report["trained_params"] < report["model_params"]
    assert f"trained {report['trained_params']:,} parameters" in text
    assert {"adapter_config.json", "adapter_model.safetensors"} <= {p.name for p in (out / "adapter").iterdir()}
    # the merged folder is a plain classifier: transformers loads it without peft, and it is the tuned model
    import peft

    merged = transformers.BertForSequenceClassification.from_pretrained(out).eval()
    tuned = peft.PeftModel.from_pretrained(_untuned(tiny_base), out / "adapter").eval()
    ids = torch.randint(0, 100, (2, 9), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        np.testing.assert_allclose(merged(input_ids=ids).logits.numpy(), tuned(input_ids=ids).logits.numpy(),
                                   atol=1e-5)
    code, text, err = cli(capsys, "check", str(out), "--dataset", "test", "--target", "avx2", "--format", "json")
    assert code == 0, err
    t = json.loads(text)["targets"][0]
    assert t["passed"] and t["label_agreement"] == 1.0
    assert t["accuracy"] == pytest.approx(report["test_accuracy"])
    # a full fine-tune into the same folder leaves no adapter of the earlier one beside its weights
    code, text, err = cli(capsys, "finetune", "--base", str(tiny_base), "--epochs", "1", "-o", str(out))
    assert code == 0, err
    assert not (out / "adapter").exists() and json.loads((out / "finetune.json").read_text())["lora"] is None


def _untuned(base_folder) -> torch.nn.Module:
    """The classifier finetune starts from (its head as seed 0 draws it), for the adapter to be applied to."""
    from isasim.models.finetune import classifier_from

    return classifier_from(registry.resolve(str(base_folder)), 0)
