"""Write docs/api.md: isasim as a Python library, every example run by this script and shown with its output.

    .venv/bin/python docs/make_api.py

tests/test_api.py runs every example of docs/api.md again and checks it still prints what the page shows.
"""

from __future__ import annotations

import contextlib
import io
from pathlib import Path

HERE = Path(__file__).parent

INTRO = """# isasim as a library

Everything the `isasim` command computes is a function of the `isasim` package that returns a report object:
`trace`, `check`, `compare`, `explain`, `emit`, `training_step`, `host` and `sweep` (in `isasim/api.py`). A report is a
dataclass: read its fields, turn it into what `--format json` prints with `.to_dict()`, or into a table
with `.to_pandas()` (with pandas installed: `pip install 'isasim[pandas]'`). The command line (`cli/`) only
parses arguments and renders these objects.

Arguments: a model (`bert-base`, `bert-large`, `minilm`, or a folder with `config.json`), then `seq`,
`batch` and `seed`; all but `compare` (which covers every target on every machine) also take `targets`
(names from `isasim targets`; None for every target) and `machines` (a CPU core or GPU for the targets of
its instruction set; default each target's own). Long work reports through
`progress=lambda what, done, total: ...`. Bad input raises `isasim.UserError`, whose message is one line that
says what to do; it names an argument by its command-line flag (`--batch` for `batch=`).

Every example below was run by `docs/make_api.py`; the block under it is what it printed.
"""

EXAMPLES: list[tuple[str, str, str]] = [
    ("Cost a forward pass: `isasim.trace`",
     "Instructions, cycles, the deciding bound and bytes per memory level, per op and per target. Each target's "
     "`bounds` adds up the cycles each kind of bound decided.",
     """import isasim

report = isasim.trace("minilm", targets=["avx512", "simt"], seq=8)
for t in report.targets:
    print(f"{t.target:7} {t.uarch:10} {t.instructions:>11,} instructions {t.cycles:>10,.0f} cycles "
          f"{t.seconds * 1e6:6.1f} us, mostly {max(t.bounds, key=t.bounds.get)}-bound")"""),
    ("One op, and its bound",
     "A bound is a typed value (`isasim.isa.hardware.Bound`): its kind, where it applies (a port group, a GPU "
     "pipe; nowhere in particular for the out-of-order window, which decides softmax and GELU here) and the "
     "cycles it alone would take. JSON shows its label.",
     """avx512 = report.targets[0]
i, op = next((i, op) for i, op in enumerate(avx512.ops) if op.bound.kind == "window")
print(op.name, op.op, op.shape, op.module)
print(repr(op.bound))
print(report.to_dict()["targets"][0]["ops"][i]["bound"])"""),
    ("As a table",
     "One row per op and target.",
     """df = report.to_pandas()
print(df.shape)
print(df.groupby("target")["cycles"].sum().round().to_dict())
print(df[df.target == "simt"].nlargest(3, "cycles")[["name", "op", "bound"]].to_string(index=False))"""),
    ("Every target on every machine: `isasim.compare`",
     "Time, FLOP/cycle against the machine's peak (from its description), bytes per level, the speed-up over "
     "scalar x86-64, and each op family's share of the cycles.",
     """c = isasim.compare("minilm", seq=8)
for r in c.rows[:2] + c.rows[-2:]:
    print(f"{r.target:7} {r.uarch:15} {r.seconds * 1e6:8.1f} us {r.flop_per_cycle / r.peak_flop_per_cycle:6.1%} "
          f"of peak, x{r.speedup_over_scalar_x86:.1f}, {r.dominant_bound}")"""),
    ("Why one kernel costs what it costs: `isasim.explain`",
     "On a CPU core: the hottest loop, each instruction's costs and sources, the deciding bound and advice. "
     "On a GPU: the launch, occupancy and its limiter, the bounds.",
     """scalar, gpu = isasim.explain("minilm", "layer_norm", targets=["x86-64", "simt"], seq=8)
print(scalar.kernel, scalar.bound["decides"], len(scalar.listing), "instructions per iteration")
print(scalar.advice)
print(gpu.kernel, gpu.strategy, "|", gpu.decides, "|", gpu.occupancy["limiter"])"""),
    ("Run it and compare with PyTorch: `isasim.check`",
     "Every lowered kernel executed on the model's real weights; `passed` needs the final output within the "
     "tolerance and the executor's counts equal to the cost model's.",
     """result = isasim.check("minilm", targets="neon", seq=8)
t = result.targets[0]
print(result.passed, t.target, t.uarch, t.max_abs_err < 1e-5, t.counts_match_cost_model,
      f"{t.instructions_executed:,} instructions executed")"""),
    ("A fine-tuning step: `isasim.training_step`",
     "Forward, backward and AdamW of a 2-label classifier, and the whole fine-tuning run on the shipped "
     "movie/TV dataset.",
     """step = isasim.training_step("minilm", targets="avx2", seq=8, batch=2, epochs=1)
t = step.targets[0]
print(step.steps_per_epoch, "steps;", {p: round(c) for p, c in t.cycles.items()}, f"{t.run_s:.1f} s in all")"""),
    ("With LoRA: `isasim.training_step(..., lora=8)`",
     "The step of rank-8 adapters on query and value (peft), each target's full step beside it.",
     """step = isasim.training_step("minilm", targets="avx2", seq=8, batch=2, epochs=1, lora=8)
t = step.targets[0]
print(f"{step.trained_params:,} of {step.trained_params + step.frozen_params:,} parameters trained;",
      f"step {t.step_ms:.1f} ms, full step {t.full_step_ms:.1f} ms")"""),
    ("Real assembly and PTX: `isasim.emit`",
     "Each kernel as a file its toolchain accepts, and a manifest with its calling convention and costs.",
     """import tempfile

emitted = isasim.emit("minilm", tempfile.mkdtemp(), targets=["neon", "simt"], seq=8, op="gelu")
for t in emitted.targets:
    kernel = t.manifest["kernels"][0]
    print(t.target, t.uarch, kernel["file"], t.manifest.get("abi") or t.manifest["ptx_target"], kernel["cycles"])"""),
    ("A grid of configurations: `isasim.sweep`",
     "One row per model x seq x batch x precision x target, with the totals `trace` gives it. The points run as "
     "tasks of a Dask cluster (a LocalCluster of this machine's cores, or `scheduler=\"tcp://host:8786\"`); "
     "`serial=True` runs them here, one after another. With `output=\"sweep.csv\"` rows are appended as they "
     "finish and a rerun skips the points already there. In a script, call it under `if __name__ == \"__main__\":`, "
     "since each worker process of a local cluster starts by importing the script (Python's spawn).",
     """grid = isasim.sweep("minilm", seqs=[8, 32], batches=1, targets=["avx2", "simt", "amx"], serial=True)
print(grid[["seq", "target", "uarch", "seconds", "bound", "share_gemm"]].round(6).to_string(index=False))
print(grid.attrs["notes"])"""),
    ("Many cores: `isasim.scale` and `cores=`",
     "Each kernel's parallel loops split across the cores of one CPU socket (a number, or \"all\": the socket's "
     "count from the core's uarch file). `trace(..., cores=N)` and `check(..., cores=N)` take the same "
     "argument; `check` holds every split kernel to the whole kernel's bits on one core.",
     """s = isasim.scale("minilm", "avx512", "zen4", cores=[1, 2, 8, "all"], seq=32)
print(s.socket["part"], s.socket["cores"], s.socket["dram_gb_s"])
for p in s.points:
    print(p.cores, f"{p.seconds * 1e6:.1f} us", f"{p.speedup:.2f}x", f"{p.efficiency:.0%}", p.bound, p.slowest_family)"""),
    ("Many GPUs: `isasim.scale(..., gpus=)` and `training_step(..., gpus=)`",
     "A fine-tuning step's batch split across the GPUs of one server (data parallel), its gradients all-reduced "
     "over `link` (\"nvlink\" or \"pcie\") while backward runs.",
     """g = isasim.scale("minilm", "simt", gpus=[1, 2, 4, 8], batch=8, seq=16)
print(g.link["name"], g.link["busbw_gb_s"])
for p in g.points:
    print(p.gpus, p.per_gpu_batch, f"{p.seconds * 1e3:.2f} ms", f"{p.speedup:.2f}x", f"{p.waits_ms:.3f} ms", p.bound)"""),
    ("Tensor parallel fine-tuning, and fine-tuning on many cores",
     "`parallel=\"tensor\"` splits every layer of the step across the GPUs as Megatron-LM does, with four "
     "all-reduces a layer that the step waits for (`step.targets[i].multi_gpu`); `cores=N` splits a CPU "
     "target's step across N cores.",
     """tp = isasim.training_step("minilm", targets="simt", seq=16, batch=8, epochs=1, gpus=2, parallel="tensor")
t = tp.targets[0]
print(t.multi_gpu.parallel, t.multi_gpu.allreduces, f"{t.multi_gpu.allreduce_ms:.3f} ms", f"{t.step_ms:.2f} ms")
cpu = isasim.training_step("minilm", targets="avx2", seq=16, batch=8, epochs=1, cores=8)
print(cpu.targets[0].cores, f"{cpu.targets[0].step_ms:.2f} ms")"""),
    ("Bad input",
     "One line that says what is wrong and what to do.",
     """for bad in (lambda: isasim.trace("gpt-17"), lambda: isasim.trace("minilm", targets="riscv"),
            lambda: isasim.trace("minilm", batch=0)):
    try:
        bad()
    except isasim.UserError as e:
        print(e)"""),
]


def run(examples: list[tuple[str, str, str]]) -> list[str]:
    """Each example's printed output, all run in one namespace (later examples use earlier results)."""
    namespace: dict = {}
    outputs = []
    for _, _, code in examples:
        buf = io.StringIO()
        with contextlib.redirect_stdout(buf):
            exec(compile(code, "<docs/api.md>", "exec"), namespace)
        outputs.append(buf.getvalue().rstrip())
    return outputs


def main() -> None:
    parts = [INTRO]
    for (title, text, code), output in zip(EXAMPLES, run(EXAMPLES)):
        parts.append(f"## {title}\n\n{text}\n\n```python\n{code}\n```\n\n```text\n{output}\n```\n")
    (HERE / "api.md").write_text("\n".join(parts))
    print(f"wrote {HERE / 'api.md'}")


if __name__ == "__main__":
    main()
