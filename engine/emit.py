"""`emit`: every kernel of a model as a file its real toolchain accepts (GNU as, ptxas), plus manifest.json:
how to call each kernel, and what isasim predicts it costs."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from isasim.backends import backend_for
from isasim.engine.explain import matching_steps
from isasim.engine.targets import Progress
from isasim.isa.errors import UserError
from isasim.isa.hardware import Machine
from isasim.isa.targets import Target
from isasim.lowering.pipeline import LoweredGraph
from isasim.report import ModelReport


@dataclass
class EmittedTarget:
    target: str
    uarch: str
    folder: str
    manifest: dict  # what manifest.json in the folder says: each kernel's file, calling convention and costs


@dataclass
class EmitReport(ModelReport):
    targets: list[EmittedTarget]

    def records(self) -> list[dict]:
        """One row per kernel file."""
        return [{"target": t.target, "uarch": t.uarch, "folder": t.folder, "name": k["name"], "op": k["op"],
                 "file": k["file"], "cycles": k["cycles"]} for t in self.targets for k in t.manifest["kernels"]]


def previous_emit(outdir: Path) -> list[Path]:
    """The files an earlier `isasim emit` left in `outdir` (which may go, to be replaced); UserError if the
    folder is something else: a file, or a folder holding anything but such an emit (nothing is mixed in)."""
    if not outdir.exists():
        return []
    if not outdir.is_dir():
        raise UserError(f"emit -o {outdir}: not a folder: give a new or empty folder")
    present = set(outdir.iterdir())
    if not present:
        return []
    ours: set[Path] = set()
    manifest = outdir / "manifest.json"
    try:
        for k in json.loads(manifest.read_text())["kernels"]:
            ours |= {outdir / k["file"], (outdir / k["file"]).with_suffix(".cubin")}
    except (OSError, ValueError, KeyError, TypeError):
        ours = set()
    if ours and present <= ours | {manifest}:
        return sorted(present)
    raise UserError(f"emit -o {outdir}: the folder holds other files: give a new or empty folder (or the folder "
                    f"of an earlier `isasim emit`, which is replaced)")


def emit_model(lowered: LoweredGraph, target: Target, machine: Machine, outdir: Path, op: str | None = None,
               progress: Progress | None = None) -> dict:
    """Write each kernel (or those `op` names) into `outdir`, and the manifest; returns the manifest. An earlier
    emit in `outdir` is replaced; any other content is refused (previous_emit)."""
    backend = backend_for(target)
    steps = [s for s in lowered.steps if s.kernel is not None] if op is None else matching_steps(lowered, op)
    for old in previous_emit(outdir):
        old.unlink()
    outdir.mkdir(parents=True, exist_ok=True)
    kernels = []
    for done, step in enumerate(steps, 1):
        program = backend.select(step.kernel, target, machine)
        cost = backend.cost(program, machine)
        path = outdir / f"{step.node.name}{backend.file_suffix}"
        path.write_text(backend.emit(program, target, machine))
        kernels.append({"name": step.node.name, "op": step.node.op, "module": step.node.module,
                        "shape": list(step.node.out.shape), "file": path.name,
                        **backend.manifest_entry(program, cost, path, machine)})
        if progress:
            progress(f"emitting {target.name}", done, len(steps))
    manifest = {"model": lowered.graph.config.get("model", lowered.graph.model), "target": target.name,
                "uarch": machine.name, "isa": target.isa, **backend.manifest_header(target, machine),
                "kernels": kernels}
    (outdir / "manifest.json").write_text(json.dumps(manifest, indent=2))
    return manifest
