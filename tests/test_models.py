"""Tests for isasim.models: registry errors, inputs, capture to Graph, PyTorch references."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
import transformers

from isasim.models.capture import capture
from isasim.isa.errors import UserError
from isasim.isa.dtype import DType
from isasim.models.graph import Graph, PlaceholderKind, Ref, iter_refs
from isasim.models.inputs import make_inputs
from isasim.models.reference import final_hidden_state, flop_count, reference_outputs
from isasim.models.registry import ModelSpec, resolve

TINY = dict(
    hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64, vocab_size=100,
    max_position_embeddings=64,
)


def tiny_spec() -> ModelSpec:
    cfg = transformers.BertConfig(**TINY)
    cfg._attn_implementation = "eager"
    return ModelSpec("tiny", cfg, None)


def save_tiny(folder, seed: int = 3) -> transformers.BertModel:
    torch.manual_seed(seed)
    cfg = transformers.BertConfig(**TINY)
    cfg._attn_implementation = "eager"  # same attention kernel as the capture, so outputs match bit for bit
    model = transformers.BertModel(cfg).eval()
    model.save_pretrained(folder, safe_serialization=True)
    return model


def one_line_error(fn, *args, match: str) -> str:
    with pytest.raises(UserError, match=match) as info:
        fn(*args)
    msg = str(info.value)
    assert "\n" not in msg and msg.strip() == msg and msg
    return msg


# ---- registry -------------------------------------------------------------------------------------------

def test_known_names():
    base = resolve("bert-base")
    assert base.weights is None and base.config.hidden_size == 768 and base.config.num_hidden_layers == 12
    large = resolve("bert-large")
    assert (large.config.hidden_size, large.config.num_hidden_layers, large.config.num_attention_heads,
            large.config.intermediate_size) == (1024, 24, 16, 4096)
    assert base.config._attn_implementation == "eager" == large.config._attn_implementation


def test_unknown_name(tmp_path):
    msg = one_line_error(resolve, "bert-huge", match="unknown model 'bert-huge'")
    assert "bert-base" in msg and "minilm" in msg and "config.json" in msg


def test_missing_config(tmp_path):
    one_line_error(resolve, str(tmp_path), match="no config.json")


def test_corrupt_json(tmp_path):
    (tmp_path / "config.json").write_text("{ not json")
    one_line_error(resolve, str(tmp_path), match="not valid JSON")


def test_wrong_model_type(tmp_path):
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "gpt2", "n_embd": 32}))
    one_line_error(resolve, str(tmp_path), match="model_type 'gpt2'.*BERT")


def test_bad_config_values(tmp_path):
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "bert", "hidden_size": 30,
                                                       "num_attention_heads": 4}))
    (tmp_path / "model.safetensors").write_bytes(b"")
    one_line_error(resolve, str(tmp_path), match="not divisible|cannot build|not a valid BERT config")


def test_corrupt_safetensors(tmp_path):
    save_tiny(tmp_path)
    (tmp_path / "model.safetensors").write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{garbage" + bytes(40))
    one_line_error(resolve, str(tmp_path), match="corrupt")


def test_weights_not_matching_config(tmp_path):
    save_tiny(tmp_path)
    cfg = json.loads((tmp_path / "config.json").read_text())
    cfg["intermediate_size"] = 48
    (tmp_path / "config.json").write_text(json.dumps(cfg))
    one_line_error(resolve, str(tmp_path), match="does not match its config.json.*shape")
    cfg["intermediate_size"], cfg["num_hidden_layers"] = 64, 3
    (tmp_path / "config.json").write_text(json.dumps(cfg))
    one_line_error(resolve, str(tmp_path), match="missing")


def test_minilm_offline():
    spec = resolve("minilm")
    assert spec.weights is not None and spec.config.hidden_size == 384 and spec.has_pooler
    cap = capture(spec, 8, 1)  # cost-only: never reads the weights
    assert cap.graph.config["params"] == 22_713_216
    assert cap.graph.values is None


# ---- inputs ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize("seq,batch,match", [(0, 1, r"--seq 0 is out of range: tiny accepts 1\.\.64"),
                                             (65, 1, "--seq 65"), (8, 0, "--batch 0")])
def test_shape_range(seq, batch, match):
    spec = tiny_spec()
    one_line_error(make_inputs, spec.config, seq, batch, None, 0, "tiny", match=match)
    one_line_error(capture, spec, seq, batch, match=match)


def test_seeded_inputs():
    cfg = tiny_spec().config
    a, b, c = (make_inputs(cfg, 16, 2, None, s) for s in (1, 1, 2))
    assert a["input_ids"].shape == (2, 16) and a["input_ids"].dtype == torch.int64
    assert torch.equal(a["input_ids"], b["input_ids"]) and not torch.equal(a["input_ids"], c["input_ids"])
    assert int(a["input_ids"].max()) < 100 and int(a["input_ids"].min()) >= 0
    assert a["attention_mask"].eq(1).all() and a["token_type_ids"].eq(0).all()


def test_text_inputs():
    cfg = resolve("bert-base").config
    x = make_inputs(cfg, 10, 2, "Hello world", 0)
    ids = x["input_ids"][0].tolist()
    assert ids[:4] == [101, 7592, 2088, 102] and ids[4:] == [0] * 6  # [CLS] hello world [SEP] [PAD]...
    assert x["attention_mask"][1].tolist() == [1] * 4 + [0] * 6
    assert make_inputs(cfg, 3, 1, "one two three four", 0)["input_ids"].tolist() == [[101, 2028, 102]]
    assert make_inputs(cfg, 1, 1, "one two", 0)["input_ids"].tolist() == [[101]]
    one_line_error(make_inputs, tiny_spec().config, 8, 1, "hello world", 0, match="vocabulary")


# ---- capture --------------------------------------------------------------------------------------------

def check_graph(g: Graph, seq: int, batch: int, hidden: int) -> None:
    names = {p.name for p in g.placeholders}
    for n in g.nodes:
        assert n.name not in names
        for r in iter_refs(n.args + tuple(v for _, v in n.kwargs)):
            assert r.name in names, f"{n.name} reads {r.name} before it is defined"
            assert r.index < len(g.meta(Ref(r.name)).shape) + 3 and g.meta(r) is not None
        names.add(n.name)
    for n in g.nodes:
        assert "getitem" not in n.op and "dropout" not in n.op and "assert" not in n.op
        assert all(isinstance(o.dtype, DType) for o in n.outs)
    assert g.meta(g.outputs[0]).shape == (batch, seq, hidden)
    assert g.meta(g.outputs[1]).shape == (batch, hidden)
    modules = {n.module for n in g.nodes}
    assert any(m.startswith("encoder.layer.1.attention.self") for m in modules)
    assert "encoder.layer.1.intermediate.dense" in modules and "" in modules
    assert not any("self" in m.split(".")[0] or "L[" in m or "getattr" in m for m in modules)


@pytest.mark.parametrize("core_aten", [False, True])
def test_capture_tiny(core_aten):
    cap = capture(tiny_spec(), 12, 3, with_values=False, core_aten=core_aten)
    g = cap.graph
    check_graph(g, 12, 3, 32)
    assert g.values is None and cap.model is None
    ops = {n.op for n in g.nodes}
    if core_aten:
        assert {"aten.addmm.default", "aten.native_layer_norm.default"} <= ops
        ln = [n for n in g.nodes if n.op == "aten.native_layer_norm.default"][0]
        assert len(ln.outs) == 3 and ln.outs[0].shape == (3, 12, 32)
        assert any(r == Ref(ln.name, 0) for n in g.nodes for r in iter_refs(n.args))
    else:
        assert {"aten.linear.default", "aten.layer_norm.default", "aten.softmax.int"} <= ops
    kinds = {p.kind for p in g.placeholders}
    assert {PlaceholderKind.PARAMETER, PlaceholderKind.BUFFER, PlaceholderKind.INPUT} <= kinds
    targets = {p.target: p for p in g.placeholders}
    assert targets["input_ids"].meta.shape == (3, 12) and targets["input_ids"].meta.dtype is DType.I64
    assert targets["encoder.layer.1.intermediate.dense.weight"].meta.shape == (64, 32)
    assert all(a != "meta" for n in g.nodes for a in n.args + tuple(v for _, v in n.kwargs))
    c = g.config
    assert (c["layers"], c["hidden"], c["heads"], c["seq"], c["batch"]) == (2, 32, 2, 12, 3)
    assert c["params"] == sum(p.numel() for p in transformers.BertModel(tiny_spec().config).parameters())
    assert g.to_networkx().number_of_edges() > len(g.nodes)


def test_bert_base_params():
    g = capture(resolve("bert-base"), 16, 1).graph
    assert g.config["params"] == 109_482_240
    assert sum(1 for n in g.nodes if n.op == "aten.linear.default") == 12 * 6 + 1


@pytest.mark.parametrize("core_aten", [False, True])
def test_reference_outputs_tiny(core_aten):
    cap = capture(tiny_spec(), 9, 2, seed=5, with_values=True, core_aten=core_aten)
    g = cap.graph
    assert set(g.values) == {p.name for p in g.placeholders}
    for p in g.placeholders:
        assert g.values[p.name].shape == p.meta.shape and g.values[p.name].dtype == p.meta.dtype.numpy
    ref = reference_outputs(cap)
    assert set(ref) == {n.name for n in g.nodes}
    for n in g.nodes:
        assert [r.shape for r in ref[n.name]] == [o.shape for o in n.outs], n.name
        assert [r.dtype for r in ref[n.name]] == [o.dtype.numpy for o in n.outs], n.name
    out = g.outputs[0]
    hidden = final_hidden_state(cap)
    np.testing.assert_allclose(ref[out.name][out.index], hidden, rtol=1e-5, atol=1e-5)
    assert np.abs(hidden).max() > 0.1
    # the seed decides the weights
    again = capture(tiny_spec(), 9, 2, seed=5, with_values=True)
    other = capture(tiny_spec(), 9, 2, seed=6, with_values=True)
    np.testing.assert_array_equal(final_hidden_state(again), final_hidden_state(cap))
    assert not np.allclose(final_hidden_state(other), hidden)


def test_local_folder_loads(tmp_path):
    model = save_tiny(tmp_path, seed=11)
    spec = resolve(str(tmp_path))
    assert spec.weights == tmp_path and spec.name == tmp_path.name
    cap = capture(spec, 7, 2, seed=0, with_values=True)
    x = make_inputs(spec.config, 7, 2, None, 0)
    with torch.no_grad():
        want = model(**x).last_hidden_state.numpy()
    ref = reference_outputs(cap)
    out = cap.graph.outputs[0]
    np.testing.assert_array_equal(final_hidden_state(cap), want)
    np.testing.assert_allclose(ref[out.name][out.index], want, rtol=1e-5, atol=1e-5)
    word = next(p for p in cap.graph.placeholders if p.target == "embeddings.word_embeddings.weight")
    np.testing.assert_array_equal(cap.graph.values[word.name], model.embeddings.word_embeddings.weight.detach())


def test_minilm_values_match_sentence_embedding_model():
    spec = resolve("minilm")
    cap = capture(spec, 6, 1, text="the cat sat", with_values=True)
    assert cap.inputs["input_ids"][0].tolist()[:2] == [101, 1996]
    ref = reference_outputs(cap)
    out = cap.graph.outputs[0]
    np.testing.assert_allclose(ref[out.name][out.index], final_hidden_state(cap), rtol=1e-4, atol=1e-5)
    word = next(p for p in cap.graph.placeholders if p.target == "embeddings.word_embeddings.weight")
    from safetensors.numpy import load_file
    stored = load_file(str(spec.weights / "model.safetensors"))["embeddings.word_embeddings.weight"]
    np.testing.assert_array_equal(cap.graph.values[word.name], stored)


def test_flop_count_bert_base():
    assert flop_count(resolve("bert-base"), 128, 1) == 22_348_431_360


def test_pytorch_bin_with_task_prefix(tmp_path):
    """A BertFor* checkpoint as pytorch_model.bin: 'bert.' prefixes stripped, head weights ignored."""
    model = save_tiny(tmp_path, seed=4)
    (tmp_path / "model.safetensors").unlink()
    state = {f"bert.{k}": v for k, v in model.state_dict().items()}
    state["cls.predictions.bias"] = torch.zeros(100)
    torch.save(state, tmp_path / "pytorch_model.bin")
    cap = capture(resolve(str(tmp_path)), 5, 1, with_values=True)
    with torch.no_grad():
        want = model(**cap.inputs).last_hidden_state.numpy()
    np.testing.assert_array_equal(final_hidden_state(cap), want)
    state["bert.encoder.layer.0.output.dense.weight"] = torch.zeros(32, 32)
    torch.save(state, tmp_path / "pytorch_model.bin")
    one_line_error(resolve, str(tmp_path), match="output.dense.weight has shape")
