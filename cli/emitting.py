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
from isasim.lowering.backends import is_simt
from isasim.lowering.pipeline import LoweredGraph
from isasim.isa.errors import UserError


def emit_model(lowered: LoweredGraph, target: Target, uarch: Uarch, outdir: Path, op: str | None = None,
               progress: Progress | None = None) -> dict:
    steps = [s for s in lowered.steps if s.kernel is not None]
    if op is not None:
        steps = [s for s in steps if op in (s.node.name, s.node.op, s.node.op.split(".")[1])]
        if not steps:
            raise UserError(f"no kernel matches --op {op}: give a node name (e.g. linear_3) or an op (e.g. gelu)")
    outdir.mkdir(parents=True, exist_ok=True)
    if is_simt(target):
        return emit_ptx_model(lowered, steps, target, uarch, outdir, progress)
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


def ptxas_report(path: Path, arch: str) -> dict | None:
    """What ptxas says about a PTX file (registers, shared memory, spills), or None without ptxas."""
    import re
    import shutil
    import subprocess

    if shutil.which("ptxas") is None:
        return None
    r = subprocess.run(["ptxas", f"-arch={arch}", "-v", str(path), "-o", str(path.with_suffix(".cubin"))],
                       capture_output=True, text=True)
    if r.returncode != 0:
        raise RuntimeError(f"ptxas rejected {path.name}: {r.stderr.strip()}")
    text = r.stdout + r.stderr
    regs = re.search(r"Used (\d+) registers", text)
    smem = re.search(r"(\d+) bytes smem", text)
    spills = re.search(r"(\d+) bytes spill stores", text)
    return {"registers": int(regs.group(1)) if regs else None, "shared_bytes": int(smem.group(1)) if smem else 0,
            "spill_store_bytes": int(spills.group(1)) if spills else 0}


def emit_ptx_model(lowered: LoweredGraph, steps, target: Target, gpu, outdir: Path,
                   progress: Progress | None) -> dict:
    """Every kernel as a PTX file for the GPU's architecture, checked by ptxas when it is installed; the
    manifest puts ptxas's register count next to isasim's estimate."""
    from isasim.isa.emit_ptx import emit_ptx, symbol as ptx_symbol
    from isasim.isa.simt_cost import cost_simt
    from isasim.lowering.isel_simt import select_simt

    kernels = []
    for done, step in enumerate(steps, 1):
        prog = select_simt(step.kernel, target, gpu)
        cost = cost_simt(prog, gpu)
        path = outdir / f"{step.node.name}.ptx"
        path.write_text(emit_ptx(prog, gpu.ptx_target))
        kernels.append({
            "name": step.node.name, "op": step.node.op, "module": step.node.module,
            "shape": list(step.node.out.shape), "file": path.name, "entry": ptx_symbol(prog.name),
            "arguments": [{"name": b.name, "dtype": b.dtype.value, "elements": b.size,
                           "role": "output" if b.is_output else "input"} for b in prog.buffers],
            "grid": prog.launch.grid, "block": prog.launch.block, "strategy": prog.launch.strategy,
            "warp_instructions": cost.instructions, "cycles": cost.cycles, "bound": cost.bound,
            "registers_estimate": cost.simt["registers"], "ptxas": ptxas_report(path, gpu.ptx_target),
        })
        if progress:
            progress(f"emitting {target.name}", done, len(steps))
    manifest = {"model": lowered.graph.config.get("model", lowered.graph.model), "target": target.name,
                "uarch": gpu.name, "isa": "ptx", "ptx_target": gpu.ptx_target,
                "calling": "a .entry per kernel taking .param .u64 pointers to its buffers, in 'arguments' order; "
                           "launch with 'grid' blocks of 'block' threads (1-D)",
                "kernels": kernels}
    (outdir / "manifest.json").write_text(json.dumps(manifest, indent=2))
    return manifest
