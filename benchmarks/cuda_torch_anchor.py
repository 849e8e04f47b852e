"""PyTorch's own bert-base forward on the GPU this runs on: the anchor that benchmarks/cuda_run.py's kernels
and isasim's predictions are set against (prints figures; asserts nothing).

    python3 benchmarks/cuda_torch_anchor.py [--seq 128] [--batch 1 128]

bert-base (transformers' BertConfig defaults, seeded weights) in eager mode, in fp32 with TF32 off (CUDA-core
FP32, as isasim's simt target computes) and in fp16 (tensor cores, as TensorRT runs it): the median of 20
forwards between CUDA events after 5 warm-up ones. Needs PyTorch with CUDA and transformers; refuses in one
line where there is no GPU.
"""

from __future__ import annotations

import argparse
import statistics
import sys


def forward_ms(model, ids, repeat: int = 20) -> float:
    import torch

    with torch.no_grad():
        for _ in range(5):
            model(input_ids=ids)
        times = []
        for _ in range(repeat):
            start, stop = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            model(input_ids=ids)
            stop.record()
            stop.synchronize()
            times.append(start.elapsed_time(stop))
    return statistics.median(times)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seq", type=int, default=128)
    ap.add_argument("--batch", type=int, nargs="+", default=[1, 128])
    args = ap.parse_args()
    import torch
    from transformers import BertConfig, BertModel

    if not torch.cuda.is_available():
        print("cuda_torch_anchor: PyTorch sees no CUDA GPU: run this on a machine with an NVIDIA GPU",
              file=sys.stderr)
        return 2
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    torch.manual_seed(0)
    model = BertModel(BertConfig()).cuda().eval()
    print(f"{torch.cuda.get_device_name()}, PyTorch {torch.__version__}: bert-base seq {args.seq}, eager\n")
    print("| batch | fp32, TF32 off (ms) | fp16 (ms) |")
    print("|---|---|---|")
    for batch in args.batch:
        ids = torch.randint(0, 30522, (batch, args.seq), device="cuda")
        fp32 = forward_ms(model.float(), ids)
        fp16 = forward_ms(model.half(), ids)
        print(f"| {batch} | {fp32:.3f} | {fp16:.3f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
