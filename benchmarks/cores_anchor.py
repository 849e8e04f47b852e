"""Many cores, predicted against measured: PyTorch's own forward pass with torch.set_num_threads(1) and then
with each larger thread count up to this machine's cores, timed here (warm, best of --repeat), next to what
`isasim scale` predicts for the same model on the host's core (engine/cores.py). The figure the issue holds it
to: the predicted 1-to-N speed-up within 15% of the measured one.

    .venv/bin/python benchmarks/cores_anchor.py [--model minilm] [--seq 128] [--target avx512] [--repeat 4]

The host's core is identified as `isasim host` identifies it (isa/hostcpu.py); the target defaults to the widest
vector target the host runs. The predicted speed-up is a ratio of cycles, so no clock enters it.
"""

from __future__ import annotations

import argparse
import os
import time

import torch

from isasim import api
from isasim.isa import hostcpu
from isasim.models import registry


def forward_seconds(model, ids, counts: list[int], repeat: int, rounds: int = 5) -> dict[int, float]:
    """The best forward time per thread count, the counts taking turns round after round (a shared machine's
    other tenants then slow every count alike, not the one that happens to run while they are busy)."""
    best = {n: float("inf") for n in counts}
    with torch.inference_mode():
        for _ in range(rounds):
            for n in counts:
                torch.set_num_threads(n)
                model(input_ids=ids)  # warm at this thread count
                for _ in range(repeat):
                    start = time.perf_counter()
                    model(input_ids=ids)
                    best[n] = min(best[n], time.perf_counter() - start)
    return best


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", default="minilm")
    ap.add_argument("--seq", type=int, default=128)
    ap.add_argument("--target")
    ap.add_argument("--repeat", type=int, default=4, help="timed runs per thread count per round (5 rounds)")
    args = ap.parse_args()
    cpu = hostcpu.this_host()
    target = args.target or ("avx512" if "avx512f" in cpu.flags else "avx2")
    cores = len(os.sched_getaffinity(0))
    counts = list(range(1, cores + 1))
    print(f"host: {cpu.name}, {cpu.core} -> uarch {cpu.uarch}; {cores} usable cores; torch {torch.__version__}")
    from transformers import BertModel

    spec = registry.resolve(args.model)
    model = (BertModel.from_pretrained(spec.weights) if spec.weights else BertModel(spec.config)).eval()
    ids = torch.randint(0, spec.config.vocab_size, (1, args.seq), generator=torch.Generator().manual_seed(0))
    measured = forward_seconds(model, ids, counts, args.repeat)
    report = api.scale(args.model, target, cpu.uarch, cores=counts, seq=args.seq)
    print(f"{args.model} seq {args.seq}: PyTorch measured against isasim {target} on {cpu.uarch}, "
          f"{report.socket['part']}'s socket data")
    print(f"{'cores':>5} {'PyTorch ms':>11} {'speed-up':>9} {'isasim ms':>10} {'speed-up':>9} {'ratio':>6}  bound")
    for p in report.points:
        m = measured[1] / measured[p.cores]
        verdict = "" if p.cores == 1 else f"  ({'within' if abs(p.speedup / m - 1) <= 0.15 else 'OUTSIDE'} 15%)"
        print(f"{p.cores:5d} {measured[p.cores] * 1e3:11.2f} {m:9.2f} {p.seconds * 1e3:10.2f} {p.speedup:9.2f} "
              f"{p.speedup / m:6.2f}  {p.bound}{verdict}")
    print("isasim's time is at the uarch file's clock; only the speed-ups are compared")


if __name__ == "__main__":
    main()
