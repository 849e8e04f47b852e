"""`isasim compare`: one row per target x microarchitecture, consistent with `trace`, in every format."""

import csv
import io
import json

import pytest

from isasim.cli.main import main
from isasim.isa.targets import ALL_TARGETS, TARGETS
from isasim.backends import machine_names


def run(capsys, *argv):
    code = main(list(argv))
    out, err = capsys.readouterr()
    assert code == 0, err
    return out


def test_rows_agree_with_trace_and_shares_add_up(capsys):
    cmp = json.loads(run(capsys, "compare", "minilm", "--seq", "8", "--format", "json"))
    pairs = {(r["target"], r["uarch"]) for r in cmp["rows"]}
    assert pairs == {(t.name, u) for t in ALL_TARGETS.values() for u in machine_names(t)}
    for row in cmp["rows"]:
        tr = json.loads(run(capsys, "trace", "minilm", "--seq", "8", "--format", "json",
                            "--target", row["target"], "--uarch", row["uarch"]))["targets"][0]
        assert (row["instructions"], row["cycles"], row["bytes"]) == (tr["instructions"], tr["cycles"], tr["bytes"])
        assert sum(row["family_shares"].values()) == pytest.approx(1.0, abs=1e-3)
        assert row["flop_per_cycle"] == pytest.approx(cmp["flops"] / row["cycles"])
        assert 0 < row["flop_per_cycle"] <= row["peak_flop_per_cycle"]
    base = next(r for r in cmp["rows"] if r["target"] == "x86-64" and r["uarch"] == "skylake-x")
    assert base["speedup_over_scalar_x86"] == 1.0


def test_markdown_and_csv_have_a_line_per_row(capsys):
    md = run(capsys, "compare", "minilm", "--seq", "8", "--format", "markdown")
    n = sum(len(machine_names(t)) for t in ALL_TARGETS.values())
    assert sum(md.count(f"| {t} |") for t in ALL_TARGETS) == n
    rows = list(csv.DictReader(io.StringIO(run(capsys, "compare", "minilm", "--seq", "8", "--format", "csv"))))
    assert len(rows) == n and all(float(r["share_GEMM"]) > 0.5 for r in rows if r["target"] in TARGETS)


def test_plot_draws_what_the_report_says(capsys, tmp_path):
    """The roofline's points are each family's fp operations per DRAM byte and per cycle from the JSON
    report, and every row's stacked shares are its family shares."""
    import isasim
    from isasim.cli import compare
    from isasim.cli.plot import plot_comparison

    result = isasim.compare("minilm", seq=8)
    drawn = plot_comparison(result, tmp_path / "c.png")
    assert (tmp_path / "c.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    report = json.loads(compare.render_json(result))
    default = {(t.name, t.default_uarch) for t in ALL_TARGETS.values()}
    rows = {r["target"]: r for r in report["rows"] if (r["target"], r["uarch"]) in default}
    assert set(drawn["roofline"]) == set(rows)
    for target, points in drawn["roofline"].items():
        fams = rows[target]["families"]
        assert {f for f, _, _ in points} == {f for f, v in fams.items() if v["fp_ops"] and v["dram_bytes"]}
        for fam, ai, perf in points:
            assert ai == pytest.approx(fams[fam]["fp_ops"] / fams[fam]["dram_bytes"])
            assert perf == pytest.approx(fams[fam]["fp_ops"] / fams[fam]["cycles"])
            assert perf <= rows[target]["peak_flop_per_cycle"] * 1.0001  # under the compute ceiling
    assert len(drawn["shares"]) == len(report["rows"])
    for r in report["rows"]:
        assert drawn["shares"][f"{r['target']} / {r['uarch']}"] == r["family_shares"]


def test_compare_plot_flag_writes_a_png(capsys, tmp_path):
    out = run(capsys, "compare", "minilm", "--seq", "8", "--format", "csv", "--plot", str(tmp_path / "p.png"))
    assert out.startswith("target,") and (tmp_path / "p.png").stat().st_size > 10_000
