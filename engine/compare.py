"""`compare`: what the model costs on every target and machine side by side, and where the cycles go by op
family; each row's peak and DRAM bandwidth come from the machine's data (isa/hardware.py `Machine`)."""

from __future__ import annotations

from dataclasses import dataclass

from isasim.engine.targets import Progress, every_pair
from isasim.engine.trace import LEVELS, TraceReport, trace
from isasim.isa.targets import TARGETS
from isasim.lowering.pipeline import LoweredGraph
from isasim.report import ModelReport

FAMILIES = (
    ("GEMM", ("linear", "addmm", "mm")),
    ("attention matmuls", ("matmul", "bmm")),
    ("softmax", ("softmax", "_softmax")),
    ("layer norm", ("layer_norm", "native_layer_norm")),
    ("GELU", ("gelu",)),
    ("embedding", ("embedding",)),
    ("data movement", ("clone", "contiguous", "_to_copy", "reshape", "view", "to")),
)
OTHER = "other elementwise"


def family(op: str) -> str:
    name = op.split(".")[1] if "." in op else op
    for fam, names in FAMILIES:
        if name in names:
            return fam
    return OTHER


def families() -> list[str]:
    return [f for f, _ in FAMILIES] + [OTHER]


@dataclass
class Row:
    target: str
    uarch: str
    instructions: int
    cycles: float
    seconds: float
    flop_per_cycle: float  # matrix-multiply FLOPs per cycle achieved
    peak_flop_per_cycle: float  # the machine's rate of the target's widest FMA (isa/hardware.py `Unit`)
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
class Comparison(ModelReport):
    flops: int
    rows: list[Row]

    def records(self) -> list[dict]:
        """One row per target and machine."""
        return [{"target": r.target, "uarch": r.uarch, "instructions": r.instructions, "cycles": r.cycles,
                 "seconds": r.seconds, "flop_per_cycle": r.flop_per_cycle,
                 "peak_flop_per_cycle": r.peak_flop_per_cycle, **{f"bytes_{lv}": r.bytes[lv] for lv in LEVELS},
                 "arithmetic_intensity": r.arithmetic_intensity,
                 "speedup_over_scalar_x86": r.speedup_over_scalar_x86, "dominant_bound": r.dominant_bound,
                 **{f"share_{f}": r.family_shares.get(f, 0.0) for f in families()}} for r in self.rows]


def compare(lowered: LoweredGraph, progress: Progress | None = None) -> Comparison:
    pairs = every_pair()
    reports: list[TraceReport] = [trace(lowered, [pair], progress) for pair in pairs]
    base = next(r.targets[0] for r in reports  # scalar x86-64 on its default core is the 1.00x row
                if r.targets[0].target == "x86-64" and r.targets[0].uarch == TARGETS["x86-64"].default_uarch)
    rows = []
    for (target, machine), rep in zip(pairs, reports):
        t = rep.targets[0]
        shares: dict[str, float] = {}
        fams: dict[str, dict[str, float]] = {}
        for op in t.ops:
            shares[family(op.op)] = shares.get(family(op.op), 0.0) + op.cycles / t.cycles
            f = fams.setdefault(family(op.op), {"cycles": 0.0, "fp_ops": 0, "dram_bytes": 0})
            f["cycles"] += op.cycles
            f["fp_ops"] += op.fp_ops
            f["dram_bytes"] += op.bytes["dram"]
        rows.append(Row(t.target, t.uarch, t.instructions, t.cycles, t.seconds, rep.flops / t.cycles,
                        machine.peak_ops_per_cycle(target.peak_unit()), t.bytes,
                        rep.flops / max(t.bytes["dram"], 1), base.seconds / t.seconds,
                        max(t.bounds.items(), key=lambda kv: kv[1])[0],
                        {f: round(v, 4) for f, v in sorted(shares.items(), key=lambda kv: -kv[1])},
                        fams, machine.bytes_per_cycle("dram")))
    first = reports[0]
    return Comparison(first.model, first.seq, first.batch, first.flops, rows)
