"""benchmarks/cuda_run.py: what it carries to a GPU machine is what isasim's executor ran, in argument order;
its figures are the arithmetic it says; without a GPU it refuses in one line. (The GPU half itself runs only
where an NVIDIA GPU is: its results are in the README.)"""

from __future__ import annotations

import ctypes.util
import importlib
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from isasim.backends import backend_for
from isasim.backends.base import load_memory
from isasim.isa.gpu import load_gpu
from isasim.isa.targets import GPU_TARGETS
from isasim.lowering.pipeline import lower_graph
from isasim.models import capture, registry
from tiny import save_bert

BENCH = Path(__file__).resolve().parents[1] / "benchmarks"
sys.path.insert(0, str(BENCH))
cuda_run = importlib.import_module("cuda_run")
cuda_driver = importlib.import_module("cuda_driver")


@pytest.fixture(scope="module")
def prepared(tmp_path_factory):
    folder = save_bert(tmp_path_factory.mktemp("tiny-cuda"), 7, hidden_size=32, num_hidden_layers=2,
                       num_attention_heads=4, intermediate_size=64, vocab_size=100, max_position_embeddings=24)
    out = tmp_path_factory.mktemp("prepared")
    manifest = cuda_run.prepare(str(folder), 16, 2, "h200", out, kernel_mb=16.0)
    return folder, out, manifest


def test_each_carried_kernel_reproduces_its_saved_outputs_from_its_saved_inputs(prepared):
    """The buffers saved for a kernel are those it ran on, in the order of its PTX parameters: executing the
    kernel again on the saved inputs gives the saved outputs, bit for bit."""
    folder, out, manifest = prepared
    target, gpu = GPU_TARGETS["simt"], load_gpu("h200")
    backend = backend_for(target)
    lowered = lower_graph(capture.capture(registry.resolve(str(folder)), 16, 2).graph)
    steps = {s.node.name: s for s in lowered.steps}
    distinct = {k["name"] for k in manifest["kernels"]}
    assert len(distinct) == len(manifest["kernels"])
    assert sum(k["instances"] for k in manifest["kernels"]) == sum(s.kernel is not None for s in lowered.steps)
    assert manifest["kernels"] and all("skipped" not in k for k in manifest["kernels"])
    for k in manifest["kernels"]:
        program = backend.select(steps[k["name"]].kernel, target, gpu)
        assert [a["name"] for a in k["arguments"]] == [b.name for b in program.buffers]
        assert f".visible .entry {k['entry']}(" in (out / k["ptx"]).read_text()
        saved = {a["name"]: np.load(out / a["file"]) for a in k["arguments"]}
        mem = load_memory(program, saved)
        backend.execute(program, mem, gpu)
        for a in k["arguments"]:
            if a["role"] == "output":
                assert mem.read(a["name"]).tobytes() == saved[a["name"]].tobytes(), (k["name"], a["name"])


def test_a_kernel_over_the_size_limit_is_named_and_not_carried(prepared, tmp_path):
    folder, _, _ = prepared
    manifest = cuda_run.prepare(str(folder), 16, 2, "h200", tmp_path, kernel_mb=0.0)
    assert all("its buffers hold" in k["skipped"] for k in manifest["kernels"])
    assert not list(tmp_path.glob("*.npy"))


def test_timing_only_carries_no_buffers_and_fills_inputs_validly(prepared, tmp_path):
    folder, _, _ = prepared
    manifest = cuda_run.prepare(str(folder), 16, 2, "h200", tmp_path, kernel_mb=16.0, timing_only=True)
    assert not manifest["checks_bits"] and not list(tmp_path.glob("*.npy"))
    args = [a for k in manifest["kernels"] for a in k["arguments"]]
    kinds = {np.dtype(a["dtype"]).kind for a in args}
    assert {"f", "i", "b"} <= kinds
    for a in args:
        x = cuda_run.filler(a)
        assert x.dtype == np.dtype(a["dtype"]) and x.size == a["elements"]
        if x.dtype.kind == "f":
            assert x.min() >= -1 and x.max() < 1 and np.isfinite(x).all()
            assert np.array_equal(x, cuda_run.filler(a))  # the same values on every run
        elif x.dtype.kind == "b":
            assert x.all()
        else:
            assert not x.any()  # a valid index into any table


def test_the_summary_is_the_arithmetic_it_states():
    rows = [{"name": "a", "instances": 2, "predicted_cycles": 2000.0, "measured_us": 2.0, "bits": "identical"},
            {"name": "b", "instances": 1, "predicted_cycles": 4000.0, "measured_us": 1.0, "bits": "identical"},
            {"name": "c", "instances": 1, "skipped": "too big", "bits": "not run"}]
    manifest = {"model": "m", "seq": 1, "batch": 1, "gpu": "h200", "clock_ghz": 2.0, "checks_bits": True}
    device = cuda_driver.Device("GPU", 1, 2.0, "9.0")
    r = cuda_run.summarise(manifest, rows, device, [1.0, 1.0])
    # at the measured 1 GHz: a is predicted 2 us (ratio 1.0), b 4 us (ratio 0.25)
    assert r["kernels"][0]["ratio"] == pytest.approx(1.0) and r["kernels"][1]["ratio"] == pytest.approx(0.25)
    assert r["kernels"][0]["predicted_us"] == pytest.approx(1.0)  # at the description's 2 GHz
    assert r["forward_ratio"] == pytest.approx((2 * 2.0 + 1.0) / (2 * 2.0 + 4.0))
    assert r["weighted_error"] == pytest.approx(3.0 / 5.0)
    assert r["median_error"] == pytest.approx((0.0 + 0.75) / 2)
    assert r["not_run"] == ["c"] and r["bit_identical"] == 2 and r["run"] == 2


@pytest.mark.skipif(ctypes.util.find_library("cuda") is not None, reason="this host has a CUDA driver")
def test_without_a_gpu_run_refuses_in_one_line(prepared):
    _, out, _ = prepared
    r = subprocess.run([sys.executable, str(BENCH / "cuda_run.py"), "run", str(out)], capture_output=True,
                       text=True)
    assert r.returncode == 2 and r.stdout == ""
    assert r.stderr.count("\n") == 1 and "NVIDIA GPU" in r.stderr and "Traceback" not in r.stderr
    json.loads((out / "manifest.json").read_text())  # left as it was
