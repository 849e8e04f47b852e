"""Measure the pipeline against issue 2's goals and print the figures (no asserts: this is not a test).

    .venv/bin/python benchmarks/pipeline.py            # everything (about 6 minutes on 2 cores)
    .venv/bin/python benchmarks/pipeline.py --quick    # skip `check bert-base`

Each command runs as a child process; wall time and peak resident memory come from wait4's rusage.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ISASIM = [sys.executable, "-m", "isasim.cli.main"]


def run(argv: list[str], env: dict | None = None) -> tuple[float, float, str]:
    """(wall seconds, peak RSS in MB, stdout) of one child process."""
    start = time.perf_counter()
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
                            env={**os.environ, **(env or {})})
    out = proc.stdout.read()
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - start
    if os.waitstatus_to_exitcode(status) not in (0, 1):
        raise SystemExit(f"failed: {' '.join(argv)}")
    return wall, usage.ru_maxrss / 1024, out


def torch_forward_seconds(model: str, seq: int) -> float:
    """Median eager PyTorch forward time after warm-up (the first runs are ~10x slower)."""
    code = f"""
import time, statistics, torch
from isasim.models import registry, capture
spec = registry.resolve({model!r})
cap = capture.capture(spec, {seq}, 1, with_values=True)
torch.set_num_threads(os.cpu_count() or 1)
with torch.no_grad():
    for _ in range(10):
        cap.model(**cap.inputs)
    times = []
    for _ in range(10):
        t = time.perf_counter(); cap.model(**cap.inputs); times.append(time.perf_counter() - t)
print(statistics.median(times))
"""
    return float(subprocess.run([sys.executable, "-c", "import os\n" + code], capture_output=True, text=True,
                                check=True).stdout.split()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="skip the 5-minute `check bert-base`")
    args = ap.parse_args()
    rows: list[tuple[str, str, str]] = []
    cold = {"ISASIM_CACHE": "off"}

    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "bb.json"
        wall, rss, _ = run(ISASIM + ["trace", "bert-base", "--format", "json", "-o", str(out)], cold)
        report = json.loads(out.read_text())
        rows.append(("trace bert-base (cold, capture included)", f"{wall:.1f} s, {rss:.0f} MB peak", "<= 10 s, < 3 GB"))
        wall_w, rss_w, _ = run(ISASIM + ["trace", "bert-base", "--format", "json", "-o", str(out)])
        rows.append(("trace bert-base (graph cache warm)", f"{wall_w:.1f} s, {rss_w:.0f} MB peak", ""))
        wall_l, rss_l, _ = run(ISASIM + ["trace", "bert-large", "--seq", "512", "--format", "json", "-o",
                                         str(Path(tmp) / "bl.json")], cold)
        rows.append(("trace bert-large seq 512 (cold)", f"{wall_l:.1f} s ({wall_l / wall:.1f}x), {rss_l:.0f} MB peak",
                     "<= 3x bert-base"))

    flop_code = ("from isasim.models import registry, reference; "
                 "print(reference.flop_count(registry.resolve('bert-base'), 128, 1))")
    torch_flops = int(subprocess.run([sys.executable, "-c", flop_code], capture_output=True, text=True,
                                     check=True).stdout.split()[-1])
    rows.append(("bert-base seq 128 FLOPs: isasim / FlopCounterMode", f"{report['flops']:,} / {torch_flops:,}",
                 "equal" if report["flops"] == torch_flops else "DIFFERENT"))
    for t in report["targets"]:
        rows.append((f"  {t['target']} on {t['uarch']}", f"{t['instructions']:,} instructions, "
                     f"{t['cycles']:,.0f} cycles, {t['seconds'] * 1e3:,.0f} ms", ""))

    for model, goal in (("minilm", 60), ("bert-base", 300)):
        if args.quick and model == "bert-base":
            continue
        wall, rss, text = run(ISASIM + ["check", model, "--format", "json"])
        chk = json.loads(text)
        executed = sum(t["instructions_executed"] for t in chk["targets"])
        torch_s = torch_forward_seconds(model, 128)
        errs = ", ".join(f"{t['target']} {t['max_abs_err']:.1e}" for t in chk["targets"])
        rows.append((f"check {model} (both targets)", f"{wall:.0f} s, {'pass' if chk['passed'] else 'FAIL'} "
                     f"({errs}), {rss:.0f} MB peak", f"<= {goal} s"))
        rows.append((f"  simulated instructions / s ({model})", f"{executed / wall:,.0f} "
                     f"({executed:,} in {wall:.0f} s)", ""))
        rows.append((f"  PyTorch eager forward ({model}, seq 128)", f"{torch_s * 1e3:.1f} ms", ""))

    width = max(len(r[0]) for r in rows)
    for name, value, goal in rows:
        print(f"{name:<{width}}  {value}" + (f"   [goal {goal}]" if goal else ""))


if __name__ == "__main__":
    main()
