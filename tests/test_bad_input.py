"""The command line's contract under bad input and faults: one line on stderr, exit status 2, no traceback,
nothing that existed before changed or lost, nothing hanging. A regression test for each family of cases
found, and a fuzzer that mixes them on every subcommand."""

import contextlib
import io
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from tiny import save_bert

from isasim.cli.main import main

TINY = dict(hidden_size=16, num_hidden_layers=1, num_attention_heads=2, intermediate_size=24, vocab_size=60,
            max_position_embeddings=32)


@contextlib.contextmanager
def deadline(seconds: int):
    """Fail, rather than hang, when the body takes longer than `seconds`."""
    def stop(signum, frame):
        raise TimeoutError(f"still running after {seconds} s: it hangs")

    old = signal.signal(signal.SIGALRM, stop)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, old)


def snapshot(folder: Path) -> dict:
    """Every regular file under `folder` with its bytes (FIFOs and links to devices as their kind)."""
    out = {}
    for p in sorted(folder.rglob("*")):
        if p.is_symlink():
            out[str(p)] = ("link", os.readlink(p))
        elif p.is_file():
            out[str(p)] = p.read_bytes()
        elif not p.is_dir():
            out[str(p)] = "special"
    return out


def refused(argv: list[str], around: Path | None = None, seconds: int = 120) -> str:
    """Run `isasim ARGV`; assert the contract; return the one line it printed."""
    before = snapshot(around) if around else None
    err = io.StringIO()
    with deadline(seconds), contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
        code = main([str(a) for a in argv])
    text = err.getvalue()
    assert code == 2, (argv, code, text)
    assert text.startswith("isasim: error: ") and text.count("\n") == 1 and "Traceback" not in text, text
    if around:
        assert snapshot(around) == before, f"{argv} changed files that were there before"
    return text


@pytest.fixture(scope="module")
def good(tmp_path_factory) -> Path:
    return save_bert(tmp_path_factory.mktemp("good"), 1, **TINY)


def folder_with(tmp: Path, config, weights: bytes | None = None) -> Path:
    tmp.mkdir(parents=True, exist_ok=True)
    (tmp / "config.json").write_text(config if isinstance(config, str) else json.dumps(config))
    if weights is not None:
        (tmp / "model.safetensors").write_bytes(weights)
    return tmp


# ---- 1. special files ----------------------------------------------------------------------------------
@pytest.mark.parametrize("command", [["trace"], ["emit", "-o", "OUT"], ["explain", "--op", "gelu"], ["check"]])
@pytest.mark.parametrize("kind", ["fifo", "dev-zero", "fifo weights", "folder"])
def test_special_files_are_refused_unread(tmp_path, command, kind):
    model = tmp_path / "m"
    model.mkdir()
    if kind == "fifo":
        os.mkfifo(model / "config.json")
    elif kind == "dev-zero":
        (model / "config.json").symlink_to("/dev/zero")
    elif kind == "folder":
        (model / "config.json").mkdir()
    else:
        (model / "config.json").write_text(json.dumps({"model_type": "bert", **TINY}))
        os.mkfifo(model / "model.safetensors")
    argv = [command[0], model, "--seq", "4", "--target", "x86-64"] + [tmp_path / "out" if a == "OUT" else a
                                                                        for a in command[1:]]
    line = refused(argv, tmp_path, seconds=60)
    assert "not a regular file" in line


# ---- 2. outputs ---------------------------------------------------------------------------------------
def test_a_failed_write_keeps_the_old_report(good, tmp_path, monkeypatch):
    """The disk fills as the report is written: the old report stays whole and no temporary file is left."""
    report = tmp_path / "report.json"
    report.write_text("the old report")

    def full(fd):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "fsync", full)
    line = refused(["trace", good, "--seq", "4", "--target", "x86-64", "--format", "json", "-o", report], tmp_path)
    assert "No space left on device" in line and report.read_text() == "the old report"


@pytest.mark.parametrize("path, needle", [("chart.txt", "must end in"), ("chart", "must end in"),
                                          ("/dev/full", "not a regular file"), ("no/such/dir/c.png", "does not exist")])
def test_plot_paths_are_checked_before_any_work(tmp_path, path, needle):
    target = tmp_path / path if not path.startswith("/") else Path(path)
    assert needle in refused(["compare", "minilm", "--seq", "4", "--plot", target], tmp_path, seconds=20)
    assert not list(tmp_path.glob("chart*"))


def test_emit_into_a_folder_of_other_files_is_refused(good, tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    assert "holds other files" in refused(["emit", good, "--seq", "4", "--target", "neon", "-o", out], tmp_path)


def test_emit_replaces_its_own_earlier_output(good, tmp_path, capsys):
    out = tmp_path / "out"
    assert main(["emit", str(good), "--seq", "4", "--target", "neon", "--op", "gelu", "-o", str(out)]) == 0
    assert main(["emit", str(good), "--seq", "4", "--target", "neon", "--op", "softmax", "-o", str(out)]) == 0
    files = {p.name for p in out.iterdir()}
    assert "manifest.json" in files and all(not f.startswith("gelu") for f in files) and "softmax.s" in files


# ---- 3. the graph cache -------------------------------------------------------------------------------
def _entry(cache: Path) -> Path:
    (entry,) = (cache / "graphs").glob("*.json")
    return entry


@pytest.mark.parametrize("damage", ["width", "dangling", "negative", "no nodes", "truncated"])
def test_a_damaged_cache_entry_is_dropped_and_recomputed(good, tmp_path, monkeypatch, capsys, damage):
    monkeypatch.setenv("ISASIM_CACHE_DIR", str(tmp_path))
    argv = ["trace", str(good), "--seq", "4", "--target", "x86-64", "--format", "json"]
    assert main(argv) == 0
    fresh = capsys.readouterr().out
    entry = _entry(tmp_path)
    data = json.loads(entry.read_text())
    nodes = data["graph"]["nodes"]
    if damage == "width":
        nodes[3][4][0][0][-1] += 1  # one output's last dimension
    elif damage == "dangling":
        nodes[5][2] = [{"$ref": ["nowhere", 0]}]
    elif damage == "negative":
        nodes[2][4][0][0][0] = -4
    elif damage == "no nodes":
        data["graph"]["nodes"] = []
    text = json.dumps(data)
    entry.write_text(text[:len(text) // 2] if damage == "truncated" else text)
    assert main(argv) == 0
    assert capsys.readouterr().out == fresh
    assert json.loads(_entry(tmp_path).read_text())["digest"] == json.loads(json.dumps(data))["digest"]


def test_a_failed_cache_save_leaves_nothing_behind(good, tmp_path, monkeypatch, capsys):
    from isasim.models import graph_cache

    monkeypatch.setenv("ISASIM_CACHE_DIR", str(tmp_path))

    def full(*args, **kw):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(graph_cache.json, "dump", full)
    assert main(["trace", str(good), "--seq", "4", "--target", "x86-64", "--format", "csv"]) == 0
    assert capsys.readouterr().out.startswith("target,")
    assert list((tmp_path / "graphs").iterdir()) == []


# ---- 4. config values ---------------------------------------------------------------------------------
BAD_VALUES = [("hidden_size", 0), ("hidden_size", -16), ("num_attention_heads", 0), ("num_hidden_layers", -1),
              ("intermediate_size", 1.5), ("vocab_size", "many"), ("type_vocab_size", 0), ("hidden_size", True),
              ("max_position_embeddings", None), ("hidden_act", "swoosh"), ("hidden_act", 3),
              ("layer_norm_eps", float("nan")), ("layer_norm_eps", -1e-12), ("hidden_size", 15)]


@pytest.mark.parametrize("key, value", BAD_VALUES)
def test_config_values_are_checked(tmp_path, key, value):
    model = folder_with(tmp_path / "m", {"model_type": "bert", **TINY, key: value})
    refused(["trace", model, "--seq", "4", "--target", "x86-64"], tmp_path, seconds=60)


def test_deeply_nested_config_is_refused(tmp_path):
    model = folder_with(tmp_path / "m", '{"a": ' * 50_000 + "1" + "}" * 50_000)
    assert "nests too deeply" in refused(["trace", model, "--seq", "4"], tmp_path, seconds=60)


# ---- 5. numeric flags ---------------------------------------------------------------------------------
@pytest.mark.parametrize("argv, needle", [
    (["check", "minilm", "--jobs", "0"], "--jobs 0"),
    (["check", "minilm", "--tolerance", "nan"], "--tolerance nan"),
    (["check", "minilm", "--tolerance", "-1"], "--tolerance -1"),
    (["check", "minilm", "--tolerance", "inf"], "--tolerance inf"),
    (["trace", "minilm", "--seed", str(2**64)], "--seed"),
    (["trace", "minilm", "--seed", "-1"], "--seed -1"),
    (["finetune", "--lr", "inf", "-o", "OUT"], "--lr inf"),
    (["finetune", "--lr", "0", "-o", "OUT"], "--lr 0"),
    (["finetune", "--seed", str(2**70), "-o", "OUT"], "--seed"),
])
def test_numeric_flags_are_checked_before_any_work(tmp_path, argv, needle):
    argv = [tmp_path / "out" if a == "OUT" else a for a in argv]
    assert needle in refused(argv, tmp_path, seconds=20)
    assert not (tmp_path / "out").exists()


def test_a_batch_that_cannot_fit_is_refused_with_the_need(tmp_path, monkeypatch):
    from isasim.engine import graphs

    monkeypatch.setattr(graphs, "available_bytes", lambda: 2**30)
    line = refused(["check", "minilm", "--seq", "64", "--batch", "64", "--target", "neon"], tmp_path)
    assert "GiB" in line and "1.0 GiB available" in line and "lower --batch" in line


def test_a_diverging_fine_tune_stops_and_saves_nothing(tmp_path):
    base = save_bert(tmp_path / "base", 0, hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
                     intermediate_size=48, max_position_embeddings=64)
    line = refused(["finetune", "--base", base, "--epochs", "1", "--batch", "64", "--lr", "1e30", "--seq", "8",
                    "-o", tmp_path / "tuned"], tmp_path, seconds=300)
    assert "training loss became" in line and not (tmp_path / "tuned").exists()


# ---- 6. faults from outside ---------------------------------------------------------------------------
def test_a_failing_ptxas_is_one_line(good, tmp_path, monkeypatch):
    fake = tmp_path / "bin"
    fake.mkdir()
    (fake / "ptxas").write_text("#!/bin/sh\necho 'ptxas fatal   : Unresolved extern function' >&2\nexit 255\n")
    (fake / "ptxas").chmod(0o755)
    monkeypatch.setenv("PATH", f"{fake}{os.pathsep}{os.environ['PATH']}")
    line = refused(["emit", good, "--seq", "4", "--target", "simt", "-o", tmp_path / "ptx"])
    assert "ptxas rejected" in line and "Unresolved extern function" in line


def test_a_corrupt_dataset_line_names_the_file_and_line(tmp_path, monkeypatch):
    from isasim.models import finetune

    data = tmp_path / "movie_tv"
    data.mkdir()
    for split in finetune.SPLITS:
        (data / f"{split}.jsonl").write_text('{"text": "a film", "label": 0}\n{"text": "a series", "label":\n')
    monkeypatch.setattr(finetune, "DATA", data)
    with pytest.raises(Exception) as e:
        finetune.load_split("test")
    assert f"{data / 'test.jsonl'}:2:" in str(e.value) and type(e.value).__name__ == "UserError"


def test_finetune_onto_a_file_is_refused_before_training(tmp_path):
    target = tmp_path / "model"
    target.write_text("not a folder")
    start = time.monotonic()
    assert "a file is there" in refused(["finetune", "-o", target], tmp_path, seconds=60)
    assert time.monotonic() - start < 30  # refused, not trained first


def test_ctrl_c_at_any_time_is_one_line():
    """From the moment isasim's own code runs, an interrupt prints one line and exits 130. (`check` executes
    every op, seconds of work even with a warm graph cache, where a cached `trace` can end before 1.5 s.)"""
    for delay in (0.3, 1.5):
        p = subprocess.Popen([sys.executable, "-c", "from isasim.cli import run; run()", "check", "minilm",
                              "--seq", "8"], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        time.sleep(delay)
        p.send_signal(signal.SIGINT)
        err = p.communicate(timeout=60)[1]
        assert p.returncode == 130 and err == "isasim: interrupted\n", (delay, p.returncode, err)


# ---- the fuzzer -----------------------------------------------------------------------------------------
def bad_model(tmp: Path, draw) -> Path | str:
    """A model argument that must be refused: a name, a path, or a folder with something wrong in it."""
    kind = draw(st.sampled_from(["name", "missing", "file", "empty", "json", "object", "type", "value", "fifo",
                                 "zero", "weights"]))
    m = tmp / "m"
    if kind == "name":
        return draw(st.sampled_from(["gpt-17", "bert", "BERT-BASE", "", "-"]))
    if kind == "missing":
        return tmp / "nowhere"
    if kind == "file":
        m.write_text("x")
        return m
    m.mkdir()
    if kind == "empty":
        return m
    if kind == "fifo":
        os.mkfifo(m / "config.json")
    elif kind == "zero":
        (m / "config.json").symlink_to("/dev/zero")
    elif kind == "json":
        (m / "config.json").write_bytes(draw(st.binary(max_size=40)) + b"{")
    elif kind == "object":
        (m / "config.json").write_text(json.dumps(draw(st.sampled_from([[], "bert", 3, None]))))
    elif kind == "type":
        (m / "config.json").write_text(json.dumps({**TINY, "model_type": draw(st.sampled_from(["gpt2", None, 7]))}))
    elif kind == "value":
        key, value = draw(st.sampled_from(BAD_VALUES))
        (m / "config.json").write_text(json.dumps({"model_type": "bert", **TINY, key: value}))
    else:
        (m / "config.json").write_text(json.dumps({"model_type": "bert", **TINY}))
        (m / "model.safetensors").write_bytes(draw(st.binary(max_size=64)))
    return m


BAD_FLAGS = [["--seq", "0"], ["--seq", "-3"], ["--seq", "100000"], ["--seq", "x"], ["--batch", "0"],
             ["--batch", "-2"], ["--seed", "-1"], ["--seed", str(2**64)], ["--target", "riscv"], ["--uarch", "pentium"],
             ["--target", "x86-64", "--uarch", "a100"], ["--target", "avx512", "--uarch", "zen3"], ["--format", "xml"],
             ["--no-such-flag"]]


FINETUNE_FLAGS = [["--epochs", "0"], ["--batch", "0"], ["--lr", "nan"], ["--lr", "-1"], ["--seq", "1"],
                  ["--seed", "-5"], ["--base", "gpt-17"], ["--base", "bert"], ["-o"]]  # ["-o"]: onto a file


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture,
                                                                  HealthCheck.too_slow])
@given(data=st.data())
def test_fuzz_every_subcommand_keeps_the_contract(tmp_path_factory, data):
    tmp = tmp_path_factory.mktemp("fuzz")
    (tmp / "precious.txt").write_text("must survive")
    command = data.draw(st.sampled_from(["trace", "check", "emit", "explain", "compare", "finetune"]))
    if command == "finetune":
        bad = data.draw(st.lists(st.sampled_from(FINETUNE_FLAGS), min_size=1, max_size=2), label="flags")
        out = "precious.txt" if ["-o"] in bad else data.draw(st.sampled_from(["out", "precious.txt"]))
        refused(["finetune", *[a for f in bad if f != ["-o"] for a in f], "-o", tmp / out], tmp, seconds=120)
        return
    argv = [command]
    flags = []
    if data.draw(st.booleans(), label="bad model"):
        argv.append(bad_model(tmp, data.draw))
        flags = data.draw(st.lists(st.sampled_from(BAD_FLAGS), max_size=2), label="flags")
    else:
        argv.append("minilm")
        flags = data.draw(st.lists(st.sampled_from(BAD_FLAGS), min_size=1, max_size=2), label="flags")
    if command == "compare":
        flags = [f for f in flags if f[0] not in ("--target", "--uarch")] or [["--seq", "0"]]
    argv += [a for f in flags for a in f]
    if command == "emit":
        argv += ["-o", tmp / data.draw(st.sampled_from(["out", "precious.txt"]))]
    if command == "explain":
        argv += ["--op", data.draw(st.sampled_from(["gelu", "nosuch"]))]
    refused(argv, tmp, seconds=120)
