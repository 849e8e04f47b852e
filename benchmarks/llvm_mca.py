"""isasim's predicted cycles per inner-loop iteration next to llvm-mca's, for every kernel family.

    apt-get install -y llvm-19      # llvm-mca with real Neoverse models (Debian's llvm-14 lacks them)
    .venv/bin/python benchmarks/llvm_mca.py [--model minilm] [--seq 128]

Emits every kernel (`isasim emit`), runs llvm-mca 19 on the region each file marks (the hottest loop), and
prints both predictions per op family and uarch with the relative difference. llvm-mca models only the
out-of-order back end: every load hits L1 and there is no front end, which is also what isasim's per-trip
block cost assumes (memory enters isasim's kernel cycles separately, as bandwidth floors).
"""

from __future__ import annotations

import argparse
import json
import re
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

MCA = "/usr/lib/llvm-19/bin/llvm-mca"
# isasim uarch -> (llvm triple, llvm -mcpu)
CPUS = {"skylake-x": ("x86_64", "skylake-avx512"), "zen4": ("x86_64", "znver4"),
        "sapphirerapids": ("x86_64", "sapphirerapids"),
        "neoverse-n1": ("aarch64", "neoverse-n1"), "neoverse-v1": ("aarch64", "neoverse-v1")}
ISA_OF = {"x86_64": "x86-64", "aarch64": "aarch64"}


def mca_cycles_per_iteration(path: Path, triple: str, cpu: str) -> float:
    out = subprocess.run([MCA, f"-mtriple={triple}", f"-mcpu={cpu}", "-iterations=200", str(path)],
                         capture_output=True, text=True, check=True).stdout
    iters = int(re.search(r"Iterations:\s+(\d+)", out).group(1))
    total = int(re.search(r"Total Cycles:\s+(\d+)", out).group(1))
    return total / iters


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="minilm")
    ap.add_argument("--seq", type=int, default=128)
    ap.add_argument("--target", action="append", help="targets to compare (default: all)")
    args = ap.parse_args()
    from isasim.isa.targets import TARGETS
    names = args.target or list(TARGETS)
    pairs = [(t, u) for t in names for u, (triple, _) in CPUS.items() if ISA_OF[triple] == TARGETS[t].isa]
    if not Path(MCA).exists():
        sys.exit(f"{MCA} not found: apt-get install -y llvm-19")
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for target, uarch in pairs:
            triple, cpu = CPUS[uarch]
            out = Path(tmp) / f"{target}-{uarch}"
            subprocess.run([sys.executable, "-m", "isasim.cli.main", "emit", args.model, "--seq", str(args.seq),
                            "--target", target, "--uarch", uarch, "-o", str(out)],
                           check=True, capture_output=True)
            manifest = json.loads((out / "manifest.json").read_text())
            seen = set()
            for k in manifest["kernels"]:
                family = (k["op"], tuple(k["shape"]))
                if family in seen or k["inner_loop"] is None:
                    continue
                seen.add(family)
                ours = k["inner_loop"]["predicted_cycles_per_iteration"]
                theirs = mca_cycles_per_iteration(out / k["file"], triple, cpu)
                rows.append((f"{target}/{uarch}", k["name"], k["op"].removeprefix("aten."), ours, theirs,
                             (ours - theirs) / theirs, k["inner_loop"]["bound"]))
    print(f"{'target/uarch':<22} {'kernel':<22} {'op':<24} {'isasim':>8} {'llvm-mca':>9} {'diff':>7}  isasim bound")
    for pair, name, op, ours, theirs, diff, bound in rows:
        print(f"{pair:<22} {name:<22} {op:<24} {ours:8.2f} {theirs:9.2f} {diff:+7.1%}  {bound}")
    diffs = [abs(r[5]) for r in rows]
    print(f"\n{len(rows)} inner loops: median |diff| {statistics.median(diffs):.1%}, "
          f"worst {max(diffs):.1%}, within 10%: {sum(d <= 0.10 for d in diffs)}, beyond 25%: "
          f"{sum(d > 0.25 for d in diffs)}")
    for target, uarch in pairs:
        d = [abs(r[5]) for r in rows if r[0] == f"{target}/{uarch}"]
        print(f"  {target + '/' + uarch:<22} median |diff| {statistics.median(d):.1%}, worst {max(d):.1%} "
              f"over {len(d)} loops")


if __name__ == "__main__":
    main()
