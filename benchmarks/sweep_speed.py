"""How much faster `isasim sweep` runs a grid on a local Dask cluster than one point after another: the figures
issue 17 asks for (no asserts: this is not a test; it prints what it measures).

    .venv/bin/python benchmarks/sweep_speed.py                        # minilm, 5 seqs x 2 batches x 6 targets
    .venv/bin/python benchmarks/sweep_speed.py --seq 32,64 --batch 1  # a smaller grid
    .venv/bin/python benchmarks/sweep_speed.py --cold                 # captures inside the timed runs too
    .venv/bin/python benchmarks/sweep_speed.py --repeat 5             # more pairs of runs (default 3)

Each run is the command line a user types, in a child process, into a fresh output file: `isasim sweep
--serial` (every point in one process, in order) and `isasim sweep --workers N` (a LocalCluster of N worker
processes, N = this machine's cores by default). Both use one graph cache in a temporary folder. By default
every shape is captured before either run (the cache warm, as on a second sweep of the same shapes), so the
runs time the costing; with --cold each run starts from an empty cache and captures its shapes itself (both
in the sweep's own process: the Dask run's workers cost one shape while the next is captured). The serial
and Dask runs alternate, --repeat times, so that a noisy spell of a shared host falls on both; each pair's
tables must hold the same rows. The host is named first: figures differ between machines.
"""

from __future__ import annotations

import argparse
import csv
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from statistics import median

sys.path.insert(0, str(Path(__file__).resolve().parent))
from check_speed import host  # noqa: E402  (the same host line in every benchmark)

ISASIM = [sys.executable, "-m", "isasim.cli.main"]


def run(argv: list[str], env: dict) -> float:
    start = time.perf_counter()
    done = subprocess.run(ISASIM + argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    seconds = time.perf_counter() - start
    if done.returncode not in (0, 1):
        sys.exit(f"isasim {' '.join(argv)} failed: {done.stderr.strip()}")
    return seconds


def rows(path: Path) -> dict:
    with open(path, newline="") as f:
        return {tuple(r[c] for c in ("model", "seq", "batch", "precision", "target", "uarch")): r
                for r in csv.DictReader(f)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="minilm")
    ap.add_argument("--seq", default="32,64,128,256,512")
    ap.add_argument("--batch", default="1,8")
    ap.add_argument("--target", default="all")
    ap.add_argument("--workers", type=int, default=len(os.sched_getaffinity(0)))
    ap.add_argument("--cold", action="store_true", help="captures inside the timed runs (an empty graph cache)")
    ap.add_argument("--repeat", type=int, default=3, help="serial and Dask runs, alternated (default 3)")
    a = ap.parse_args()
    grid = ["--model", a.model, "--seq", a.seq, "--batch", a.batch, "--target", a.target]
    print(f"host: {host()}")
    work = Path(tempfile.mkdtemp(prefix="isasim-sweep-speed-"))
    env = {**os.environ, "ISASIM_CACHE_DIR": str(work / "cache"), "HF_HUB_OFFLINE": "1"}
    try:
        if not a.cold:
            seconds = run(["sweep", *grid, "--serial", "-o", str(work / "warm.csv")], env)
            print(f"capturing every shape (and one serial pass to warm the cache): {seconds:.1f} s")
        times: dict[str, list[float]] = {}
        runs = (("serial", ["--serial"]), (f"dask, {a.workers} workers", ["--workers", str(a.workers)]))
        for r in range(a.repeat):
            for name, extra in runs:
                if a.cold:
                    shutil.rmtree(work / "cache", ignore_errors=True)
                out = work / f"{name.split(',')[0]}{r}.csv"
                times.setdefault(name, []).append(run(["sweep", *grid, *extra, "-o", str(out)], env))
                print(f"{name}: {times[name][-1]:.1f} s")
        same = all(rows(work / f"serial{r}.csv") == rows(work / f"dask{r}.csv") for r in range(a.repeat))
        print(f"points: {len(rows(work / 'serial0.csv'))}; rows identical: {same}")
        (_, serial), (_, dask) = times.items()
        ratios = sorted(d / s for s, d in zip(serial, dask))
        print(f"median serial {median(serial):.1f} s, median dask {median(dask):.1f} s; dask / serial: median "
              f"{median(ratios):.2f} (runs {', '.join(f'{x:.2f}' for x in ratios)}; "
              f"{'warm' if not a.cold else 'cold'} graph cache)")
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
