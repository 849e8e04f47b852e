"""isasim as a library: docs/api.md is what its examples print today, and the report objects are what the
command line prints."""

import contextlib
import io
import json
import re
import sys
from pathlib import Path

import pytest

import isasim
from isasim.cli.main import main
from isasim.isa.hardware import Bound

API = Path(__file__).parent.parent / "docs" / "api.md"


def examples() -> list[tuple[str, str]]:
    """(code, what it printed) for every example in docs/api.md."""
    return re.findall(r"```python\n(.*?)\n```\n\n```text\n(.*?)\n```", API.read_text(), re.S)


def test_every_example_prints_what_the_page_shows():
    found = examples()
    assert len(found) >= 8
    namespace: dict = {}
    for code, shown in found:
        buf = io.StringIO()
        with contextlib.redirect_stdout(buf):
            exec(compile(code, "<docs/api.md>", "exec"), namespace)
        assert buf.getvalue().rstrip() == shown, f"run docs/make_api.py: this example changed:\n{code}"


def test_the_report_is_what_the_command_prints(capsys):
    report = isasim.trace("minilm", targets=["neon", "simt"], seq=8)
    assert main(["trace", "minilm", "--seq", "8", "--target", "neon", "--target", "simt", "--format", "json"]) == 0
    assert json.loads(capsys.readouterr().out) == report.to_dict()
    bounds = [op.bound for t in report.targets for op in t.ops]
    assert all(isinstance(b, Bound) and b.cycles > 0 for b in bounds)
    assert {b.kind for b in bounds} >= {"port", "launch"}  # a CPU core's bound and a GPU's


def test_to_pandas_needs_pandas_and_says_so(monkeypatch):
    report = isasim.trace("minilm", targets="neon", seq=8)
    assert len(report.to_pandas()) == len(report.targets[0].ops)
    monkeypatch.setitem(sys.modules, "pandas", None)  # as if it were not installed
    with pytest.raises(isasim.UserError, match="pip install"):
        report.to_pandas()


@pytest.mark.parametrize("call, needle", [
    (lambda: isasim.trace("minilm", targets=[], seq=8), "no targets or machines named"),
    (lambda: isasim.training_step("minilm", targets="avx2", every_machine=True), "drop targets and machines"),
    (lambda: isasim.explain("minilm", "gelu", targets="simt", seq=8, iterations=0), "--iterations 0"),
    (lambda: isasim.explain("minilm", "cumsum", targets="simt", seq=8), "no kernel matches --op cumsum"),
])
def test_bad_arguments_are_one_line_user_errors(call, needle):
    with pytest.raises(isasim.UserError, match=needle) as e:
        call()
    assert "\n" not in str(e.value)


def test_explain_and_emit_return_reports(tmp_path):
    explained = isasim.explain("minilm", "gelu", targets=["x86-64", "simt"], seq=8)
    cpu, gpu = explained  # one explanation per target, in order
    assert (cpu.target, gpu.target) == ("x86-64", "simt")
    assert len(explained.to_pandas()) == len(cpu.listing) + len(gpu.listing)
    assert [e["target"] for e in explained.to_dict()["explanations"]] == ["x86-64", "simt"]
    assert all("chrome_events" not in e for e in explained.to_dict()["explanations"])
    emitted = isasim.emit("minilm", tmp_path, targets=["neon", "simt"], seq=8, op="softmax")
    files = {Path(t.folder) / k["file"] for t in emitted.targets for k in t.manifest["kernels"]}
    assert len(files) == len(emitted.to_pandas()) == 12 and all(f.is_file() for f in files)


def test_import_isasim_is_light():
    """`import isasim` loads no engine, model or torch: the functions load on first use."""
    import subprocess

    code = "import sys, isasim; print(sorted(m for m in sys.modules if m.startswith(('isasim.', 'torch'))))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "['isasim.version']"
