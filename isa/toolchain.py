"""Building native code on this host: finding its tools, compiling C, and caching what was built.

Built artefacts are cached by sha256 of their inputs in a temp dir (``$ISASIM_NATIVE_CACHE`` overrides it), and
renamed into place once complete, so concurrent builds are safe. A missing tool raises NativeUnavailable, whose
message says how to install it; a compiler's errors raise ValueError with its first lines. isa/native.py builds
and runs emitted kernels with these; isa/fastfma.py builds the executors' fused multiply-add.
"""

from __future__ import annotations

import ctypes
import hashlib
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

_ERR_LINES = 20
INSTALL = "bash .ci/install-tools (or apt-get install -y {pkg})"


class NativeUnavailable(Exception):
    """A tool needed to build or run a kernel is missing on this machine."""


def cpu_flags() -> set[str]:
    flags: set[str] = set()
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return flags
    for line in text.splitlines():
        key, _, val = line.partition(":")
        if key.strip().lower() in ("flags", "features"):
            flags.update(val.lower().split())
    return flags


def which(name: str, pkg: str) -> str:
    path = shutil.which(name)
    if path is None:
        raise NativeUnavailable(f"{name} not found: " + INSTALL.format(pkg=pkg))
    return path


def cache_dir() -> Path:
    base = os.environ.get("ISASIM_NATIVE_CACHE")
    d = Path(base) if base else Path(tempfile.gettempdir()) / f"isasim-native-{os.getuid()}"
    d.mkdir(parents=True, exist_ok=True)
    return d


def digest(*parts: str) -> str:
    h = hashlib.sha256()
    for p in parts:
        h.update(p.encode())
        h.update(b"\0")
    return h.hexdigest()


def tool_error(what: str, symbol: str, proc: subprocess.CompletedProcess) -> ValueError:
    text = (proc.stderr or "") + (proc.stdout or "")
    lines = [ln for ln in text.splitlines() if ln.strip()]
    msg = "\n".join(lines[:_ERR_LINES]) or f"exit status {proc.returncode}"
    return ValueError(f"{what} failed for {symbol!r}:\n{msg}")


def sh(cmd: list[str], cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, cwd=cwd, capture_output=True, text=True)


def build(key: str, suffix: str, make) -> Path:
    """Return cached artefact ``key+suffix``, building it with ``make(tmpdir) -> path``
    inside a private temp dir and renaming it into place (safe under concurrency)."""
    cache = cache_dir()
    out = cache / f"{key}{suffix}"
    if out.exists():
        return out
    with tempfile.TemporaryDirectory(dir=cache, prefix="build-") as tmp:
        built = make(Path(tmp))
        os.replace(built, out)
    return out


_LIBRARIES: dict[str, ctypes.CDLL] = {}


def loaded(key: str, make) -> ctypes.CDLL:
    """The shared library cached under `key` (built by `make(tmpdir) -> path` when absent), loaded once per
    process."""
    lib = _LIBRARIES.get(key)
    if lib is None:
        lib = _LIBRARIES[key] = ctypes.CDLL(str(build(key, ".so", make)))
    return lib


def c_library(source: str, name: str) -> ctypes.CDLL:
    """C `source` compiled for this host into a shared library (cached by its text) and loaded; `name` names it
    in errors. Floating-point contraction is off, so the C means exactly what it says."""
    gcc = which("gcc", "gcc")
    key = digest("c-so-v1", " ".join(sorted(cpu_flags())), source)  # -march=native: built for these features

    def make(tmp: Path) -> Path:
        (tmp / "lib.c").write_text(source)
        p = sh([gcc, "-O3", "-march=native", "-fno-math-errno", "-ffp-contract=off", "-fPIC", "-shared", "lib.c",
                "-o", "lib.so", "-lm"], tmp)
        if p.returncode:
            raise tool_error("compilation", name, p)
        return tmp / "lib.so"

    return loaded(key, make)
