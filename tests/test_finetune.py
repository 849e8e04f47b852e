"""`isasim finetune` and `isasim check FOLDER --dataset`: fine-tune a (tiny) BERT on the shipped movie/TV
dataset, save it as safetensors, and run every test sentence through the lowered programs."""

import json

import pytest

from tiny import cli as run
from tiny import save_bert

from isasim.cli.main import main
from isasim.models.finetune import load_split


@pytest.fixture(scope="module")
def tiny_base(tmp_path_factory):
    """A small BERT with the bert-base-uncased vocabulary (the dataset is tokenised with it)."""
    return save_bert(tmp_path_factory.mktemp("tiny-base"), 0, hidden_size=32, num_hidden_layers=2,
                     num_attention_heads=4, intermediate_size=48, max_position_embeddings=64)


@pytest.fixture(scope="module")
def tuned(tiny_base, tmp_path_factory):
    out = tmp_path_factory.mktemp("tuned")
    assert main(["finetune", "--base", str(tiny_base), "--epochs", "2", "--batch", "32", "--lr", "1e-3",
                 "-o", str(out)]) == 0
    return out


def test_dataset_is_balanced_and_split_by_phrase():
    splits = {s: load_split(s) for s in ("train", "dev", "test")}
    assert [len(v) for v in splits.values()] == [256, 48, 48]
    for rows in splits.values():
        assert sum(r["label"] for r in rows) * 2 == len(rows)
    train = {r["text"] for r in splits["train"]}
    assert not train & {r["text"] for r in splits["test"]}


def test_finetune_saves_safetensors_and_its_report(tuned):
    files = {p.name for p in tuned.iterdir()}
    assert {"model.safetensors", "config.json", "finetune.json"} <= files and "pytorch_model.bin" not in files
    report = json.loads((tuned / "finetune.json").read_text())
    assert len(report["epoch_loss"]) == len(report["dev_accuracy"]) == 2
    assert report["epoch_loss"][1] < report["epoch_loss"][0]  # it learns
    cfg = json.loads((tuned / "config.json").read_text())
    assert cfg["architectures"] == ["BertForSequenceClassification"] and cfg["id2label"] == {"0": "movie", "1": "tv"}


def test_finetune_is_deterministic_for_a_seed(tiny_base, tuned, tmp_path):
    again = tmp_path / "again"
    assert main(["finetune", "--base", str(tiny_base), "--epochs", "2", "--batch", "32", "--lr", "1e-3",
                 "-o", str(again)]) == 0
    assert (again / "model.safetensors").read_bytes() == (tuned / "model.safetensors").read_bytes()


def test_check_runs_every_test_sentence_on_every_target(capsys, tuned):
    code, out, err = run(capsys, "check", str(tuned), "--dataset", "test", "--target", "x86-64", "--target",
                         "avx512", "--target", "neon", "--format", "json")
    assert code == 0, err
    report = json.loads(out)
    assert report["batch"] == 48
    finetuned = json.loads((tuned / "finetune.json").read_text())
    for t in report["targets"]:
        assert t["passed"] and t["label_agreement"] == 1.0 and t["counts_match_cost_model"]
        assert t["accuracy"] == pytest.approx(finetuned["test_accuracy"])  # the same model PyTorch tested


def test_dataset_needs_a_classifier(capsys):
    code, _, err = run(capsys, "check", "minilm", "--dataset", "test")
    assert code == 2 and "no classification head" in err and err.count("\n") == 1


def test_finetune_rejects_a_sequence_longer_than_the_model(capsys, tiny_base, tmp_path):
    code, _, err = run(capsys, "finetune", "--base", str(tiny_base), "--seq", "128", "-o", str(tmp_path / "x"))
    assert code == 2 and "--seq 128" in err and err.count("\n") == 1


def test_a_text_through_the_classifier_names_its_label_on_every_target(capsys, tuned):
    """The seed's movie-versus-TV question, answered by each simulated machine: the tokens the model read,
    and each target's label with its probability, next to PyTorch's."""
    text = "a film about a television series"
    code, out, err = run(capsys, "check", str(tuned), "--text", text, "--target", "x86-64", "--target", "simt",
                         "--format", "json")
    assert code == 0, err
    report = json.loads(out)
    assert report["tokens"] == ["[CLS]", "a", "film", "about", "a", "television", "series", "[SEP]"]
    assert report["seq"] == 8  # sized to the text
    want = report["reference_prediction"]
    assert want["label"] in ("movie", "tv") and 0.5 <= want["probability"] <= 1
    for t in report["targets"]:
        assert t["prediction"]["label"] == want["label"]
        assert t["prediction"]["probability"] == pytest.approx(want["probability"], abs=1e-5)
    code, out, _ = run(capsys, "check", str(tuned), "--text", text, "--target", "neon")
    assert code == 0 and "tokens (8): [CLS] a film about a television series [SEP]" in out
    assert f"PyTorch {want['label']}" in out and f"neon {want['label']}" in out


def test_int8_check_on_the_dataset_reports_pytorchs_own_int8_next_to_it(capsys, tuned):
    code, out, err = run(capsys, "check", str(tuned), "--dataset", "test", "--precision", "int8", "--target", "avx2",
                         "--format", "json")
    assert code == 0, err
    report = json.loads(out)
    anchor = report["pytorch_dynamic_int8"]
    assert set(anchor) == {"max_abs_err", "label_agreement", "accuracy"}
    t = report["targets"][0]
    assert t["passed"] and t["ops_exact"] and t["max_abs_err_fp32"] > 0
    # int8 moves a few logits across the boundary, as PyTorch's own int8 does: most labels stay
    assert t["label_agreement"] >= 0.9 and anchor["label_agreement"] >= 0.9


def test_bf16_check_on_the_dataset_reports_pytorchs_own_bf16_next_to_it(capsys, tuned):
    code, out, err = run(capsys, "check", str(tuned), "--dataset", "test", "--precision", "bf16", "--target", "amx",
                         "--format", "json")
    assert code == 0, err
    report = json.loads(out)
    anchor = report["pytorch_autocast_bf16"]
    assert set(anchor) == {"max_abs_err", "label_agreement", "accuracy"} and report["pytorch_dynamic_int8"] is None
    t = report["targets"][0]
    assert t["target"] == "amx" and t["passed"] and t["ops_exact"] and t["max_abs_err_fp32"] > 0
    assert t["label_agreement"] >= 0.9 and anchor["label_agreement"] >= 0.9
