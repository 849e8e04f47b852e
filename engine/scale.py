"""`scale`: the forward pass, or a fine-tuning step, on 1, 2, 4, ... cores of one socket or two (engine/cores.py),
or on 1, 2, 4, 8 GPUs of one server (data or tensor parallel, engine/training.py), and where scaling stops.

Each point is a trace of the whole model on that many cores. Against the first point it gives the speed-up and
the parallel efficiency (speed-up / cores), the bound that decided most of the cycles, and the op family that
scales worst there (its own speed-up over its cycles on the first point) with the bound that holds it back:
elementwise ops saturate the socket's DRAM first, short attention loops run out of heads to share, and every
small kernel pays its fork and join.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

from isasim.backends import load_machine
from isasim.engine.compare import family
from isasim.engine.cores import cores_for
from isasim.engine.targets import Progress
from isasim.engine.trace import TargetTrace, trace
from isasim.isa.errors import UserError
from isasim.isa.hardware import Machine
from isasim.isa.targets import Target
from isasim.lowering.pipeline import LoweredGraph
from isasim.report import ModelReport


@dataclass
class Point:
    cores: int
    seconds: float
    speedup: float  # over the first point, scaled to one core's where the first point is not 1 core
    efficiency: float  # speedup / cores
    bound: str  # the kind of bound that decided most of the cycles
    bounds: dict[str, float]  # each kind's share of the cycles
    # the op family with the lowest speed-up over the first point, its speed-up, and the kind of bound that
    # decides most of its cycles (None on the first point)
    slowest_family: str | None
    slowest_family_speedup: float | None
    slowest_family_bound: str | None


@dataclass
class GpuPoint:
    gpus: int
    seconds: float  # a fine-tuning step of the whole batch (tensor parallel without --training: a forward pass)
    speedup: float
    efficiency: float
    # data: what most of the step is ("compute": forward and backward, "optimizer" or "all-reduce"); tensor:
    # the kind of bound that decided the most cycles ("link": the all-reduces)
    bound: str
    per_gpu_batch: int  # (tensor: every GPU sees the whole batch)
    allreduce_ms: float
    waits_ms: float  # the all-reduce time the work waits for (tensor: all of it)
    optimizer_ms: float  # AdamW (data: whole on every GPU; tensor: each GPU's share; a forward pass: none)


@dataclass
class ScaleReport(ModelReport):
    target: str
    uarch: str
    clock_ghz: float
    socket: dict | None  # cores: the socket's part, cores, LLC domain, DRAM bandwidth, fork/join, with sources
    points: list = field(default_factory=list)  # Point per core count, or GpuPoint per GPU count
    link: dict | None = None  # gpus: the link the all-reduce crosses, its bus bandwidth and latency, sourced
    parallel: str | None = None  # gpus: "data" (the batch split) or "tensor" (every layer split)
    training: bool = False  # each point a fine-tuning step (forward, backward, AdamW), not the forward pass

    def records(self) -> list[dict]:
        if self.link:
            return [{"gpus": p.gpus, "seconds": p.seconds, "speedup": p.speedup, "efficiency": p.efficiency,
                     "bound": p.bound, "waits_ms": p.waits_ms} for p in self.points]
        return [{"cores": p.cores, "seconds": p.seconds, "speedup": p.speedup, "efficiency": p.efficiency,
                 "bound": p.bound, "slowest_family": p.slowest_family} for p in self.points]


def _families(t: TargetTrace) -> dict[str, tuple[float, Counter]]:
    """Per op family: its cycles and the cycles each kind of bound decided (a fine-tuning step's AdamW update,
    tagged "optimizer.<parameter>" by models/training.py, is a family of its own)."""
    out: dict[str, tuple[float, Counter]] = {}
    for r in t.ops:
        name = "AdamW" if r.module.startswith("optimizer") else family(r.op)
        cycles, kinds = out.get(name, (0.0, Counter()))
        kinds[r.bound.kind] += r.cycles
        out[name] = (cycles + r.cycles, kinds)
    return out


def scale(lowered: LoweredGraph, target: Target, machine: Machine, points: list[int | str],
          progress: Progress | None = None, training: bool = False) -> ScaleReport:
    """`lowered` (a forward pass, or a fine-tuning step with `training`) on each count of `points` cores."""
    counts = sorted({cores_for(machine, c) for c in points})
    if not counts:
        raise UserError("--cores lists no core counts: give some, e.g. --cores 1,2,4,8")
    traces = []
    for i, n in enumerate(counts):
        traces.append(trace(lowered, [(target, machine)], None, n).targets[0])
        if progress:
            progress(f"costing {target.name} on 1..{counts[-1]} cores", i + 1, len(counts))
    first, base_families = traces[0], _families(traces[0])
    out = []
    for n, t in zip(counts, traces):
        speedup = first.cycles / t.cycles * counts[0]
        fams = _families(t)
        worst = min(fams, key=lambda f: base_families[f][0] / fams[f][0] if fams[f][0] else float("inf"))
        cycles, kinds = fams[worst]
        later = t is not first
        gain = base_families[worst][0] / cycles * counts[0]
        # a family that gained nothing stayed on one core: its kernels are too small to pay for a fork
        held = "one core" if gain < 1.01 else max(kinds, key=kinds.get)
        out.append(Point(n, t.seconds, speedup, speedup / n, max(t.bounds, key=t.bounds.get),
                         {k: v / t.cycles for k, v in t.bounds.items()}, worst if later else None,
                         gain if later else None, held if later else None))
    s = machine.socket
    cfg = lowered.graph.config
    return ScaleReport(cfg.get("model", lowered.graph.model), cfg.get("seq", 0), cfg.get("batch", 0), target.name,
                       machine.name, machine.clock_ghz,
                       {"part": s.part, "cores": s.cores, "llc_cores": s.llc_cores, "dram_gb_s": s.dram_gb_s,
                        "fork_join_ns": s.fork_join_ns, "fork_join_ns_per_doubling": s.fork_join_ns_per_doubling,
                        "sockets": s.sockets, "remote_gb_s": s.remote_gb_s,
                        "sources": {"cores": s.cores_source, "dram": s.dram_source, "fork_join": s.fork_join_source,
                                    **({"sockets": s.sockets_source} if s.sockets > 1 else {})}},
                       out, training=training)


def scale_gpus(steps: list, link: str, parallel: str = "data") -> ScaleReport:
    """A ScaleReport from data- or tensor-parallel training reports (engine/training.py `TrainingReport`), one
    per GPU count, in order, for one GPU target: a step of the same global batch on each count."""
    first = steps[0].targets[0]
    out = []
    for report in steps:
        t = report.targets[0]
        dp = t.multi_gpu
        gpus = dp.gpus if dp else 1
        optimizer = t.cycles["optimizer"] / (t.clock_ghz * 1e6)
        waits = dp.exposed_ms if dp else 0.0
        parts = {"compute": t.step_ms - optimizer - waits, "optimizer": optimizer, "all-reduce": waits}
        speedup = first.step_ms / t.step_ms * (first.multi_gpu.gpus if first.multi_gpu else 1)
        out.append(GpuPoint(gpus, t.step_ms / 1e3, speedup, speedup / gpus, max(parts, key=parts.get),
                            dp.per_gpu_batch if dp else report.batch, dp.allreduce_ms if dp else 0.0, waits,
                            optimizer))
    r = steps[0]
    return ScaleReport(r.model, r.seq, r.batch, first.target, first.uarch, first.clock_ghz, None, out,
                       _link(first.uarch, link), parallel, True)


def scale_tensor(reports: list, link: str) -> ScaleReport:
    """A ScaleReport from tensor-parallel traces (engine/tensor_parallel.py), one per GPU count, in order, for
    one GPU target: the same forward pass on each count."""
    first = reports[0].targets[0]
    out = []
    for report in reports:
        t = report.targets[0]
        speedup = first.cycles / t.cycles * first.gpus
        reduce_ms = sum(r.cycles for r in t.ops if r.op == "isasim.all_reduce") / (t.clock_ghz * 1e6)
        out.append(GpuPoint(t.gpus, t.seconds, speedup, speedup / t.gpus, max(t.bounds, key=t.bounds.get),
                            report.batch, reduce_ms, reduce_ms, 0.0))
    r = reports[0]
    return ScaleReport(r.model, r.seq, r.batch, first.target, first.uarch, first.clock_ghz, None, out,
                       _link(first.uarch, link), "tensor")


def _link(uarch: str, link: str) -> dict:
    wire = load_machine(uarch).links[link]
    return {"name": wire.name, "busbw_gb_s": wire.busbw_gb_s, "latency_us": wire.latency_us, "source": wire.source}
