"""`compare`: what the model costs on every target and machine side by side, and where the cycles go by op
family; each row's peak and DRAM bandwidth come from the machine's data (isa/hardware.py `Machine`)."""

from __future__ import annotations

from dataclasses import dataclass

from isasim.backends import load_machine, machine_names
from isasim.engine.targets import Progress, every_pair
from isasim.engine.trace import LEVELS, TargetTrace, TraceReport, trace
from isasim.isa.dtype import DType
from isasim.isa.targets import ALL_TARGETS, TARGETS
from isasim.lowering.pipeline import LoweredGraph
from isasim.report import ModelReport

FAMILIES = (
    ("GEMM", ("linear", "addmm", "mm", "linear_int8", "linear_bf16", "linear_fp16")),
    ("quantize", ("minmax_rows", "quant_params", "quantize_u7", "round_bf16")),
    ("attention matmuls", ("matmul", "bmm")),
    ("softmax", ("softmax", "_softmax")),
    ("layer norm", ("layer_norm", "native_layer_norm")),
    ("GELU", ("gelu",)),
    ("embedding", ("embedding",)),
    ("data movement", ("clone", "contiguous", "_to_copy", "reshape", "view", "to")),
)
OTHER = "other elementwise"
# a row's peak: the FMA's, or the dot product's (the mma's) of the precision
PEAK_DTYPE = {"fp32": DType.F32, "int8": DType.I8, "bf16": DType.BF16, "fp16": DType.F16}


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
    speedup_over_scalar_x86: float  # (in bf16, which scalar x86-64 lacks: over float32 scalar x86-64)
    dominant_bound: str
    family_shares: dict[str, float]
    # per op family: cycles, floating-point operations (every lane of every fp instruction) and DRAM bytes,
    # for the roofline, whose ceilings are peak_flop_per_cycle and this one
    families: dict[str, dict[str, float]]
    dram_bytes_per_cycle: float
    # in int8 (a comparison made with the float32 graph too): the same target and core in float32 over this
    # row's time, float32 AVX-512 (on this core where it has AVX-512, else on Skylake-X) over it, and the
    # linear layers' share of the float32 cycles
    speedup_over_own_fp32: float | None = None
    speedup_over_fp32_avx512: float | None = None
    gemm_share_fp32: float | None = None


@dataclass
class Comparison(ModelReport):
    flops: int
    rows: list[Row]
    precision: str = "fp32"

    def records(self) -> list[dict]:
        """One row per target and machine."""
        return [{"target": r.target, "uarch": r.uarch, "instructions": r.instructions, "cycles": r.cycles,
                 "seconds": r.seconds, "flop_per_cycle": r.flop_per_cycle,
                 "peak_flop_per_cycle": r.peak_flop_per_cycle, **{f"bytes_{lv}": r.bytes[lv] for lv in LEVELS},
                 "arithmetic_intensity": r.arithmetic_intensity,
                 "speedup_over_scalar_x86": r.speedup_over_scalar_x86, "dominant_bound": r.dominant_bound,
                 **{f"share_{f}": r.family_shares.get(f, 0.0) for f in families()},
                 **({"speedup_over_own_fp32": r.speedup_over_own_fp32,
                     "speedup_over_fp32_avx512": r.speedup_over_fp32_avx512, "gemm_share_fp32": r.gemm_share_fp32}
                    if r.speedup_over_own_fp32 is not None else {})} for r in self.rows]


def compare(lowered: LoweredGraph, progress: Progress | None = None, precision: str = "fp32",
            fp32: LoweredGraph | None = None) -> Comparison:
    """Every target on every machine (in `precision`); with `fp32`, the float32 graph of the same model, each
    row is also set against float32 on the same core and against float32 AVX-512."""
    pairs = every_pair(precision)
    reports: list[TraceReport] = [trace(lowered, [pair], progress) for pair in pairs]
    base = _scalar_x86_seconds(reports, fp32, progress)
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
                        machine.peak_ops_per_cycle(target.peak_unit(PEAK_DTYPE[precision],
                                                                      getattr(machine, "features", ()))),
                        t.bytes,
                        rep.flops / max(t.bytes["dram"], 1), base / t.seconds,
                        max(t.bounds.items(), key=lambda kv: kv[1])[0],
                        {f: round(v, 4) for f, v in sorted(shares.items(), key=lambda kv: -kv[1])},
                        fams, machine.bytes_per_cycle("dram")))
    if fp32 is not None:
        _against_fp32(rows, fp32, progress)
    first = reports[0]
    return Comparison(first.model, first.seq, first.batch, first.flops, rows, precision)


def _scalar_x86_seconds(reports: list[TraceReport], fp32: LoweredGraph | None, progress: Progress | None) -> float:
    """The 1.00x row's time: scalar x86-64 on its default core, in this precision, or in float32 where the
    precision has no scalar lowering (bf16)."""
    x86 = TARGETS["x86-64"]
    for r in reports:
        if r.targets[0].target == x86.name and r.targets[0].uarch == x86.default_uarch:
            return r.targets[0].seconds
    if fp32 is None:
        raise ValueError("no scalar x86-64 row, and no float32 graph to time one from")
    return trace(fp32, [(x86, load_machine(x86.default_uarch))], progress).targets[0].seconds


def _against_fp32(rows: list[Row], fp32: LoweredGraph, progress: Progress | None) -> None:
    avx512 = TARGETS["avx512"]
    with_avx512 = set(machine_names(avx512))
    timed: dict[tuple[str, str], TargetTrace] = {}

    def float32(target: str, uarch: str) -> TargetTrace:
        if (target, uarch) not in timed:
            timed[(target, uarch)] = trace(fp32, [(ALL_TARGETS[target], load_machine(uarch))], progress).targets[0]
        return timed[(target, uarch)]

    for r in rows:
        own = float32(r.target if ALL_TARGETS[r.target].fp32 else "avx512", r.uarch)  # amx's float32 is AVX-512
        ref = float32("avx512", r.uarch if r.uarch in with_avx512 else avx512.default_uarch)
        r.speedup_over_own_fp32 = own.seconds / r.seconds
        r.speedup_over_fp32_avx512 = ref.seconds / r.seconds
        r.gemm_share_fp32 = round(sum(op.cycles for op in own.ops if family(op.op) == "GEMM") / own.cycles, 4)
