"""`trace`: what every op of a lowered graph costs on each target: instructions, cycles, the bound that
decides, bytes per memory level. Nothing is executed."""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from isasim.backends import backend_for
from isasim.engine.cores import cores_for, split_cost
from isasim.engine.targets import Progress
from isasim.isa.cost import KernelCost
from isasim.isa.hardware import Bound, Machine
from isasim.isa.targets import Target
from isasim.lowering.kernel import Kernel, canonical
from isasim.lowering.pipeline import LoweredGraph
from isasim.report import ModelReport

LEVELS = ("l1", "l2", "llc", "dram")  # a report's byte columns (on a GPU: threads' bytes, L2, L2, DRAM)


def layer_of(module: str) -> str:
    m = re.search(r"encoder\.layer\.(\d+)", module)
    if m:
        return f"layer {m.group(1)}"
    return module.split(".")[0] if module else "(top)"


@dataclass
class OpRow:
    name: str
    op: str
    module: str
    layer: str
    shape: str
    instructions: int
    cycles: float
    bound: Bound
    bytes: dict[str, int]
    flops: int
    fp_ops: int
    simt: dict | None = None  # GPU kernels: launch geometry, registers, occupancy and its limiter, sectors


@dataclass
class TargetTrace:
    target: str
    uarch: str
    clock_ghz: float
    instructions: int
    cycles: float
    seconds: float
    flops: int
    fp_ops: int
    bytes: dict[str, int]
    bounds: dict[str, float]  # cycles of the ops each kind of bound decided
    ops: list[OpRow] = field(default_factory=list)
    cores: int = 1  # of one socket, sharing every kernel's parallel loop (engine/cores.py)
    gpus: int = 1  # tensor parallel: what one of this many GPUs runs and waits for (engine/tensor_parallel.py)
    allreduce_bytes: int = 0  # tensor parallel: the bytes its all-reduces sum across the GPUs, together


@dataclass
class TraceReport(ModelReport):
    params: int
    flops: int  # matrix-multiply FLOPs, counted as torch's FlopCounterMode counts them
    views: int  # ops that only re-describe storage and cost nothing
    config: dict
    targets: list[TargetTrace]

    def records(self) -> list[dict]:
        """One row per op and target."""
        return [{"target": t.target, "uarch": t.uarch, "name": r.name, "op": r.op, "module": r.module,
                 "layer": r.layer, "shape": r.shape, "instructions": r.instructions, "cycles": r.cycles,
                 "seconds": r.cycles / (t.clock_ghz * 1e9), "bound": r.bound.label,
                 **{f"bytes_{lv}": r.bytes[lv] for lv in LEVELS}, "flops": r.flops, "fp_ops": r.fp_ops}
                for t in self.targets for r in t.ops]


def cost_kernel(kernel: Kernel, target: Target, machine: Machine, cores: int = 1) -> KernelCost:
    """What the kernel costs on the machine; on `cores` cores of a CPU's socket, split as engine/cores.py does."""
    backend = backend_for(target)
    alone = backend.cost(backend.select(kernel, target, machine), machine)
    if cores == 1:
        return alone
    return split_cost(kernel, target, machine, cores, alone).cost


def trace(lowered: LoweredGraph, targets: list[tuple[Target, Machine]], progress: Progress | None = None,
          cores: int | str = 1) -> TraceReport:
    """`cores`: a number or "all" (each CPU socket's own count), checked against each machine."""
    graph = lowered.graph
    kernels = lowered.kernels
    results = []
    total = len(kernels) * len(targets)
    done = 0
    for target, machine in targets:
        on = 1 if cores == 1 else cores_for(machine, cores)
        rows = []
        memo: dict[Kernel, KernelCost] = {}  # the same op in every layer is costed once
        for step in lowered.steps:
            k = step.kernel
            if k is None:
                continue
            key = canonical(k)
            if key not in memo:
                memo[key] = cost_kernel(k, target, machine, on)
            c = memo[key]
            n = step.node
            rows.append(OpRow(n.name, n.op, n.module, layer_of(n.module), "x".join(map(str, n.out.shape)) or "scalar",
                              c.instructions, c.cycles, c.bound, c.bytes, c.flops, c.fp_ops, c.simt))
            done += 1
            if progress:
                progress(f"costing {target.name}", done, total)
        cycles = sum(r.cycles for r in rows)
        bounds: dict[str, float] = {}
        for r in rows:
            bounds[r.bound.kind] = bounds.get(r.bound.kind, 0.0) + r.cycles
        results.append(TargetTrace(
            target.name, machine.name, machine.clock_ghz, sum(r.instructions for r in rows), cycles,
            cycles / (machine.clock_ghz * 1e9), sum(r.flops for r in rows), sum(r.fp_ops for r in rows),
            {lv: sum(r.bytes[lv] for r in rows) for lv in LEVELS}, bounds, rows, on))
    cfg = graph.config
    return TraceReport(cfg.get("model", graph.model), cfg.get("seq", 0), cfg.get("batch", 0), cfg.get("params", 0),
                       sum(k.flops for k in kernels), len(lowered.steps) - len(kernels), dict(cfg), results)
