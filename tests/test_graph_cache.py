"""The graph cache returns exactly the graph a fresh capture gives, and never serves a stale one."""

import json

import transformers

from isasim.cli.main import main
from isasim.models import graph_cache


def test_round_trip_is_exact(tmp_path, monkeypatch):
    import dataclasses

    from isasim.models import capture, registry

    cfg = transformers.BertConfig(hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                                  intermediate_size=24, vocab_size=50, max_position_embeddings=16)
    spec = dataclasses.replace(registry.resolve("bert-base"), config=cfg, name="tiny")
    g = capture.capture(spec, 5, 2).graph
    back = graph_cache.from_json(json.loads(json.dumps(graph_cache.to_json(g))))
    assert back.nodes == g.nodes and back.placeholders == g.placeholders and back.outputs == g.outputs
    assert back.config == g.config


def test_key_follows_the_config_file_and_the_shape(tmp_path):
    folder = tmp_path / "m"
    folder.mkdir()
    (folder / "config.json").write_text('{"model_type": "bert", "hidden_size": 16}')
    k1 = graph_cache.key(str(folder), 8, 1, 0, False)
    assert k1 == graph_cache.key(str(folder), 8, 1, 0, False)
    assert k1 != graph_cache.key(str(folder), 9, 1, 0, False)
    (folder / "config.json").write_text('{"model_type": "bert", "hidden_size": 32}')
    k2 = graph_cache.key(str(folder), 8, 1, 0, False)
    assert k1 != k2
    (folder / "model.safetensors").write_bytes(b"not really")  # new weights: validate them again
    assert graph_cache.key(str(folder), 8, 1, 0, False) != k2
    assert graph_cache.key(str(tmp_path / "missing"), 8, 1, 0, False) is None


def test_trace_from_cache_equals_fresh_capture(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("ISASIM_CACHE_DIR", str(tmp_path))
    argv = ["trace", "minilm", "--seq", "8", "--format", "json"]
    assert main(argv) == 0
    fresh = capsys.readouterr().out
    assert len(list((tmp_path / "graphs").glob("*.json"))) == 1
    assert main(argv) == 0
    assert capsys.readouterr().out == fresh
    monkeypatch.setenv("ISASIM_CACHE", "off")
    assert graph_cache.load(graph_cache.key("minilm", 8, 1, 0, False)) is None
