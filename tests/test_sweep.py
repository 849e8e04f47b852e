"""`isasim sweep`: a grid's rows equal `trace` for the same points, serially and on a real Dask LocalCluster;
a killed worker or a killed sweep loses no row and duplicates none; bad input is refused before any work."""

from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

import isasim
from isasim.engine.sweep import COLUMNS, KEY, Point, grid, sweep
from isasim.engine.sweep_point import SHARES
from isasim.engine.sweep_file import ResultFile
from isasim.isa.errors import UserError
from tiny import cli, save_bert

pytest.importorskip("distributed", reason="the sweep's cluster is Dask's: pip install dask distributed")

SMALL = dict(models=["minilm"], seqs=[8, 16], batches=[1], precisions=["fp32"], targets=["x86-64", "avx2", "simt"])


def table(path: Path) -> list[dict]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def keys(rows: list[dict]) -> list[tuple]:
    return [tuple(str(r[c]) for c in KEY) for r in rows]


@pytest.fixture(scope="module")
def small():
    points, notes = grid(**SMALL)
    return points, sweep(points, serial=True)


def test_each_row_holds_what_trace_reports_for_its_point(small):
    points, rows = small
    assert len(points) == 6 and [r["error"] for r in rows] == [""] * 6
    for p, r in zip(points, rows):
        t = isasim.trace(p.model, [p.target], [p.uarch], seq=p.seq, batch=p.batch).targets[0]
        assert (r["instructions"], r["cycles"], r["seconds"]) == (t.instructions, t.cycles, t.seconds)
        assert [r[f"bytes_{lv}"] for lv in ("l1", "l2", "llc", "dram")] == list(t.bytes.values())
        assert r["bound"] == max(t.bounds, key=t.bounds.get) and r["cores"] == 1
        assert sum(r[s] for s in SHARES) == pytest.approx(1.0)
        gemm = sum(op.cycles for op in t.ops if op.op == "aten.linear.default") / t.cycles
        assert r["share_gemm"] == pytest.approx(gemm)


def test_a_local_cluster_of_two_processes_gives_the_serial_rows(small, tmp_path):
    points, serial = small
    progress = []
    rows = sweep(points, tmp_path / "s.csv", workers=2, progress=lambda *a: progress.append(a))
    assert rows == serial
    assert len(table(tmp_path / "s.csv")) == len(points)
    assert [p[0] for p in progress] == list(range(1, len(points) + 1)) and progress[-1] == (len(points), 0, 0, 6)


def _threads() -> tuple[int, list[int]]:
    import sys

    from threadpoolctl import threadpool_info

    torch = sys.modules.get("torch")
    return (torch.get_num_threads() if torch else 1), [p["num_threads"] for p in threadpool_info()]


def test_local_workers_forked_from_a_multithreaded_process_run_one_thread_each():
    """Workers are forked from the sweep's process (engine/sweep_dask.py), whose torch may use every core;
    each worker, as threads_per_worker=1 says, runs its libraries on one thread."""
    import torch

    from isasim.engine.sweep_dask import client_for

    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        with client_for(None, 2) as client:
            seen = client.run(_threads)
        assert len(seen) == 2 and all(t == 1 and set(pools) <= {1} for t, pools in seen.values()), seen
        assert torch.get_num_threads() == 2  # the caller's own setting is left as it was
    finally:
        torch.set_num_threads(before)


def test_on_dask_each_shape_is_captured_once_and_one_that_fails_fails_only_its_points(small, tmp_path, monkeypatch):
    from isasim.engine import sweep_dask

    points, serial = small
    real, captured = sweep_dask.capture, []

    def capture(model, seq, batch, seed=0):
        captured.append((model, seq, batch))
        if seq == 16:
            raise RuntimeError("export failed")
        return real(model, seq, batch, seed)

    monkeypatch.setattr(sweep_dask, "capture", capture)
    rows = sweep(points, tmp_path / "c.csv", workers=2)
    assert sorted(captured) == [("minilm", 8, 1), ("minilm", 16, 1)]  # once each, for its three points
    assert [r["error"] for r in rows if r["seq"] == 16] == ["RuntimeError: export failed"] * 3
    assert [r for r in rows if r["seq"] == 8] == [r for r in serial if r["seq"] == 8]


def test_a_worker_killed_mid_sweep_loses_and_duplicates_nothing(small, tmp_path):
    from distributed import Client, LocalCluster

    points, serial = small
    out = tmp_path / "killed.csv"
    with LocalCluster(n_workers=2, threads_per_worker=1, dashboard_address=None) as cluster, Client(cluster) as client:
        pids = client.run(os.getpid)
        result = {}
        worker = threading.Thread(target=lambda: result.update(rows=sweep(points, out, scheduler=client)))
        worker.start()
        deadline = time.time() + 120
        while (not out.exists() or len(out.read_text().splitlines()) < 2) and time.time() < deadline:
            time.sleep(0.02)
        victim = next(iter(pids.values()))
        os.kill(victim, signal.SIGKILL)  # as the OOM killer ends a worker: its nanny starts another
        at_kill = len(table(out))
        worker.join(300)
        assert not worker.is_alive()
    assert 1 <= at_kill < len(points), "the worker was killed after the first row and before the last"
    assert sorted(keys(table(out))) == sorted(p.key() for p in points)
    assert result["rows"] == serial


def test_ctrl_c_in_a_terminal_stops_a_dask_sweep_with_one_line(tmp_path):
    """A terminal sends Ctrl-C to the whole process group, the cluster's workers too: the sweep still ends
    with its one line and status 130, and keeps the rows it wrote."""
    out = tmp_path / "int.csv"
    p = subprocess.Popen([sys.executable, "-m", "isasim.cli.main", "sweep", "--model", "minilm", "--seq", "8,16,32",
                          "--target", "x86-64,aarch64,avx2,avx512,neon,simt", "--workers", "2", "-o", str(out)],
                         stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, start_new_session=True,
                         preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    deadline = time.time() + 120
    while (not out.exists() or len(out.read_text().splitlines()) < 2) and time.time() < deadline:
        time.sleep(0.01)
    os.killpg(p.pid, signal.SIGINT)
    err = p.communicate(timeout=60)[1]
    assert (p.returncode, err) == (130, "isasim: interrupted\n")
    assert 1 <= len(table(out)) < 18


def test_a_killed_sweep_resumes_without_losing_or_repeating_a_row(tmp_path):
    """The whole sweep (client, scheduler and workers) killed as a shell's kill -9 of its process group would
    end it, then run again with the same output: every point once, each as the serial run computes it."""
    out = tmp_path / "resume.csv"
    argv = ["sweep", "--model", "minilm", "--seq", "8,16", "--target", "x86-64,aarch64,avx2,avx512,neon",
            "-o", str(out)]
    p = subprocess.Popen([sys.executable, "-m", "isasim.cli.main", *argv, "--workers", "2"],
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    deadline = time.time() + 120
    while (not out.exists() or len(out.read_text().splitlines()) < 2) and time.time() < deadline:
        time.sleep(0.01)
    os.killpg(p.pid, signal.SIGKILL)
    p.wait()
    before = table(out)
    assert 1 <= len(before) < 10, "the sweep was killed after its first row and before its last"
    with open(out, "a") as f:
        f.write("minilm,16,1,fp32,x86-6")  # a row cut short by the kill, as a kill mid-write leaves it
    code = subprocess.run([sys.executable, "-m", "isasim.cli.main", *argv, "--workers", "2"],
                          stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    assert code.returncode == 0, code.stderr
    after = table(out)
    assert after[:len(before)] == before  # the rows finished before the kill are kept as they were
    points, _ = grid(["minilm"], [8, 16], [1], ["fp32"], ["x86-64", "aarch64", "avx2", "avx512", "neon"])
    assert sorted(keys(after)) == sorted(p.key() for p in points)
    serial = {r["target"] + r["seq"]: r for r in table(_serial(tmp_path, argv))}
    assert all(r == serial[r["target"] + r["seq"]] for r in after)


def _serial(tmp_path: Path, argv: list[str]) -> Path:
    out = tmp_path / "serial.csv"
    from isasim.cli.main import main

    assert main([*argv[:-1], str(out), "--serial"]) == 0
    return out


def test_the_grid_runs_each_target_on_each_core_of_its_isa_and_leaves_out_what_cannot_run():
    points, notes = grid(["minilm"], [8], [1], ["fp32", "int8", "bf16"], ["avx2", "avx512", "amx", "simt"],
                         ["zen3", "sapphirerapids"])
    got = {(p.precision, p.target, p.uarch) for p in points}
    assert ("fp32", "avx2", "zen3") in got and ("fp32", "avx2", "sapphirerapids") in got
    assert ("fp32", "avx512", "sapphirerapids") in got and ("fp32", "simt", "a100") in got
    assert not any(p.target == "avx512" and p.uarch == "zen3" for p in points)
    assert not any(p.target == "amx" and p.precision == "fp32" for p in points)
    assert not any(p.target == "avx2" and p.precision == "bf16" for p in points)
    assert ("int8", "amx", "sapphirerapids") in got and ("int8", "simt", "a100") in got
    assert any("avx512 on zen3 in fp32 left out" in n for n in notes)
    assert any(n.startswith("avx2 on zen3 in bf16 left out") for n in notes)


def test_a_cpu_target_runs_on_each_core_count_and_its_rows_are_what_trace_gives():
    points, notes = grid(["minilm"], [8], [1], ["fp32"], ["x86-64", "simt"], None, 0, [1, 2, "all"])
    assert {(p.target, p.cores) for p in points} == {("x86-64", 1), ("x86-64", 2), ("x86-64", 28), ("simt", 1)}
    assert any("simt is a GPU: costed once" in n for n in notes)
    cpu = [p for p in points if p.target == "x86-64"]
    for p, r in zip(cpu, sweep(cpu, serial=True)):
        t = isasim.trace(p.model, [p.target], seq=p.seq, batch=p.batch, cores=p.cores).targets[0]
        assert (r["cores"], r["cycles"], r["instructions"]) == (p.cores, t.cycles, t.instructions)


def test_a_failing_point_is_recorded_and_the_sweep_goes_on(tmp_path, capsys, monkeypatch):
    from isasim.engine import sweep as module

    real = module.cost_point

    def flaky(graph, point):
        if point.target == "avx2" and point.seq == 16:
            raise ZeroDivisionError("float division by zero")
        return real(graph, point)

    monkeypatch.setattr(module, "cost_point", flaky)
    out = tmp_path / "f.csv"
    code, _, err = cli(capsys, "sweep", "--model", "minilm", "--seq", "8,16", "--target", "x86-64,avx2", "-o", str(out),
                       "--serial")
    rows = table(out)
    assert code == 1 and len(rows) == 4
    bad = [r for r in rows if r["error"]]
    assert [(r["target"], r["seq"], r["error"]) for r in bad] == [("avx2", "16", "ZeroDivisionError: float "
                                                                                 "division by zero")]
    assert all(r["cycles"] for r in rows if not r["error"])
    assert "failed: minilm seq 16 batch 1 fp32 avx2" in err
    monkeypatch.setattr(module, "cost_point", real)
    code, _, _ = cli(capsys, "sweep", "--model", "minilm", "--seq", "8,16", "--target", "x86-64,avx2", "-o", str(out),
                     "--serial")
    assert code == 1 and len(table(out)) == 4  # a failure counts as done ...
    code, _, _ = cli(capsys, "sweep", "--model", "minilm", "--seq", "8,16", "--target", "x86-64,avx2", "-o", str(out),
                     "--serial", "--retry-failed")
    assert code == 0 and len(table(out)) == 4 and not any(r["error"] for r in table(out))  # ... until retried


def test_json_lines_hold_the_same_rows(small, tmp_path):
    points, serial = small
    out = tmp_path / "s.jsonl"
    assert sweep(points, out, serial=True) == serial
    lines = [json.loads(ln) for ln in out.read_text().splitlines()]
    assert [list(ln) for ln in lines] == [list(COLUMNS)] * len(points)
    assert sweep(points, out, serial=True) == serial and len(out.read_text().splitlines()) == len(points)


def test_a_row_cut_short_is_dropped_and_a_foreign_table_refused(tmp_path):
    out = tmp_path / "t.csv"
    whole = ["minilm", "8", "1", "fp32", "avx2", "zen3", "1", "5", "6.0", "1e-9", "port"]
    whole += [""] * (len(COLUMNS) - len(whole) - 1) + [isasim.__version__]
    out.write_text(",".join(COLUMNS) + "\n" + ",".join(whole) + "\nminilm,8")
    f = ResultFile(out, "csv", COLUMNS, KEY)
    assert f.done() == {("minilm", "8", "1", "fp32", "avx2", "zen3", "1")}
    assert out.read_text().endswith("minilm,8")  # as it was, until a row is written
    f.append(dict(zip(COLUMNS, ["minilm", "16", *whole[2:]])))
    f.close()
    rows = table(out)  # the cut row is gone, not glued to the new one
    assert len(rows) == 2 and all(None not in r and None not in r.values() for r in rows)
    assert ResultFile(out, "csv", COLUMNS, KEY).done() == {("minilm", s, "1", "fp32", "avx2", "zen3", "1")
                                                           for s in ("8", "16")}
    other = tmp_path / "other.csv"
    other.write_text("a,b\n1,2\n")
    with pytest.raises(UserError, match="other columns"):
        ResultFile(other, "csv", COLUMNS, KEY)
    good = out.read_text()
    point = [Point("minilm", 8, 1, "fp32", "avx2", "zen3")]
    for edit, needle in ((isasim.__version__, "0.0.1"), "row 1 was costed by isasim 0.0.1"), \
                        ((isasim.__version__, ""), "row 1 was costed without the isasim version"), \
                        ((",5,6.0,", ",five,6.0,"), "row 1 holds something other than a number"):
        out.write_text(good.replace(*edit, 1))
        with pytest.raises(UserError, match=needle):
            sweep(point, out, serial=True)
        assert out.read_text() == good.replace(*edit, 1)  # refused before any work, the file as it was


def test_a_table_with_windows_line_ends_loses_only_the_row_cut_short(tmp_path):
    out = tmp_path / "crlf.csv"
    whole = ["minilm", "8", "1", "fp32", "avx2", "zen3", "1", "5", "6.0", "1e-9", "port"]
    whole += [""] * (len(COLUMNS) - len(whole) - 1) + [isasim.__version__]
    out.write_bytes((",".join(COLUMNS) + "\r\n" + ",".join(whole) + "\r\nminilm,16,1,fp").encode())
    f = ResultFile(out, "csv", COLUMNS, KEY)
    f.append(dict(zip(COLUMNS, ["minilm", "32", *whole[2:]])))
    f.close()
    assert [(r["seq"], r["isasim"]) for r in table(out)] == [("8", isasim.__version__), ("32", isasim.__version__)]


def test_retry_failed_leaves_the_file_as_it_was_when_the_sweep_is_refused(tmp_path, capsys):
    out = tmp_path / "r.csv"
    whole = ["minilm", "8", "1", "fp32", "avx2", "skylake-x", "1"] + [""] * (len(COLUMNS) - 9)
    out.write_text(",".join(COLUMNS) + "\n" + ",".join(whole + ["ZeroDivisionError", isasim.__version__]) + "\n")
    before = out.read_text()
    code, _, err = cli(capsys, "sweep", "--model", "minilm", "--seq", "8", "--target", "avx2", "-o", str(out),
                       "--retry-failed", "--scheduler", "tcp://127.0.0.1:1")
    assert code == 2 and "cannot reach a Dask scheduler" in err and out.read_text() == before
    code, _, _ = cli(capsys, "sweep", "--model", "minilm", "--seq", "8", "--target", "avx2", "-o", str(out),
                     "--retry-failed", "--serial")
    assert code == 0 and [(r["seq"], r["error"]) for r in table(out)] == [("8", "")]


@pytest.mark.parametrize("argv, needle", [
    (["--seq", "8,x"], "--seq 'x' is not a whole number"),
    (["--seq", "0"], "--seq 0 is out of range"),
    (["--seq", "100000"], "--seq 100000 is out of range: minilm accepts 1..512"),
    (["--batch", "-1"], "--batch -1 is out of range"),
    (["--precision", "fp8"], "--precision 'fp8' is unknown"),
    (["--target", "riscv"], "unknown target"),
    (["--uarch", "pentium"], "unknown microarchitecture"),
    (["--target", "neon", "--uarch", "zen3"], "no x86-64 target was chosen"),
    (["--workers", "0"], "--workers 0 is out of range"),
    (["--target", "amx"], "no point of the grid can run: amx in fp32 left out"),
    (["--serial", "--workers", "2"], "--serial runs every point in this process"),
    (["--scheduler", "tcp://127.0.0.1:9", "--workers", "2"], "--workers sizes a local cluster"),
    (["--plot", "x.gif"], "--plot"),
    (["--cores", "0"], "--cores 0 is out of range"),
    (["--cores", "2,x"], "--cores 'x' is not a number"),
])
def test_bad_input_is_refused_in_one_line_before_any_work(tmp_path, capsys, argv, needle):
    out = tmp_path / "never.csv"
    code, _, err = cli(capsys, "sweep", "--model", "minilm", "-o", str(out), *argv)
    assert code == 2 and err.startswith("isasim: error: ") and err.count("\n") == 1 and needle in err, err
    assert not out.exists()


def test_a_broken_model_folder_and_an_unreachable_scheduler_are_one_line(tmp_path, capsys, monkeypatch):
    folder = tmp_path / "m"
    folder.mkdir()
    (folder / "config.json").write_text("{")
    code, _, err = cli(capsys, "sweep", "--model", str(folder), "-o", str(tmp_path / "o.csv"))
    assert code == 2 and err.count("\n") == 1 and "config.json" in err, err
    from isasim.engine import sweep_dask

    monkeypatch.setattr(sweep_dask, "CONNECT_TIMEOUT", "1s")
    code, _, err = cli(capsys, "sweep", "--model", "minilm", "--seq", "8", "--target", "avx2", "-o",
                       str(tmp_path / "o.csv"), "--scheduler", "tcp://127.0.0.1:9")
    assert code == 2 and err.count("\n") == 1 and "cannot reach a Dask scheduler at tcp://127.0.0.1:9" in err, err


def test_the_plot_draws_every_target_and_the_fastest_per_shape(small, tmp_path):
    from isasim.cli.plot_sweep import plot_sweep

    points, rows = small
    int8 = [{**r, "precision": "int8", "seconds": r["seconds"] / (1000 if r["target"] == "avx2" else 1)}
            for r in rows]  # (a second precision, where AVX2 wins: each gets its own panels)
    drawn = plot_sweep(rows + int8, tmp_path / "s.png")
    assert (tmp_path / "s.png").stat().st_size > 10_000
    assert list(drawn) == [("minilm", "fp32"), ("minilm", "int8")]
    for group, table in zip(drawn.values(), (rows, int8)):
        assert sorted(group["lines"]) == [("avx2 on skylake-x", 1), ("simt on a100", 1), ("x86-64 on skylake-x", 1)]
        for (seq, batch), target in group["best"].items():
            mine = [r for r in table if r["seq"] == seq and r["batch"] == batch]
            assert target == min(mine, key=lambda r: r["seconds"])["target"]
    assert set(drawn["minilm", "int8"]["best"].values()) == {"avx2"} != set(drawn["minilm", "fp32"]["best"].values())


def test_the_python_api_returns_a_dataframe_with_the_notes(small, tmp_path):
    pytest.importorskip("pandas")
    points, rows = small
    df = isasim.sweep("minilm", [8, 16], 1, ["x86-64", "avx2", "simt", "amx"], serial=True)
    assert list(df.columns) == list(COLUMNS) and df.to_dict("records") == rows
    assert any(n.startswith("amx in fp32 left out") for n in df.attrs["notes"])


def test_a_folder_model_sweeps_like_a_named_one(tmp_path, monkeypatch):
    folder = save_bert(tmp_path / "tiny", 0, hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
                       intermediate_size=64, max_position_embeddings=16)
    rows = isasim.sweep(str(folder), [8], 1, ["avx2"], serial=True)
    assert rows["error"].tolist() == [""] and rows["cycles"][0] > 0
    monkeypatch.chdir(tmp_path)  # named as typed, "tiny" and "./tiny" would be two models, and rerun
    out = tmp_path / "f.csv"
    for typed_as in ("tiny", "./tiny", str(folder)):
        isasim.sweep(typed_as, [8], 1, ["avx2"], serial=True, output=out)
    assert [r["model"] for r in table(out)] == [str(folder.resolve())]
    with pytest.raises(UserError, match="--seq 32 is out of range"):
        isasim.sweep(str(folder), [8, 32], 1, ["avx2"], serial=True)


def test_point_keys_match_what_a_csv_gives_back():
    p = Point("minilm", 8, 1, "fp32", "avx2", "zen3")
    assert p.key() == ("minilm", "8", "1", "fp32", "avx2", "zen3", "1")
