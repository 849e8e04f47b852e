"""Inference split across the GPUs of one server by Megatron-LM's tensor parallelism (lowering/tensor_split.py):
what each GPU runs, what it costs, and the all-reduces between them.

Executed (`shards`, for engine/run.py): each GPU's shard of a split kernel runs on its own; the row-parallel
linears' partial sums are added in GPU order, 0 to N-1, in float32 (a ring adds the same terms in a rotating
order per chunk, so a real all-reduce can differ in the last bits: the check holds the result to PyTorch's
within its tolerance, not bit for bit to one GPU's).

Costed (`trace`): every GPU runs the same shapes, so GPU 0's shard is the step's cost (it also adds the bias);
a kernel that runs whole runs whole on every GPU; after each row-parallel linear, an all-reduce of its output
over the link (isa/gpu.py `Link`), which nothing overlaps: the next op needs its result. Two per layer.
"""

from __future__ import annotations

from dataclasses import replace

from isasim.engine.run import Shards
from isasim.engine.targets import Progress
from isasim.engine.trace import OpRow, TargetTrace, TraceReport, trace as trace_whole
from isasim.isa.hardware import Bound
from isasim.isa.targets import Target
from isasim.lowering.pipeline import LoweredGraph, Step
from isasim.lowering.tensor_split import shards as split

ALL_REDUCE = "isasim.all_reduce"  # a trace row's op: the all-reduce between GPUs (models/tensor_parallel.py)


def shards(lowered: LoweredGraph, gpus: int) -> Shards:
    """Each step's GPU shards, for engine/run.py `run_graph(shards=...)`."""
    heads = int(lowered.graph.config.get("heads", 0))

    def of(step: Step):
        return split(step.kernel, step.node.module, step.node.op, gpus, heads)

    return of


def trace(lowered: LoweredGraph, target: Target, machine, gpus: int, link: str,
          progress: Progress | None = None) -> TraceReport:
    """What one GPU of `gpus` runs and waits for: its shard of every split kernel, every whole one, and an
    all-reduce row after each row-parallel linear."""
    heads = int(lowered.graph.config.get("heads", 0))
    steps, partial = [], set()
    for step in lowered.steps:
        pieces = split(step.kernel, step.node.module, step.node.op, gpus, heads) if step.kernel else None
        if pieces is not None:
            step = replace(step, kernel=pieces[0][0])  # GPU 0's shard: every GPU's has its shape
            if pieces[1]:
                partial.add(step.node.name)
        steps.append(step)
    report = trace_whole(replace(lowered, steps=tuple(steps)), [(target, machine)], progress)
    report.flops = sum(k.flops for k in lowered.kernels)  # the model's, as on one GPU
    one = report.targets[0]
    rows, reduced = [], 0
    for step, row in zip([s for s in steps if s.kernel is not None], one.ops):
        rows.append(row)
        if row.name in partial:  # partial sums: the all-reduce of the whole output, which the next op needs
            nbytes = sum(b.size * b.dtype.itemsize for b in step.kernel.buffers if b.is_output)
            rows.append(link_row(row, f"all_reduce({row.name})", nbytes, machine, link, gpus))
            reduced += nbytes
    report.targets = [replace(with_rows(one, rows, gpus), allreduce_bytes=reduced)]
    return report


def link_row(row: OpRow, name: str, nbytes: int, machine, link: str, gpus: int) -> OpRow:
    """An all-reduce of `nbytes` across `gpus` GPUs over `link`, as a trace row after (or instead of) `row`,
    in its module: link time, no instruction, no memory traffic counted."""
    cycles = machine.links[link].allreduce_seconds(nbytes, gpus) * machine.clock_ghz * 1e9
    return OpRow(name, ALL_REDUCE, row.module, row.layer, row.shape, 0, cycles, Bound("link", cycles, link),
                 dict.fromkeys(row.bytes, 0), 0, 0, None)


def with_rows(one: TargetTrace, rows: list[OpRow], gpus: int) -> TargetTrace:
    """`one` with these rows, its totals summed again."""
    cycles = sum(r.cycles for r in rows)
    bounds: dict[str, float] = {}
    for r in rows:
        bounds[r.bound.kind] = bounds.get(r.bound.kind, 0.0) + r.cycles
    return replace(one, instructions=sum(r.instructions for r in rows), cycles=cycles,
                   seconds=cycles / (one.clock_ghz * 1e9), bounds=bounds, ops=rows, gpus=gpus,
                   bytes={level: sum(r.bytes.get(level, 0) for r in rows) for level in one.bytes})
