"""`isasim compare`: what the model costs on every target and microarchitecture, side by side, and where the
cycles go by op family."""

from __future__ import annotations

import csv
import io
import json
from dataclasses import asdict, dataclass

from rich.console import Console
from rich.table import Table

from isasim.cli.reports import TraceReport, pick_targets, trace
from isasim.isa.targets import ALL_TARGETS, TARGETS
from isasim.lowering.backends import is_simt, load_machine, machine_names
from isasim.lowering.pipeline import LoweredGraph

FAMILIES = (
    ("GEMM", ("linear", "addmm", "mm")),
    ("attention matmuls", ("matmul", "bmm")),
    ("softmax", ("softmax", "_softmax")),
    ("layer norm", ("layer_norm", "native_layer_norm")),
    ("GELU", ("gelu",)),
    ("embedding", ("embedding",)),
    ("data movement", ("clone", "contiguous", "_to_copy", "reshape", "view", "to")),
)


def family(op: str) -> str:
    name = op.split(".")[1] if "." in op else op
    for fam, names in FAMILIES:
        if name in names:
            return fam
    return "other elementwise"


@dataclass
class Row:
    target: str
    uarch: str
    instructions: int
    cycles: float
    seconds: float
    flop_per_cycle: float  # matrix-multiply FLOPs per cycle achieved
    peak_flop_per_cycle: float  # the core's FMA throughput for this target's FMA instruction, x 2
    bytes: dict[str, int]
    arithmetic_intensity: float  # FLOPs per DRAM byte
    speedup_over_scalar_x86: float
    dominant_bound: str
    family_shares: dict[str, float]
    # per op family: cycles, floating-point operations (every lane of every fp instruction) and DRAM bytes,
    # for the roofline, whose ceilings are peak_flop_per_cycle and this one
    families: dict[str, dict[str, float]]
    dram_bytes_per_cycle: float


@dataclass
class Comparison:
    model: str
    seq: int
    batch: int
    flops: int
    rows: list[Row]

    def to_json(self) -> dict:
        return asdict(self)


def compare(lowered: LoweredGraph, progress=None) -> Comparison:
    every = ALL_TARGETS
    pairs = [(t.name, u) for t in every.values() for u in machine_names(t)]
    reports: list[TraceReport] = [trace(lowered, pick_targets([t], [u]), progress) for t, u in pairs]
    base = next(r.targets[0] for r in reports  # scalar x86-64 on its default core is the 1.00x row
                if r.targets[0].target == "x86-64" and r.targets[0].uarch == TARGETS["x86-64"].default_uarch)
    rows = []
    for rep in reports:
        t = rep.targets[0]
        target, uarch = every[t.target], load_machine(t.uarch)
        shares: dict[str, float] = {}
        fams: dict[str, dict[str, float]] = {}
        for op in t.ops:
            shares[family(op.op)] = shares.get(family(op.op), 0.0) + op.cycles / t.cycles
            f = fams.setdefault(family(op.op), {"cycles": 0.0, "fp_ops": 0, "dram_bytes": 0})
            f["cycles"] += op.cycles
            f["fp_ops"] += op.fp_ops
            f["dram_bytes"] += op.bytes["dram"]
        rows.append(Row(t.target, t.uarch, t.instructions, t.cycles, t.seconds, rep.flops / t.cycles,
                        peak_flop_per_cycle(target, uarch), t.bytes, rep.flops / max(t.bytes["dram"], 1),
                        base.seconds / t.seconds, max(t.bounds.items(), key=lambda kv: kv[1])[0],
                        {f: round(v, 4) for f, v in sorted(shares.items(), key=lambda kv: -kv[1])},
                        fams, dram_bytes_per_cycle(target, uarch)))
    first = reports[0]
    return Comparison(first.model, first.seq, first.batch, first.flops, rows)


def peak_flop_per_cycle(target, machine) -> float:
    """FMA throughput x 2: one core's widest FMA, or every SM's FP32 lanes on a GPU (per SM clock)."""
    if is_simt(target):
        return 2 * machine.fp32_lanes() * machine.sms
    return 2 * target.vector_lanes / machine.timing(target.fma).rthroughput


def dram_bytes_per_cycle(target, machine) -> float:
    return machine.dram_bytes_per_cycle if is_simt(target) else machine.level("dram").bytes_per_cycle


def _human(n: float) -> str:
    for unit, size in (("T", 1e12), ("G", 1e9), ("M", 1e6), ("K", 1e3)):
        if abs(n) >= size:
            return f"{n / size:.2f}{unit}"
    return f"{n:.2f}"


HEAD = ("target", "uarch", "instructions", "cycles", "time", "FLOP/cycle", "of peak", "L1 B", "L2 B", "LLC B",
        "DRAM B", "FLOP/DRAM B", "speed-up vs x86-64", "bound")


def _cells(r: Row) -> list[str]:
    return [r.target, r.uarch, _human(r.instructions), _human(r.cycles), f"{r.seconds * 1e3:.1f} ms",
            f"{r.flop_per_cycle:.3f}", f"{r.flop_per_cycle / r.peak_flop_per_cycle:.1%}",
            *(_human(r.bytes[lv]) for lv in ("l1", "l2", "llc", "dram")), f"{r.arithmetic_intensity:.1f}",
            f"{r.speedup_over_scalar_x86:.2f}x", r.dominant_bound]


def families(c: Comparison) -> list[str]:
    return [f for f, _ in FAMILIES] + ["other elementwise"]


def render_table(c: Comparison, console: Console) -> None:
    table = Table(title=f"{c.model} seq {c.seq} batch {c.batch}: {c.flops:,} matmul FLOPs", title_justify="left")
    for h in HEAD:
        table.add_column(h, justify="left" if h in ("target", "uarch", "bound") else "right")
    for r in c.rows:
        table.add_row(*_cells(r))
    console.print(table)
    shares = Table(title="share of cycles by op family", title_justify="left")
    shares.add_column("target / uarch")
    for f in families(c):
        shares.add_column(f, justify="right")
    for r in c.rows:
        shares.add_row(f"{r.target} / {r.uarch}", *(f"{r.family_shares.get(f, 0.0):.1%}" for f in families(c)))
    console.print(shares)


def render_markdown(c: Comparison) -> str:
    lines = ["| " + " | ".join(HEAD) + " |", "|" + "---|" * len(HEAD)]
    lines += ["| " + " | ".join(_cells(r)) + " |" for r in c.rows]
    fams = families(c)
    lines += ["", "| target / uarch | " + " | ".join(fams) + " |", "|" + "---|" * (len(fams) + 1)]
    lines += [f"| {r.target} / {r.uarch} | " + " | ".join(f"{r.family_shares.get(f, 0.0):.1%}" for f in fams)
              + " |" for r in c.rows]
    return "\n".join(lines) + "\n"


def render_csv(c: Comparison) -> str:
    buf = io.StringIO()
    w = csv.writer(buf)
    fams = families(c)
    w.writerow(["target", "uarch", "instructions", "cycles", "seconds", "flop_per_cycle", "peak_flop_per_cycle",
                "bytes_l1", "bytes_l2", "bytes_llc", "bytes_dram", "flop_per_dram_byte", "speedup_over_scalar_x86",
                "dominant_bound", *(f"share_{f.replace(' ', '_')}" for f in fams)])
    for r in c.rows:
        w.writerow([r.target, r.uarch, r.instructions, f"{r.cycles:.1f}", r.seconds, r.flop_per_cycle,
                    r.peak_flop_per_cycle, *(r.bytes[lv] for lv in ("l1", "l2", "llc", "dram")),
                    r.arithmetic_intensity, r.speedup_over_scalar_x86, r.dominant_bound,
                    *(r.family_shares.get(f, 0.0) for f in fams)])
    return buf.getvalue()


def render_json(c: Comparison) -> str:
    return json.dumps(c.to_json(), indent=2) + "\n"
