"""isasim's predicted cycles per inner-loop iteration next to llvm-mca's, for every kernel family.

    apt-get install -y llvm-19      # llvm-mca with real Neoverse models (Debian's llvm-14 lacks them)
    .venv/bin/python benchmarks/llvm_mca.py [--model minilm] [--seq 128]

Emits every kernel (`isasim emit`), runs llvm-mca 19 on the region each file marks (the hottest loop), and
prints both predictions per op family and uarch with the relative difference. llvm-mca models only the
out-of-order back end: every load hits L1 and there is no front end, which is also what isasim's per-trip
block cost assumes (memory enters isasim's kernel cycles separately, as bandwidth floors). It also runs the
loop alone, so isasim's figure here is the loop's alone too: a reduction loop whose enclosing loop's
iterations are independent runs in isasim beside the next iterations' chains (`isa/cost.py` `_overlap`,
measured natively by benchmarks/chain_overlap.py), which llvm-mca cannot see.
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

from isasim.isa.machine import load_uarch

MCA = "/usr/lib/llvm-19/bin/llvm-mca"
# isasim uarch -> (llvm triple, llvm -mcpu). No zen5: LLVM 19's -mcpu=znver5 schedules with the Znver4 model
CPUS = {"skylake-x": ("x86_64", "skylake-avx512"), "zen3": ("x86_64", "znver3"), "zen4": ("x86_64", "znver4"),
        "sapphirerapids": ("x86_64", "sapphirerapids"),
        "neoverse-n1": ("aarch64", "neoverse-n1"), "neoverse-v1": ("aarch64", "neoverse-v1")}
ISA_OF = {"x86_64": "x86-64", "aarch64": "aarch64"}


def mca(path: Path, triple: str, cpu: str) -> tuple[float, float]:
    """(simulated cycles per iteration, LLVM's resource-only bound per iteration)."""
    out = subprocess.run([MCA, f"-mtriple={triple}", f"-mcpu={cpu}", "-iterations=200", str(path)],
                         capture_output=True, text=True, check=True).stdout
    iters = int(re.search(r"Iterations:\s+(\d+)", out).group(1))
    total = int(re.search(r"Total Cycles:\s+(\d+)", out).group(1))
    return total / iters, float(re.search(r"Block RThroughput:\s+([\d.]+)", out).group(1))


def explain(ours: float, theirs: float, resource: float, loop: dict, uarch) -> tuple[str, str]:
    """(cause, sentence): why the two predictions differ, from what each model says about the loop."""
    if abs(ours - theirs) <= 0.10 * theirs:
        return "", ""
    keys = loop["timing_keys"]
    if ours < theirs and theirs > 1.15 * resource:
        return "chain", (f"llvm-mca's simulation is held by dependencies beyond its own resource bound "
                         f"{resource:.2f}: it overlaps fewer iterations than isasim's steady state (a long "
                         f"per-element chain in its finite scheduler, or a zero idiom it does not break)")
    if ours > theirs and loop["bound"] == "window":
        return "window", (f"isasim's window holds fewer trips in flight than llvm-mca's: reorder buffer "
                          f"{uarch.reorder_buffer} and scheduler {uarch.scheduler} (its sources in the uarch "
                          f"data; LLVM gives some cores' vector pipes no scheduler limit), with the divider "
                          f"busy on the ports it shares")
    if ours > theirs and any(k.startswith(("vdiv", "fdiv", "vsqrt", "fsqrt")) for k in keys):
        return "divider", ("isasim charges the divider's occupancy (its reciprocal throughput) to the issue "
                           "ports it shares; LLVM models a separate, non-pipelined divider unit")
    if loop["bound"] == "issue" and ours > theirs:
        return "issue", (f"isasim gives every instruction its slots at rename (no sub+jnz macro-fusion, no move "
                         f"elimination); LLVM's resource bound is {resource:.2f}")
    sourced = [k for k in keys if any(m in uarch.timing(k).source for m in ("DISAGREES", "[L19] gives", "ESTIMATE"))]
    why = f"port/throughput data differ: LLVM's resource bound {resource:.2f}, isasim's ports {loop['ports']:.2f}"
    if sourced:
        why += "; isasim's entry departs from LLVM's model, with its source, for " + ", ".join(sourced)
    return "data", why


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="minilm")
    ap.add_argument("--seq", type=int, default=128)
    ap.add_argument("--target", action="append", help="targets to compare (default: all)")
    args = ap.parse_args()
    from isasim.backends import machine_names
    from isasim.isa.targets import TARGETS
    names = args.target or list(TARGETS)
    pairs = [(t, u) for t in names for u, (triple, _) in CPUS.items()
             if ISA_OF[triple] == TARGETS[t].isa and u in machine_names(TARGETS[t])]  # (no AVX-512 on Zen 3)
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
                # the loop alone, as llvm-mca simulates it: not the chains of the enclosing loop's other
                # iterations, which isasim overlaps with it (benchmarks/chain_overlap.py measures those)
                ours = k["inner_loop"]["alone_cycles_per_iteration"]
                theirs, resource = mca(out / k["file"], triple, cpu)
                rows.append((f"{target}/{uarch}", k["name"], k["op"].removeprefix("aten."), ours, theirs,
                             (ours - theirs) / theirs, k["inner_loop"]["bound"],
                             *explain(ours, theirs, resource, k["inner_loop"], load_uarch(uarch))))
    print(f"{'target/uarch':<22} {'kernel':<14} {'op':<20} {'isasim':>7} {'llvm-mca':>8} {'diff':>7}  "
          f"{'isasim bound':<14} why they differ (gaps over 10%)")
    for pair, name, op, ours, theirs, diff, bound, _, why in rows:
        print(f"{pair:<22} {name:<14} {op:<20} {ours:7.2f} {theirs:8.2f} {diff:+7.1%}  {bound:<14} {why}")
    diffs = [abs(r[5]) for r in rows]
    print(f"\n{len(rows)} inner loops: median |diff| {statistics.median(diffs):.1%}, "
          f"worst {max(diffs):.1%}, within 10%: {sum(d <= 0.10 for d in diffs)}, beyond 25%: "
          f"{sum(d > 0.25 for d in diffs)}, of those unexplained: {sum(1 for r in rows if abs(r[5]) > 0.25 and not r[7])}")
    kinds: dict[str, int] = {}
    for r in rows:
        if abs(r[5]) > 0.25:
            kinds[r[7]] = kinds.get(r[7], 0) + 1
    print("  gaps beyond 25% by cause: " + ", ".join(f"{k} {n}" for k, n in sorted(kinds.items(), key=lambda kv: -kv[1])))
    for target, uarch in pairs:
        d = [abs(r[5]) for r in rows if r[0] == f"{target}/{uarch}"]
        print(f"  {target + '/' + uarch:<22} median |diff| {statistics.median(d):.1%}, worst {max(d):.1%} "
              f"over {len(d)} loops")


if __name__ == "__main__":
    main()
