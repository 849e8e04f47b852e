"""How fast `isasim check` executes, and in how much memory: the figures issue 19 asks for (no asserts: this
is not a test; it prints what it measures).

    .venv/bin/python benchmarks/check_speed.py                      # the dataset check and bert-base (~15 min)
    .venv/bin/python benchmarks/check_speed.py --only dataset       # one of: dataset, minilm, bert-base
    .venv/bin/python benchmarks/check_speed.py --folder tuned/      # a fine-tuned folder (default: made once)

For each workload it runs, in child processes:
- every target alone (`--jobs 1`): its seconds, the instructions its executor simulated per second (for SIMT,
  warp instructions and thread instructions) and the peak RSS the check reports;
- all six targets as a user runs them (default --jobs): wall seconds, the largest process's peak RSS, and the
  whole process tree's memory (the sum of its processes' proportional set sizes, Pss, sampled every 0.2 s:
  pages that forked processes share count once).
The host is named first: figures differ between machines.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ISASIM = [sys.executable, "-m", "isasim.cli.main"]
TARGETS = ["x86-64", "aarch64", "avx2", "avx512", "neon", "simt"]


def host() -> str:
    model = next((ln.split(":", 1)[1].strip() for ln in Path("/proc/cpuinfo").read_text().splitlines()
                  if ln.startswith("model name")), platform.processor())
    return f"{model}, {len(os.sched_getaffinity(0))} cores, {os.sysconf('SC_PHYS_PAGES') * os.sysconf('SC_PAGE_SIZE') / 2**30:.0f} GiB"


def _tree(root: int) -> list[int]:
    """root and its descendants (from /proc/*/stat's parent field)."""
    parent = {}
    for d in Path("/proc").iterdir():
        if d.name.isdigit():
            try:
                parent[int(d.name)] = int((d / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                pass
    tree, frontier = [root], [root]
    while frontier:
        frontier = [p for p, pp in parent.items() if pp in frontier]
        tree += frontier
    return tree


def _pss(pid: int) -> int:
    try:
        for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
            if line.startswith("Pss:"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError):
        pass
    return 0


def run(argv: list[str]) -> tuple[float, int, dict]:
    """(wall seconds, the process tree's peak Pss in bytes, the JSON report) of one `isasim check`."""
    start = time.perf_counter()
    proc = subprocess.Popen(ISASIM + argv + ["--format", "json"], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    peak = [0]

    def sample():
        while proc.poll() is None:
            peak[0] = max(peak[0], sum(_pss(p) for p in _tree(proc.pid)))
            time.sleep(0.2)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    out, err = proc.communicate()
    wall = time.perf_counter() - start
    sampler.join()
    if proc.returncode not in (0, 1):
        raise SystemExit(f"failed: isasim {' '.join(argv)}\n{err[-2000:]}")
    return wall, peak[0], json.loads(out)


def gb(n: int) -> str:
    return f"{n / 1e9:.2f} GB"


def per_target(name: str, argv: list[str]) -> None:
    print(f"\n## {name}: each target alone (--jobs 1)\n")
    print("| target | seconds (check) | executing | instructions simulated | per second | peak RSS |")
    print("|---|---:|---:|---:|---:|---:|")
    for target in TARGETS:
        wall, _, report = run(argv + ["--target", target, "--jobs", "1"])
        t = report["targets"][0]
        rate = t["instructions_executed"] / t["seconds"]
        what = f"{t['instructions_executed']:,}"
        per_s = f"{rate / 1e6:,.0f} M/s"
        if t.get("thread_instructions"):
            what += f" warp, {t['thread_instructions']:,} thread"
            per_s += f" warp, {t['thread_instructions'] / t['seconds'] / 1e6:,.0f} M/s thread"
        print(f"| {target} | {wall:.0f} | {t['seconds']:.0f} s | {what} | {per_s} | {gb(t['peak_rss_bytes'])} |"
              + ("" if t["passed"] else " FAILED"), flush=True)


def all_targets(name: str, argv: list[str]) -> None:
    wall, tree, report = run(argv)
    each = ", ".join(f"{t['target']} {t['seconds']:.0f} s" for t in report["targets"])
    print(f"\n## {name}: all six targets, as a user runs it\n")
    print(f"- `isasim {' '.join(argv)}`: {wall:.0f} s wall in {report['jobs']} processes ({each}); "
          f"passed: {report['passed']}")
    print(f"- peak RSS of the largest process: {gb(report['peak_rss_bytes'])}; the process tree's peak Pss: "
          f"{gb(tree)}", flush=True)


def fine_tuned(folder: str | None) -> str:
    if folder:
        return folder
    out = Path(tempfile.gettempdir()) / "isasim-bench-tuned"
    if not (out / "finetune.json").exists():
        print(f"(fine-tuning minilm into {out} first: `isasim finetune -o {out}`)", flush=True)
        subprocess.run(ISASIM + ["finetune", "-o", str(out)], check=True, stdout=subprocess.DEVNULL)
    return str(out)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--only", choices=("dataset", "minilm", "bert-base"), action="append")
    ap.add_argument("--folder", help="a fine-tuned folder for the dataset check (default: fine-tune one)")
    ap.add_argument("--skip-alone", action="store_true", help="only the all-targets runs")
    args = ap.parse_args()
    print(f"host: {host()}")
    work = {"dataset": lambda: ["check", fine_tuned(args.folder), "--dataset", "test"],
            "minilm": lambda: ["check", "minilm", "--seq", "128"],
            "bert-base": lambda: ["check", "bert-base"]}
    for name in args.only or list(work):
        argv = work[name]()
        all_targets(name, argv)
        if not args.skip_alone:
            per_target(name, argv)


if __name__ == "__main__":
    main()
