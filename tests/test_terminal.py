"""What a newcomer's terminal shows: tables that fit 100 columns without cutting a name, files that say they
were written, `check --on-host` that runs what the host can run, and `--text` that shows what was read."""

import json
import re

import pytest
from tiny import cli as run
from tiny import save_bert

NARROW = [
    ["trace", "minilm", "--seq", "8", "--target", "x86-64", "--target", "simt"],
    ["trace", "minilm", "--training", "--seq", "8", "--batch", "2", "--target", "avx2", "--target", "simt"],
    ["check", "minilm", "--seq", "8", "--target", "neon", "--target", "simt"],
    ["compare", "minilm", "--seq", "8"],
    ["explain", "minilm", "--seq", "8", "--op", "linear", "--target", "avx512"],
    ["explain", "minilm", "--seq", "8", "--op", "layer_norm", "--target", "simt"],
]


@pytest.mark.parametrize("argv", NARROW, ids=[" ".join(a[:1] + a[4:7]) for a in NARROW])
def test_tables_fit_100_columns_without_cutting_a_name(capsys, monkeypatch, argv):
    monkeypatch.setenv("COLUMNS", "100")
    code, out, err = run(capsys, *argv)
    assert code == 0, err
    assert max(map(len, out.splitlines())) <= 100
    assert "…" not in out  # rich's ellipsis: a cell cut short
    if argv[0] == "trace" and "--training" not in argv:
        assert re.search(r"intermediate\.intermediate_act_fn|\bLayerNorm\b", out)  # module paths in full
        assert "attention mask" in out and "encoder.layer.0.*" in out  # what each group stands for


def test_wide_shows_every_column(capsys, monkeypatch):
    code, out, _ = run(capsys, "trace", "minilm", "--seq", "8", "--target", "x86-64", "--wide")
    assert code == 0 and all(h in out for h in ("L1 B", "L2 B", "LLC B", "DRAM B"))
    assert max(map(len, out.splitlines())) > 100


def test_written_files_say_so(capsys, tmp_path):
    code, out, err = run(capsys, "trace", "minilm", "--seq", "8", "--target", "neon", "--format", "json",
                         "-o", str(tmp_path / "r.json"), "--chrome-trace", str(tmp_path / "t.json"))
    assert code == 0 and out == "" and json.loads((tmp_path / "r.json").read_text())["seq"] == 8
    assert f"wrote the report (json) to {tmp_path / 'r.json'}" in err and str(tmp_path / "t.json") in err
    code, out, _ = run(capsys, "emit", "minilm", "--seq", "8", "--target", "neon", "--op", "gelu",
                       "-o", str(tmp_path / "asm"))
    assert code == 0 and "(.s, manifest.json)" in out


def test_check_on_host_runs_what_this_host_can_and_skips_the_rest(capsys, tmp_path):
    from isasim.isa import native

    if native.host_isa() != "x86-64":
        pytest.skip("the defaults' x86-64 targets run natively only on an x86-64 host")
    folder = save_bert(tmp_path / "m", 2, hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                       intermediate_size=24, vocab_size=60, max_position_embeddings=16)
    code, out, err = run(capsys, "check", str(folder), "--seq", "5", "--on-host", "--format", "json")
    assert code == 0, err
    report = json.loads(out)
    hosts = {t["target"]: t["on_host"] for t in report["targets"]}
    assert hosts["simt"] == {"skipped": "simt code needs an NVIDIA GPU (its PTX is checked by ptxas in "
                                        "`isasim emit`)", "passed": True}
    ran = [t for t, h in hosts.items() if "skipped" not in h]
    assert {"x86-64", "aarch64", "neon"} <= set(ran) and all(hosts[t]["bit_identical_to_executor"] for t in ran)
    code, out, _ = run(capsys, "check", str(folder), "--seq", "5", "--on-host", "--target", "x86-64",
                       "--target", "simt")
    assert code == 0 and "simt machine code: not run here: simt code needs an NVIDIA GPU" in out


def test_text_shows_its_tokens_and_sizes_the_sequence(capsys):
    code, out, err = run(capsys, "check", "minilm", "--text", "Television!", "--target", "neon", "--format", "json")
    assert code == 0, err
    report = json.loads(out)
    assert report["tokens"] == ["[CLS]", "television", "!", "[SEP]"] and report["seq"] == 4
    assert report["reference_prediction"] is None  # MiniLM is an encoder, not a classifier


def test_shape_flags_are_checked_before_a_model_loads(capsys):
    import time

    start = time.monotonic()
    code, _, err = run(capsys, "check", "minilm", "--seq", "0")
    assert code == 2 and "--seq 0" in err and time.monotonic() - start < 3
