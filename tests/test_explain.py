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


def test_simt_explanation_agrees_with_the_trace(capsys):
    """The GPU view: the listing is the hottest loop as emitted, the memory columns are the cost model's
    per-instruction figures, and the deciding bound is the trace's."""
    import json as _json

    from isasim.cli.main import main as cli

    assert cli(["explain", "minilm", "--seq", "37", "--op", "linear", "--target", "simt", "--format", "json"]) == 0
    (e,) = _json.loads(capsys.readouterr().out)
    assert cli(["trace", "minilm", "--seq", "37", "--target", "simt", "--format", "json"]) == 0
    op = next(o for o in _json.loads(capsys.readouterr().out)["targets"][0]["ops"] if o["name"] == e["kernel"])
    assert e["decides"] == op["bound"] and e["cycles"] == op["cycles"] and e["grid"] == op["simt"]["grid"]
    assert e["occupancy"]["limits"][e["occupancy"]["resource"]] == e["occupancy"]["resident_blocks"]
    mnemonics = [ln["mnemonic"] for ln in e["listing"]]
    assert "bar.sync" in mnemonics and mnemonics.count("fma.rn.f32") >= 16 * 4  # 16 k steps, >= 2x2 tile
    # each k step's operands in one vector load each, without bank conflicts: the return path decides, one
    # wavefront per register a thread receives (B's), half that where pairs of threads share an address (A's)
    shared = [(ln["mnemonic"], ln["per_request"]) for ln in e["listing"] if ln["mnemonic"].startswith("ld.shared")]
    allowed = {"ld.shared.v4.f32": (2.0, 4.0), "ld.shared.v2.f32": (1.0, 2.0)}
    assert shared and all(p in allowed[m] for m, p in shared), shared
    assert all(ln["per_request"] >= 1 for ln in e["listing"] if ln["mnemonic"].startswith("ld.global"))
    assert e["decides"].split()[-1] in e["advice"] or e["decides"] in e["advice"].lower()
    assert cli(["explain", "minilm", "--seq", "37", "--op", "softmax", "--target", "simt"]) == 0
    text = capsys.readouterr().out
    assert "shfl.sync.bfly.b32" in text and "occupancy" in text and " decides, " in text
