"""The command line as a user meets it: reports, JSON shape, and one-line errors with exit status 2."""

import json
import subprocess
import sys

import pytest

from tiny import cli as run
from tiny import save_bert



@pytest.fixture(scope="module")
def tiny_folder(tmp_path_factory):
    """A local Hugging Face folder with real (seeded) safetensors weights."""
    return save_bert(tmp_path_factory.mktemp("tiny-bert"), 3, hidden_size=32, num_hidden_layers=2,
                     num_attention_heads=4, intermediate_size=48, vocab_size=120, max_position_embeddings=40)


@pytest.mark.parametrize("argv,needle", [
    (["trace", "gpt-17"], "unknown model 'gpt-17'"),
    (["trace", "bert-base", "--seq", "0"], "--seq 0"),
    (["trace", "bert-base", "--seq", "513"], "--seq 513"),
    (["trace", "bert-base", "--batch", "0"], "--batch 0"),
    (["trace", "bert-base", "--target", "riscv"], "unknown target 'riscv'"),
    (["trace", "bert-base", "--uarch", "pentium"], "unknown microarchitecture 'pentium'"),
    (["trace", "bert-base", "--target", "x86-64", "--uarch", "neoverse-n1"], "no aarch64 target"),
    (["trace", "bert-base", "--format", "xml"], "invalid choice"),
    (["trace", "bert-base", "--target", "x86-64", "--uarch", "a100"], "no ptx target"),
    (["trace", "bert-base", "--uarch", "v100"], "unknown microarchitecture 'v100'"),
    (["frobnicate"], "invalid choice"),
    (["trace", "bert-base", "--cores", "0"], "--cores 0 is out of range"),
    (["trace", "bert-base", "--cores", "many"], "--cores 'many' is not a number"),
    (["trace", "bert-base", "--target", "avx512", "--cores", "57"],
     "its server has 2 sockets (Xeon Platinum 8180) of 28 cores; use 1..56"),
    (["trace", "bert-base", "--target", "avx512", "--uarch", "zen5", "--cores", "129"],
     "its socket (EPYC 9755) has 128 cores"),
    (["trace", "bert-base", "--target", "simt", "--cores", "2"], "a100 is a GPU"),
    (["trace", "bert-base", "--training", "--cores", "2", "--target", "simt"], "a100 is a GPU"),
    (["trace", "bert-base", "--training", "--cores", "2", "--gpus", "2"], "give one"),
    (["trace", "bert-base", "--training", "--cores", "2", "--parallel", "tensor"],
     "--parallel tensor says how to split the work across GPUs: add --gpus N"),
    (["scale", "bert-base", "--target", "avx2", "--cores", "1,2", "--parallel", "tensor"], "add --gpus 1,2,4"),
    (["check", "bert-base", "--target", "simt", "--cores", "all"], "a100 is a GPU"),
    (["scale", "bert-base"], "--target"),
    (["scale", "bert-base", "--target", "simt"], "a100 is a GPU"),
    (["scale", "bert-base", "--target", "avx512", "--cores", ","], "--cores lists no core counts"),
    (["scale", "bert-base", "--target", "x86-64", "--uarch", "zen5", "--cores", "1,256"], "has 128 cores"),
    (["trace", "bert-base", "--gpus", "2", "--parallel", "data"], "add --training, or split the forward pass"),
    (["compare", "bert-base", "--gpus", "2"], "compare --gpus costs a fine-tuning step split across GPUs"),
    (["trace", "bert-base", "--training", "--target", "simt", "--gpus", "2", "--batch", "3"],
     "--batch 3 does not split evenly over 2 GPUs"),
    (["trace", "bert-base", "--training", "--target", "simt", "--gpus", "16", "--batch", "16"],
     "one a100 server holds 8"),
    (["trace", "bert-base", "--training", "--target", "avx2", "--gpus", "2", "--batch", "2"], "avx2 runs on a CPU"),
    (["trace", "bert-base", "--training", "--gpus", "0"], "--gpus 0 is out of range"),
    (["trace", "bert-base", "--training", "--gpus", "2", "--parallel", "tensor", "--lora", "4"],
     "--lora with --parallel tensor is not modelled"),
    (["trace", "bert-base", "--gpus", "2", "--cores", "2"], "give one"),
    (["scale", "bert-base", "--target", "avx2", "--gpus", "1,2"], "avx2 runs on a CPU"),
    (["scale", "bert-base", "--target", "simt", "--gpus", "1,x"], "give GPU counts as numbers"),
    (["scale", "bert-base", "--target", "simt", "--gpus", "1,2", "--cores", "1,2"], "either core counts"),
])
def test_bad_input_is_one_line_and_exit_2(capsys, argv, needle):
    code, out, err = run(capsys, *argv)
    assert code == 2
    assert needle in err
    assert err.count("\n") == 1 and "Traceback" not in err


def test_bad_folders(capsys, tmp_path):
    (tmp_path / "empty").mkdir()
    code, _, err = run(capsys, "trace", str(tmp_path / "empty"))
    assert code == 2 and "config.json" in err and err.count("\n") == 1
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "config.json").write_text("{not json")
    code, _, err = run(capsys, "trace", str(bad))
    assert code == 2 and err.count("\n") == 1
    gpt = tmp_path / "gpt"
    gpt.mkdir()
    (gpt / "config.json").write_text(json.dumps({"model_type": "gpt2"}))
    code, _, err = run(capsys, "trace", str(gpt))
    assert code == 2 and "gpt2" in err and err.count("\n") == 1


def test_entry_point_exits_2_without_traceback():
    r = subprocess.run([sys.executable, "-m", "isasim.cli.main", "trace", "no-such-model"],
                       capture_output=True, text=True)
    assert r.returncode == 2 and "Traceback" not in r.stderr and "unknown model" in r.stderr


def test_trace_json_of_a_local_folder(capsys, tiny_folder):
    code, out, _ = run(capsys, "trace", str(tiny_folder), "--seq", "9", "--format", "json")
    assert code == 0
    report = json.loads(out)
    assert report["seq"] == 9 and report["batch"] == 1
    # 2 layers x (4 + 2 linears) + pooler, 2 attention matmuls per layer: 2*(M*N*K) each
    s, h, i, heads = 9, 32, 48, 4
    linear = 2 * (4 * 2 * s * h * h + 2 * 2 * s * h * i) + 2 * h * h
    attention = 2 * 2 * (2 * heads * s * s * (h // heads))
    assert report["flops"] == linear + attention
    assert {t["target"] for t in report["targets"]} == {"x86-64", "aarch64", "avx2", "avx512", "neon", "simt"}
    for t in report["targets"]:
        assert t["instructions"] == sum(op["instructions"] for op in t["ops"]) > 0
        assert set(t["bytes"]) == {"l1", "l2", "llc", "dram"}
        assert all({"name", "op", "module", "instructions", "cycles", "bound"} <= set(op) for op in t["ops"])
        assert any(op["module"].startswith("encoder.layer.1") for op in t["ops"])


def test_a_core_without_a_targets_extensions_leaves_it_out_with_a_note(capsys, tiny_folder):
    """Every target asked for (no --target) on Zen 3: the AVX-512 target cannot run there, so it is left out and
    the user is told so, in one line each, and everything else runs on the cores asked for."""
    code, out, err = run(capsys, "trace", str(tiny_folder), "--seq", "9", "--uarch", "zen3", "--format", "json")
    assert code == 0 and err.count("\n") == 1 and "target avx512 left out" in err and "avx512f" in err
    pairs = {(t["target"], t["uarch"]) for t in json.loads(out)["targets"]}
    assert ("x86-64", "zen3") in pairs and ("avx2", "zen3") in pairs and "avx512" not in {t for t, _ in pairs}


def test_trace_table_and_csv(capsys, tiny_folder, tmp_path):
    code, out, _ = run(capsys, "trace", str(tiny_folder), "--seq", "5", "--target", "aarch64")
    assert code == 0 and "aarch64 on neoverse-n1" in out and "total" in out and "layer 1" in out
    dest = tmp_path / "t.csv"
    assert run(capsys, "trace", str(tiny_folder), "--seq", "5", "--format", "csv", "-o", str(dest))[0] == 0
    lines = dest.read_text().splitlines()
    assert lines[0].startswith("target,uarch,layer,name,op")
    assert len(lines) > 20


def test_check_passes_on_real_weights_from_a_folder(capsys, tiny_folder):
    code, out, _ = run(capsys, "check", str(tiny_folder), "--seq", "6", "--format", "json")
    report = json.loads(out)
    assert code == 0 and report["passed"]
    for t in report["targets"]:
        assert t["max_abs_err"] <= 1e-4 and t["counts_match_cost_model"] and t["instructions_executed"] > 0


def test_check_in_parallel_processes_reports_what_one_process_does(capsys, tiny_folder):
    """--jobs 2 forks a process per target; the errors, counts and results are the ones --jobs 1 gives, each
    target reports its time and peak memory, and SIMT its thread instructions."""
    reports = {}
    for jobs in ("1", "2"):
        code, out, _ = run(capsys, "check", str(tiny_folder), "--seq", "6", "--target", "avx2", "--target", "simt",
                           "--jobs", jobs, "--format", "json")
        reports[jobs] = json.loads(out)
        assert code == 0 and reports[jobs]["jobs"] == int(jobs) and reports[jobs]["peak_rss_bytes"] > 0
    same = ("target", "max_abs_err", "max_rel_err", "instructions_executed", "thread_instructions", "worst_ops")
    assert [{k: t[k] for k in same} for t in reports["1"]["targets"]] == \
        [{k: t[k] for k in same} for t in reports["2"]["targets"]]
    avx2, simt = reports["2"]["targets"]
    assert avx2["thread_instructions"] is None and simt["thread_instructions"] > simt["instructions_executed"]
    assert all(t["seconds"] > 0 and t["peak_rss_bytes"] > 0 for t in reports["2"]["targets"])


def test_check_fails_when_tolerance_cannot_be_met(capsys, tiny_folder):
    code, out, _ = run(capsys, "check", str(tiny_folder), "--seq", "4", "--format", "json",
                       "--tolerance", "0")
    report = json.loads(out)
    # fp32 in a different order than PyTorch's kernels cannot be bit-exact everywhere
    assert code == 1 and not report["passed"]


def test_text_needs_the_bert_vocabulary(capsys, tiny_folder):
    code, _, err = run(capsys, "check", str(tiny_folder), "--seq", "8", "--text", "a movie")
    assert code == 2 and "vocabulary" in err and err.count("\n") == 1


def test_targets_lists_uarchs_with_sources(capsys):
    code, out, _ = run(capsys, "targets")
    assert code == 0
    for name in ("x86-64", "aarch64", "skylake-x", "zen4", "neoverse-n1", "neoverse-v1"):
        assert name in out


def test_unwritable_output_is_one_line(capsys, tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("")
    code, _, err = run(capsys, "trace", "minilm", "--seq", "4", "--format", "csv", "-o", str(blocker / "x.csv"))
    assert code == 2 and err.count("\n") == 1 and "Traceback" not in err


def test_trace_flops_equal_flop_counter_mode_with_batches(capsys, tiny_folder):
    from isasim.models import reference, registry

    code, out, _ = run(capsys, "trace", str(tiny_folder), "--seq", "5", "--batch", "3", "--format", "json")
    assert code == 0
    assert json.loads(out)["flops"] == reference.flop_count(registry.resolve(str(tiny_folder)), 5, 3)


def test_chrome_trace_slices_sum_to_the_reported_time(capsys, tiny_folder, tmp_path):
    dest = tmp_path / "trace.json"
    code, out, _ = run(capsys, "trace", str(tiny_folder), "--seq", "6", "--format", "json",
                       "--chrome-trace", str(dest))
    assert code == 0
    report = json.loads(out)
    events = json.loads(dest.read_text())["traceEvents"]
    for pid, t in enumerate(report["targets"]):
        slices = [e for e in events if e["ph"] == "X" and e["pid"] == pid]
        assert len(slices) == len(t["ops"])
        assert sum(e["dur"] for e in slices) == pytest.approx(t["seconds"] * 1e6)
        assert all(a["ts"] + a["dur"] == pytest.approx(b["ts"]) for a, b in zip(slices, slices[1:]))


def test_check_on_host_runs_simd_machine_code(capsys, tiny_folder):
    """AVX2 natively (when the CPU has it) and NEON under qemu: every kernel's machine code, chained on its
    own results, equals isasim's executor bit for bit and PyTorch within the tolerance."""
    from isasim.isa import native

    targets = ["neon"] + (["avx2"] if native.host_supports("x86-64", ("avx2", "fma")) else [])
    argv = ["check", str(tiny_folder), "--seq", "11", "--on-host", "--format", "json"]
    for t in targets:
        argv += ["--target", t]
    code, out, err = run(capsys, *argv)
    assert code == 0, err
    report = json.loads(out)
    assert {t["target"] for t in report["targets"]} == set(targets)
    for t in report["targets"]:
        assert t["on_host"]["bit_identical_to_executor"] and t["on_host"]["passed"]


def test_on_host_for_a_target_this_cpu_lacks_is_one_line(capsys, tiny_folder):
    from isasim.isa import native

    if native.host_supports("x86-64", ("avx512f", "avx512vl", "avx512dq")):
        pytest.skip("this CPU runs AVX-512")
    code, _, err = run(capsys, "check", str(tiny_folder), "--seq", "9", "--target", "avx512", "--on-host")
    assert code == 2 and "avx512f" in err and "drop --on-host" in err and err.count("\n") == 1


def test_simt_trace_reports_launches(capsys, tiny_folder):
    code, out, _ = run(capsys, "trace", str(tiny_folder), "--seq", "9", "--target", "simt", "--format", "json")
    assert code == 0
    (t,) = json.loads(out)["targets"]
    assert (t["target"], t["uarch"]) == ("simt", "a100")
    for op in t["ops"]:
        g = op["simt"]
        assert g["grid"] >= 1 and g["block"] % 32 == 0 and 0 < g["occupancy"] <= 1
        assert g["sectors"] * 32 == op["bytes"]["l2"] and op["cycles"] > 0
        assert op["bound"] in ("issue", "shared", "l2", "dram", "latency", "launch") or op["bound"].startswith("pipe")
    code, out, _ = run(capsys, "trace", str(tiny_folder), "--seq", "9", "--target", "simt", "--uarch", "h100")
    assert code == 0 and "simt on h100" in out and "occupancy" in out


def test_simt_check_and_emit(capsys, tiny_folder, tmp_path):
    import shutil

    code, out, _ = run(capsys, "check", str(tiny_folder), "--seq", "6", "--target", "simt", "--format", "json")
    (t,) = json.loads(out)["targets"]
    assert code == 0 and t["passed"] and t["counts_match_cost_model"] and t["max_abs_err"] <= 1e-4
    code, _, err = run(capsys, "check", str(tiny_folder), "--seq", "6", "--target", "simt", "--on-host")
    assert code == 2 and "GPU" in err and err.count("\n") == 1
    code, out, _ = run(capsys, "emit", str(tiny_folder), "--seq", "6", "--target", "simt", "-o", str(tmp_path))
    assert code == 0
    manifest = json.loads((tmp_path / "manifest.json").read_text())
    assert manifest["ptx_target"] == "sm_80" and manifest["kernels"]
    for k in manifest["kernels"]:
        assert (tmp_path / k["file"]).read_text().startswith(".version")
        if shutil.which("ptxas"):  # ptxas accepted it (else emit fails) and its count sits next to ours
            assert k["ptxas"]["registers"] > 0 and k["registers_estimate"] > 0


def test_targets_lists_gpus(capsys):
    code, out, _ = run(capsys, "targets")
    assert code == 0 and "simt" in out and "a100" in out and "h100" in out and "sm_90" in out


def test_scale_prints_each_point_and_keeps_its_json_contract(capsys, tiny_folder, tmp_path):
    code, out, _ = run(capsys, "scale", str(tiny_folder), "--target", "avx512", "--uarch", "zen4", "--seq", "16",
                       "--cores", "1,2,8,all", "--format", "json", "--plot", str(tmp_path / "scale.png"))
    assert code == 0 and (tmp_path / "scale.png").stat().st_size > 0
    report = json.loads(out)
    assert (report["model"], report["target"], report["uarch"]) == (tiny_folder.name, "avx512", "zen4")
    points = report["points"]
    assert [p["cores"] for p in points] == [1, 2, 8, 96]  # all: the 9654's 96 cores
    for p in points:
        assert {"cores", "seconds", "speedup", "efficiency", "bound"} <= p.keys()
        assert p["efficiency"] == pytest.approx(p["speedup"] / p["cores"])
    assert points[0]["speedup"] == 1 and points[1]["speedup"] > 1
    # a tiny model's kernels take microseconds: past a few cores the fork and join is all that is left to gain
    assert [p["efficiency"] for p in points] == sorted((p["efficiency"] for p in points), reverse=True)
    assert points[-1]["efficiency"] < 0.1 and points[2]["bound"] == "sync"
    assert points[-1]["slowest_family"] and report["socket"]["sources"]["dram"]
    code, out, _ = run(capsys, "scale", str(tiny_folder), "--target", "x86-64", "--seq", "16", "--cores", "1,4")
    assert code == 0 and "efficiency" in out and "scales worst" in out


def test_trace_and_check_on_many_cores(capsys, tiny_folder):
    code, out, _ = run(capsys, "trace", str(tiny_folder), "--seq", "16", "--cores", "4", "--format", "json")
    report = json.loads(out)
    assert code == 0 and {t["target"] for t in report["targets"]} == {"x86-64", "aarch64", "avx2", "avx512", "neon"}
    assert all(t["cores"] == 4 for t in report["targets"])  # every CPU target; the GPU is left out
    one = json.loads(run(capsys, "trace", str(tiny_folder), "--seq", "16", "--format", "json")[1])
    # a kernel is split only where that is faster (a tiny one stays on one core)
    assert all(t4["cycles"] <= t1["cycles"] for t4, t1 in zip(report["targets"], one["targets"]))
    assert any(t4["cycles"] < t1["cycles"] for t4, t1 in zip(report["targets"], one["targets"]))
    code, out, _ = run(capsys, "check", str(tiny_folder), "--seq", "16", "--target", "avx512", "--target", "neon",
                       "--cores", "3")
    text = " ".join(out.split())
    assert code == 0 and text.count("each kernel on 3 cores") == 2
    assert text.count("every one bit-identical to the whole kernel on one core") == 2


def test_scale_follows_a_fine_tuning_step_over_cores_and_over_tensor_parallel_gpus(capsys, tiny_folder):
    code, out, _ = run(capsys, "scale", str(tiny_folder), "--target", "avx2", "--seq", "16", "--batch", "4",
                       "--cores", "1,4", "--training", "--format", "json")
    report = json.loads(out)
    assert code == 0 and report["training"] and [p["cores"] for p in report["points"]] == [1, 4]
    forward = json.loads(run(capsys, "scale", str(tiny_folder), "--target", "avx2", "--seq", "16", "--batch", "4",
                             "--cores", "1", "--format", "json")[1])
    assert report["points"][0]["seconds"] > 2 * forward["points"][0]["seconds"]  # forward, backward and AdamW
    assert report["points"][1]["speedup"] > 1.5
    code, out, _ = run(capsys, "scale", str(tiny_folder), "--target", "simt", "--seq", "16", "--batch", "4",
                       "--gpus", "1,2", "--parallel", "tensor", "--training", "--format", "json")
    report = json.loads(out)
    assert code == 0 and report["training"] and report["parallel"] == "tensor"
    one, two = report["points"]
    assert one["allreduce_ms"] == 0 < two["allreduce_ms"] == pytest.approx(two["waits_ms"])
    assert one["per_gpu_batch"] == two["per_gpu_batch"] == 4  # every GPU runs the whole batch
    code, out, _ = run(capsys, "scale", str(tiny_folder), "--target", "avx2", "--seq", "16", "--batch", "4",
                       "--cores", "1,4", "--training")
    assert code == 0 and "fine-tuning step, batch 4 x seq 16 on avx2" in " ".join(out.split())
    code, out, _ = run(capsys, "scale", str(tiny_folder), "--target", "simt", "--seq", "16", "--batch", "4",
                       "--gpus", "1,2", "--parallel", "tensor", "--training")
    text = " ".join(out.split())
    assert code == 0 and "fine-tuning step, batch 4 x seq 16, on simt, a100: tensor parallel (Megatron-LM)" in text
    assert "all-reduce: the four a layer, which nothing hides" in text
    code, _, err = run(capsys, "scale", str(tiny_folder), "--target", "avx2", "--cores", "1,2", "--training",
                       "--precision", "int8")
    assert code == 2 and "--training costs a float32 fine-tuning step" in err


def test_scale_over_gpus_splits_a_training_step_and_names_what_stops_it(capsys, tiny_folder):
    points = {}
    for link in ("nvlink", "pcie"):
        code, out, _ = run(capsys, "scale", str(tiny_folder), "--target", "simt", "--seq", "16", "--batch", "8",
                           "--gpus", "1,2,4,8", "--link", link, "--format", "json")
        report = json.loads(out)
        assert code == 0 and report["link"]["name"] == link and report["link"]["source"]
        points[link] = report["points"]
    for p in points["nvlink"]:
        assert {"gpus", "seconds", "speedup", "efficiency", "bound"} <= p.keys()
        assert p["per_gpu_batch"] * p["gpus"] == 8
    waits = [p["waits_ms"] for p in points["nvlink"]]
    assert waits[0] == 0 and all(w > 0 for w in waits[1:])
    # a tiny model's gradients fill less than one 25 MB bucket: it starts when backward ends, so all of it waits
    assert all(p["waits_ms"] == pytest.approx(p["allreduce_ms"]) for p in points["nvlink"])
    assert all(p["waits_ms"] > q["waits_ms"] for p, q in zip(points["pcie"][1:], points["nvlink"][1:]))
    # a tiny model's AdamW, which every GPU runs whole, is most of the step once the batch is split
    assert points["nvlink"][-1]["bound"] in ("optimizer", "all-reduce") and points["nvlink"][-1]["efficiency"] < 0.5
    code, out, _ = run(capsys, "trace", str(tiny_folder), "--training", "--target", "simt", "--seq", "16",
                       "--batch", "8", "--gpus", "4")
    assert code == 0 and "data parallel on 4 GPUs over nvlink: 2 sentences each" in " ".join(out.split())
    code, out, _ = run(capsys, "trace", str(tiny_folder), "--training", "--target", "simt", "--seq", "16",
                       "--batch", "8", "--gpus", "4", "--format", "csv")
    header, row = out.splitlines()[:2]
    fields = dict(zip(header.split(","), row.split(",")))
    assert code == 0 and fields["gpus"] == "4" and float(fields["waits_ms"]) > 0
