"""Data-parallel fine-tuning across the 8 GPUs of a DGX A100, predicted against NVIDIA's published scaling.

NVIDIA DeepLearningExamples (PyTorch/LanguageModeling/BERT/README.md, DGX A100 80GB, container 21.11) reports
BERT-Large fine-tuning on SQuAD v1.1 at seq 384, 32 sentences per GPU, with an all-reduce every step:

    TF32:  61.5 sequences/s on 1 GPU, 469.8 on 8 (7.63x)
    FP16: 110.5 sequences/s on 1 GPU, 846.7 on 8 (7.66x)

isasim costs the same step (BERT-Large, seq 384, 32 sentences per GPU) on its float32 A100 model (CUDA cores,
not TF32 or FP16 tensor cores, so its absolute rate is lower) on 1 GPU and on 8 over NVLink, and prints both
weak-scaling factors. The step's classifier is the 2-label head of `isasim finetune`, not SQuAD's span head;
the encoder, which is nearly all of the work and all of the gradient, is the same.

    .venv/bin/python benchmarks/gpus_anchor.py [--seq 384] [--per-gpu 32] [--link nvlink]
"""

from __future__ import annotations

import argparse

from isasim import api

NVIDIA = {"TF32": (61.5, 469.8), "FP16": (110.5, 846.7)}  # sequences/s on 1 and 8 GPUs


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seq", type=int, default=384)
    ap.add_argument("--per-gpu", type=int, default=32)
    ap.add_argument("--link", default="nvlink")
    args = ap.parse_args()
    rates = {}
    for gpus in (1, 8):
        r = api.training_step("bert-large", "simt", "a100", seq=args.seq, batch=args.per_gpu * gpus, gpus=gpus,
                              link=args.link, epochs=1)
        t = r.targets[0]
        rates[gpus] = r.batch / (t.step_ms / 1e3)
        dp = t.multi_gpu
        extra = (f"; all-reduce of {dp.allreduce_bytes / 1e9:.2f} GB: {dp.allreduce_ms:.1f} ms, "
                 f"{dp.exposed_ms:.2f} ms of it after backward") if dp else ""
        print(f"{gpus} GPU{'s' if gpus > 1 else ''}: step {t.step_ms:,.1f} ms for {r.batch} sentences, "
              f"{rates[gpus]:.1f} sequences/s{extra}")
    predicted = rates[8] / rates[1]
    print(f"isasim (float32, {args.link}): 8 GPUs {predicted:.2f}x one ({predicted / 8:.1%} efficiency)")
    for precision, (one, eight) in NVIDIA.items():
        print(f"NVIDIA {precision}: {one} -> {eight} sequences/s, {eight / one:.2f}x ({eight / one / 8:.1%}); "
              f"isasim's factor is {predicted / (eight / one):.3f} of it")


if __name__ == "__main__":
    main()
