"""`isasim compare`: one row per target x microarchitecture, consistent with `trace`, in every format."""

import csv
import io
import json

import pytest

from isasim.cli.main import main
from isasim.isa.machine import uarch_names
from isasim.isa.targets import TARGETS


def run(capsys, *argv):
    code = main(list(argv))
    out, err = capsys.readouterr()
    assert code == 0, err
    return out


def test_rows_agree_with_trace_and_shares_add_up(capsys):
    cmp = json.loads(run(capsys, "compare", "minilm", "--seq", "8", "--format", "json"))
    pairs = {(r["target"], r["uarch"]) for r in cmp["rows"]}
    assert pairs == {(t.name, u) for t in TARGETS.values() for u in uarch_names(t.isa)}
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
    n = sum(len(uarch_names(t.isa)) for t in TARGETS.values())
    assert sum(md.count(f"| {t} |") for t in TARGETS) == n
    rows = list(csv.DictReader(io.StringIO(run(capsys, "compare", "minilm", "--seq", "8", "--format", "csv"))))
    assert len(rows) == n and all(float(r["share_GEMM"]) > 0.5 for r in rows)
