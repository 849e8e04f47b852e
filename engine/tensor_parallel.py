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

from isasim.backends import backend_for
from isasim.engine.run import Shards
from isasim.engine.targets import Progress
from isasim.engine.trace import OpRow, TargetTrace, TraceReport, layer_of, trace as trace_whole
from isasim.isa.hardware import Bound
from isasim.isa.targets import Target
from isasim.lowering.kernel import canonical
from isasim.lowering.pipeline import LoweredGraph, Step
from isasim.lowering.tensor_split import shards as split


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
    report = trace_whole(lowered, [(target, machine)], progress)
    backend = backend_for(target)
    wire = machine.links[link]
    heads = int(lowered.graph.config.get("heads", 0))
    whole = report.targets[0]
    rows, memo = [], {}
    kernel_steps = [s for s in lowered.steps if s.kernel is not None]
    for step, row in zip(kernel_steps, whole.ops):
        pieces = split(step.kernel, step.node.module, step.node.op, gpus, heads)
        if pieces is None:
            rows.append(row)
            continue
        key = canonical(pieces[0][0])
        if key not in memo:
            memo[key] = backend.cost(backend.select(pieces[0][0], target, machine), machine)
        c = memo[key]
        rows.append(OpRow(row.name, row.op, row.module, row.layer, row.shape, c.instructions, c.cycles, c.bound,
                          c.bytes, c.flops, c.fp_ops, c.simt))
        if pieces[1]:  # partial sums: the all-reduce of the whole output
            nbytes = sum(b.size * b.dtype.itemsize for b in step.kernel.buffers if b.is_output)
            cycles = wire.allreduce_seconds(nbytes, gpus) * machine.clock_ghz * 1e9
            rows.append(OpRow(f"all_reduce({row.name})", "isasim.all_reduce", row.module, layer_of(row.module),
                              row.shape, 0, cycles, Bound("link", cycles, link), dict.fromkeys(whole.bytes, 0),
                              0, 0, None))
    cycles = sum(r.cycles for r in rows)
    bounds: dict[str, float] = {}
    for r in rows:
        bounds[r.bound.kind] = bounds.get(r.bound.kind, 0.0) + r.cycles
    report.targets = [TargetTrace(whole.target, whole.uarch, whole.clock_ghz, sum(r.instructions for r in rows),
                                  cycles, cycles / (whole.clock_ghz * 1e9), sum(r.flops for r in rows),
                                  sum(r.fp_ops for r in rows), {lv: sum(r.bytes[lv] for r in rows)
                                                                for lv in whole.bytes}, bounds, rows,
                                  gpus=gpus)]
    return report
