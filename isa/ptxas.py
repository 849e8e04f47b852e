"""What NVIDIA's PTX assembler says about an emitted kernel: that it accepts it, and the registers, shared
memory and spills it allocates (`ptxas -v`), next to isasim's own register estimate."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

from isasim.isa.errors import UserError


def report(path: Path, arch: str) -> dict | None:
    """ptxas's verdict on a PTX file (it writes the .cubin beside it), or None where ptxas is not installed.
    Raises RuntimeError with ptxas's message if it rejects the file."""
    if shutil.which("ptxas") is None:
        return None
    r = subprocess.run(["ptxas", f"-arch={arch}", "-v", str(path), "-o", str(path.with_suffix(".cubin"))],
                       capture_output=True, text=True)
    if r.returncode != 0:
        first = (r.stderr.strip() or r.stdout.strip() or f"exit status {r.returncode}").splitlines()[0]
        raise UserError(f"ptxas rejected {path}: {first} (emit checks every PTX file with the ptxas on PATH; take "
                        f"it off PATH to emit without the check)")
    text = r.stdout + r.stderr
    regs = re.search(r"Used (\d+) registers", text)
    smem = re.search(r"(\d+) bytes smem", text)
    spills = re.search(r"(\d+) bytes spill stores", text)
    return {"registers": int(regs.group(1)) if regs else None, "shared_bytes": int(smem.group(1)) if smem else 0,
            "spill_store_bytes": int(spills.group(1)) if spills else 0}
