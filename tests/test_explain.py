"""`isasim explain`: the listing, bounds, advice and timeline match the machine description and each other."""

import json

import pytest

from isasim.cli.main import main
from isasim.isa.machine import load_uarch
from isasim.isa.semantics import Prim
from isasim.isa.targets import TARGETS


def explain(capsys, *argv):
    code = main(["explain", "minilm", "--seq", "16", "--format", "json", *argv])
    out, err = capsys.readouterr()
    assert code == 0, err
    return json.loads(out)


@pytest.mark.parametrize("target", [n for n, t in TARGETS.items() if t.vector is None])
def test_gemm_loop_is_explained_by_its_fma_chain(capsys, target):
    (e,) = explain(capsys, "--op", "linear", "--target", target, "--iterations", "50")
    uarch = load_uarch(e["uarch"])
    fma = TARGETS[target].mnemonics[Prim.FMA]
    line = next(ln for ln in e["listing"] if ln["mnemonic"] == fma)
    timing = uarch.timing(fma)
    assert (line["latency"], line["rthroughput"], line["source"]) == (timing.latency, timing.rthroughput,
                                                                      timing.source)
    assert e["bound"]["decides"] == "latency" and e["bound"]["latency"] == timing.latency
    assert "dependency chain" in e["advice"] and "accumulators" in e["advice"]
    # the cycle-level timeline and the analytic bound are two models; in steady state they agree
    assert e["simulated_cycles_per_iteration"] == pytest.approx(e["bound"]["cycles_per_iteration"], rel=0.15)
    assert len(e["timeline"]) == 50 * len(e["listing"])


def test_elementwise_loop_is_port_or_issue_bound_and_rendered(capsys):
    code = main(["explain", "minilm", "--seq", "16", "--op", "gelu", "--target", "x86-64", "--iterations", "2"])
    text = capsys.readouterr().out
    assert code == 0
    (e,) = explain(capsys, "--op", "gelu", "--target", "x86-64", "--iterations", "2")
    assert e["bound"]["decides"] != "latency"
    for ln in e["listing"]:
        assert ln["instruction"] in text
    assert e["advice"][:60] in text  # the advice as rendered (rich may wrap the rest)
    assert "vdivss" in text and "timeline of 2 iterations" in text


@pytest.mark.parametrize("argv,needle", [
    (["--op", "conv2d"], "no kernel matches --op conv2d"),
    (["--op", "linear", "--iterations", "0"], "--iterations 0"),
])
def test_bad_explain_input(capsys, argv, needle):
    assert main(["explain", "minilm", "--seq", "16", *argv]) == 2
    assert needle in capsys.readouterr().err


def test_chrome_trace_of_the_timeline_has_every_instruction_on_its_port(capsys, tmp_path):
    path = tmp_path / "t.json"
    (e,) = explain(capsys, "--op", "linear", "--target", "avx512", "--iterations", "3", "--chrome-trace", str(path))
    trace = json.loads(path.read_text())["traceEvents"]
    slices = [ev for ev in trace if ev["ph"] == "X"]
    assert len(slices) == 3 * len(e["listing"])
    ports = {p for ln in e["listing"] for p in ln["ports"]} | {"-"}
    assert {ev["tid"] for ev in slices} <= ports
    names = [ln["instruction"] for ln in e["listing"]]
    assert [ev["name"] for ev in slices if ev["args"]["iteration"] == 0] == names  # program order
    for ev in slices:
        a = ev["args"]
        assert a["dispatched"] <= a["started"] <= a["finished"] <= a["retired"]
    # the last retirement, one cycle on, over the iterations is the simulated rate the report gives
    last = max(ev["args"]["retired"] for ev in slices)
    assert (last + 1) / 3 == pytest.approx(e["simulated_cycles_per_iteration"])
