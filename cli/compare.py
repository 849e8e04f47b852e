"""`isasim compare`, rendered: the comparison (engine/compare.py) as a table, markdown, CSV or JSON."""

from __future__ import annotations

import csv
import io
import json

from rich import box
from rich.console import Console
from rich.table import Table

from isasim.cli.render import human
from isasim.engine.compare import Comparison, Row, families


def _human(n: float) -> str:
    return human(n, 2)


HEAD = ("target", "uarch", "instructions", "cycles", "time", "FLOP/cycle", "of peak", "L1 B", "L2 B", "LLC B",
        "DRAM B", "FLOP/DRAM B", "speed-up vs x86-64", "bound")
SHORT = {"attention matmuls": "attn matmul", "other elementwise": "other", "data movement": "data move",
         "embedding": "embed"}  # family names in the narrow table
NARROW = ("target", "uarch", "time", "of peak", "DRAM B", "FLOP/DRAM B", "speed-up vs x86-64", "bound")


def _cells(r: Row) -> list[str]:
    return [r.target, r.uarch, _human(r.instructions), _human(r.cycles), f"{r.seconds * 1e3:.1f} ms",
            f"{r.flop_per_cycle:.3f}", f"{r.flop_per_cycle / r.peak_flop_per_cycle:.1%}",
            *(_human(r.bytes[lv]) for lv in ("l1", "l2", "llc", "dram")), f"{r.arithmetic_intensity:.1f}",
            f"{r.speedup_over_scalar_x86:.2f}x", r.dominant_bound]


def render_table(c: Comparison, console: Console, wide: bool = False) -> None:
    """Every target and machine, then the cycles by op family; the narrow layout fits 100 columns, `wide` adds
    instructions, cycles, FLOP/cycle and the bytes at every level."""
    style = dict(box=box.HEAVY_HEAD if wide else box.SIMPLE_HEAD, collapse_padding=not wide)
    table = Table(title=f"{c.model} seq {c.seq} batch {c.batch}: {c.flops:,} matmul FLOPs", title_justify="left",
                  **style)
    shown = [i for i, h in enumerate(HEAD) if wide or h in NARROW]
    for i in shown:
        table.add_column(HEAD[i], justify="left" if HEAD[i] in ("target", "uarch", "bound") else "right",
                         overflow="fold")
    for r in c.rows:
        cells = _cells(r)
        table.add_row(*(cells[i] for i in shown))
    console.print(table)
    shares = Table(title="share of cycles by op family", title_justify="left", **style)
    shares.add_column("target", no_wrap=True)
    shares.add_column("uarch", no_wrap=True)
    for f in families():  # a header wraps between its words, never inside one
        label = f if wide else SHORT.get(f, f)
        shares.add_column(label, justify="right", min_width=max(map(len, label.split())))
    for r in c.rows:
        shares.add_row(r.target, r.uarch, *(f"{r.family_shares.get(f, 0.0):.1%}" for f in families()))
    console.print(shares)
    if c.precision != "fp32":
        vs = Table(title=f"{c.precision} against float32", title_justify="left", **style)
        for col in FP32_HEAD:
            vs.add_column(col, justify="left" if col in ("target", "uarch", "bound") else "right", overflow="fold",
                          no_wrap=col in ("target", "uarch"))
        for r in c.rows:
            vs.add_row(*_fp32_cells(r))
        console.print(vs)
        console.print("vs own fp32: the same target and core in float32 (amx: avx512); vs fp32 avx512: float32 "
                      "AVX-512 on this core, or on skylake-x where the core has none; linear layers: their share of "
                      f"the cycles, float32 -> {c.precision}; quantize: "
                      + {"int8": "the activations' min/max and rounding to bytes",
                         "bf16": "the activations' rounding to bf16",
                         "fp16": "none (the tensor-core GEMM rounds its float32 input as it loads it)"}[c.precision],
                      style="dim")


FP32_HEAD = ("target", "uarch", "time", "vs own fp32", "vs fp32 avx512", "linear layers", "quantize", "bound")


def _fp32_cells(r: Row) -> list[str]:
    return [r.target, r.uarch, f"{r.seconds * 1e3:.1f} ms", f"{r.speedup_over_own_fp32:.2f}x",
            f"{r.speedup_over_fp32_avx512:.2f}x", f"{r.gemm_share_fp32:.0%} -> {r.family_shares.get('GEMM', 0):.0%}",
            f"{r.family_shares.get('quantize', 0):.1%}", r.dominant_bound]


def render_markdown(c: Comparison) -> str:
    lines = ["| " + " | ".join(HEAD) + " |", "|" + "---|" * len(HEAD)]
    lines += ["| " + " | ".join(_cells(r)) + " |" for r in c.rows]
    fams = families()
    lines += ["", "| target / uarch | " + " | ".join(fams) + " |", "|" + "---|" * (len(fams) + 1)]
    lines += [f"| {r.target} / {r.uarch} | " + " | ".join(f"{r.family_shares.get(f, 0.0):.1%}" for f in fams)
              + " |" for r in c.rows]
    if c.precision != "fp32":
        lines += ["", "| " + " | ".join(FP32_HEAD) + " |", "|" + "---|" * len(FP32_HEAD)]
        lines += ["| " + " | ".join(_fp32_cells(r)) + " |" for r in c.rows]
    return "\n".join(lines) + "\n"


def render_csv(c: Comparison) -> str:
    buf = io.StringIO()
    w = csv.writer(buf)
    fams = families()
    w.writerow(["target", "uarch", "instructions", "cycles", "seconds", "flop_per_cycle", "peak_flop_per_cycle",
                "bytes_l1", "bytes_l2", "bytes_llc", "bytes_dram", "flop_per_dram_byte", "speedup_over_scalar_x86",
                "dominant_bound", *(f"share_{f.replace(' ', '_')}" for f in fams),
                *(("speedup_over_own_fp32", "speedup_over_fp32_avx512", "gemm_share_fp32")
                  if c.precision != "fp32" else ())])
    for r in c.rows:
        w.writerow([r.target, r.uarch, r.instructions, f"{r.cycles:.1f}", r.seconds, r.flop_per_cycle,
                    r.peak_flop_per_cycle, *(r.bytes[lv] for lv in ("l1", "l2", "llc", "dram")),
                    r.arithmetic_intensity, r.speedup_over_scalar_x86, r.dominant_bound,
                    *(r.family_shares.get(f, 0.0) for f in fams),
                    *((r.speedup_over_own_fp32, r.speedup_over_fp32_avx512, r.gemm_share_fp32)
                      if c.precision != "fp32" else ())])
    return buf.getvalue()


def render_json(c: Comparison) -> str:
    return json.dumps(c.to_dict(), indent=2) + "\n"
