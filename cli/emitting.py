"""`isasim emit`: every kernel of a model as a standalone assembly file, plus manifest.json."""

from __future__ import annotations

import json
from pathlib import Path

from isasim.cli.reports import Progress
from isasim.isa.cost import cost_program
from isasim.isa.emit import emit, hottest_loop, symbol
from isasim.isa.program import Instr
from isasim.isa.machine import Uarch
from isasim.isa.targets import Target
from isasim.lowering.isel import select
from isasim.lowering.pipeline import LoweredGraph
from isasim.models.errors import UserError


def emit_model(lowered: LoweredGraph, target: Target, uarch: Uarch, outdir: Path, op: str | None = None,
               progress: Progress | None = None) -> dict:
    steps = [s for s in lowered.steps if s.kernel is not None]
    if op is not None:
        steps = [s for s in steps if op in (s.node.name, s.node.op, s.node.op.split(".")[1])]
        if not steps:
            raise UserError(f"no kernel matches --op {op}: give a node name (e.g. linear_3) or an op (e.g. gelu)")
    outdir.mkdir(parents=True, exist_ok=True)
    kernels = []
    for done, step in enumerate(steps, 1):
        program = select(step.kernel, target)
        cost = cost_program(program, uarch)
        path = outdir / f"{step.node.name}.s"
        path.write_text(emit(program, target))
        inner = cost.inner_loop
        hot = hottest_loop(program.body)[1]
        keys = sorted({i.mnemonic for i in hot.body + hot.latch if isinstance(i, Instr)}) if hot else []
        kernels.append({
            "name": step.node.name,
            "op": step.node.op,
            "module": step.node.module,
            "shape": list(step.node.out.shape),
            "file": path.name,
            "symbol": symbol(program.name),
            "arguments": [{"name": b.name, "dtype": b.dtype.value, "elements": b.size,
                           "role": "output" if b.is_output else "input"} for b in program.buffers],
            "instructions": cost.instructions,
            "cycles": cost.cycles,
            "inner_loop": None if inner is None else {
                "predicted_cycles_per_iteration": inner.cycles, "bound": inner.bound,
                "ports": inner.ports, "issue": inner.issue, "latency": inner.latency, "timing_keys": keys},
        })
        if progress:
            progress(f"emitting {target.name}", done, len(steps))
    manifest = {"model": lowered.graph.config.get("model", lowered.graph.model), "target": target.name,
                "uarch": uarch.name, "isa": target.isa,
                "abi": "System V AMD64" if target.isa == "x86-64" else "AAPCS64",
                "calling": "void symbol(void *arg0, ...): the buffers' base addresses, in 'arguments' order",
                "kernels": kernels}
    (outdir / "manifest.json").write_text(json.dumps(manifest, indent=2))
    return manifest
