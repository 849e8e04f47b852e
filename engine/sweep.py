"""`sweep`: a grid of configurations (models x seqs x batches x precisions x targets x cores), one tidy row each.

Each point costs one configuration exactly as `isasim trace` does (engine/trace.py), and its row holds the
trace's totals: instructions, cycles, seconds, bytes per memory level, the bound that decided the most
cycles, and each op family's share of the cycles. The graph of each (model, seq, batch) is captured once and
handed to its points as data (the graph cache's JSON: models/graph_cache.py), never recaptured per point.

Points are independent, so they run as tasks of a Dask cluster (engine/sweep_dask.py): a LocalCluster of
worker processes by default, or an existing cluster. `serial=True` runs them one after another in this process,
with the same functions. Rows go to the output file as they finish (engine/sweep_file.py), which makes a
sweep resumable: points already in the file are skipped. A point that fails is recorded with its one-line
error, and the sweep goes on.
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable, Iterable

from isasim.engine.sweep_file import ResultFile, format_of
from isasim.engine.sweep_point import COLUMNS, KEY, Point, SweepProgress, capture, cost_point, failed, typed
from isasim.isa.errors import UserError
from isasim.version import __version__

def grid(models: Iterable[str], seqs: Iterable[int], batches: Iterable[int], precisions: Iterable[str] = ("fp32",),
         targets: list[str] | None = None, uarchs: list[str] | None = None, seed: int = 0,
         cores: Iterable[int | str] = (1,)) -> tuple[list[Point], list[str]]:
    """The grid's points, and a note per (target, core, precision) it cannot run (the AVX-512 target on Zen
    3, the SIMT target in int8), which is left out as `trace` leaves it out. Every target runs on each of
    `uarchs` of its ISA (none given: its own core), so a sweep can set cores against each other. A CPU target
    runs on each count of `cores` of its socket ("all": the socket's, engine/cores.py); a GPU on one."""
    from isasim.engine.cores import cores_for
    from isasim.engine.graphs import check_precision, check_shape
    from isasim.engine.targets import machines_for, pick_targets
    from isasim.isa.targets import ALL_TARGETS, get_any_target
    from isasim.models import graph_cache

    models, seqs, batches, precisions = list(models), list(seqs), list(batches), list(precisions)
    # a folder by its absolute path: its rows name one model wherever the sweep is run from, however typed
    models = list(dict.fromkeys(m if m in graph_cache.BUILTIN or not Path(m).is_dir() else str(Path(m).resolve())
                                for m in models))
    for name, values in (("--model", models), ("--seq", seqs), ("--batch", batches), ("--precision", precisions)):
        if not values:
            raise UserError(f"{name} is empty: give at least one value")
    for seq in seqs:
        check_shape(1, seed, seq)
    for batch in batches:
        check_shape(batch, seed)
    for m in models:  # before any work: a model that cannot be loaded, a seq it does not accept
        if all(graph_cache.holds(graph_cache.key(m, s, b, seed, False)) for s in seqs for b in batches):
            continue  # every shape was captured before, so the model loads and takes them (no torch to import)
        from isasim.models.inputs import check_shape as shape_fits
        from isasim.models.registry import resolve

        spec = resolve(m)
        for seq in seqs:
            shape_fits(spec.config, seq, 1, spec.name)
    for p in precisions:
        check_precision(p)
    cores = list(cores)
    if not cores:
        raise UserError("--cores is empty: give at least one count")
    chosen = [get_any_target(t) for t in (targets or list(ALL_TARGETS))]
    named = machines_for(chosen, uarchs)
    pairs, notes = [], []
    for p in precisions:
        for t in chosen:
            for u in [u.name for u in named if u.isa == t.isa] or [None]:
                try:
                    (target, machine), = pick_targets([t.name], [u] if u else None, p)
                except UserError as e:
                    notes.append(f"{t.name}{f' on {u}' if u else ''} in {p} left out: {e}")
                    continue
                counts = [1]
                if target.simt is None:
                    counts = list(dict.fromkeys(cores_for(machine, c) for c in cores))
                elif cores != [1] and p == precisions[0]:
                    notes.append(f"{target.name} is a GPU: costed once, not per core count (--cores splits a CPU's "
                                 "kernels)")
                pairs += [(p, target.name, machine.name, n) for n in counts]
    if not pairs:  # every target was left out: nothing would run, and the command would seem to succeed
        raise UserError(f"no point of the grid can run: {notes[0]}" + (f" (and {len(notes) - 1} more left out)"
                                                                        if len(notes) > 1 else ""))
    points = [Point(m, s, b, p, t, u, n) for m in models for s in seqs for b in batches for p, t, u, n in pairs]
    return list(dict.fromkeys(points)), notes


def check_row(row: dict, n: int, output: Path) -> None:
    """A row already in -o must be this version's (another cost model's rows would not compare with this
    one's) and hold numbers where numbers go, before any work is done."""
    if row.get("isasim") != __version__:
        costed = f"by isasim {row['isasim']}" if row.get("isasim") else "without the isasim version"
        raise UserError(f"-o {output}: row {n} was costed {costed}, and this is {__version__}: choose a new file name "
                        f"(or delete it)")
    try:
        typed(row)
    except (TypeError, ValueError):
        raise UserError(f"-o {output}: row {n} holds something other than a number where a number goes (an "
                        f"edited table?): choose a new file name (or delete it)") from None


def run_serial(points: list[Point], write: Callable[[dict], None], seed: int = 0,
               progress: SweepProgress | None = None) -> None:
    """Every point in this process, in order, each shape captured once."""
    graphs: dict = {}
    bad = 0
    for done, point in enumerate(points, 1):
        try:
            if point.shape not in graphs:
                graphs.clear()
                graphs[point.shape] = capture(point.model, point.seq, point.batch, seed)
            result = cost_point(graphs[point.shape], point)
        except Exception as e:  # (recorded as the Dask run records it; Ctrl-C still stops the sweep)
            result = failed(point, e)
        bad += bool(result["error"])
        write(result)
        if progress:
            progress(done, 0, bad, len(points))


def sweep(points: list[Point], output: Path | None = None, fmt: str | None = None, *, seed: int = 0,
          scheduler=None, workers: int | None = None, serial: bool = False, retry_failed: bool = False,
          progress: SweepProgress | None = None) -> list[dict]:
    """Run the points that `output` does not hold yet; every point's row (typed), in the grid's order."""
    if workers is not None and workers < 1:
        raise UserError(f"--workers {workers} is out of range: use 1 or more")
    store = ResultFile(output, format_of(output, fmt), COLUMNS, KEY) if output else None
    for n, r in enumerate(store.rows if store else [], 1):
        check_row(r, n, output)
    if store and retry_failed:
        store.drop_failed()
    done = store.done() if store else set()
    todo = [p for p in points if p.key() not in done]
    rows: list[dict] = []

    def write(r: dict) -> None:
        if store:
            store.append(r)
        else:
            rows.append(r)

    try:
        if todo and serial:
            run_serial(todo, write, seed, progress)
        elif todo:
            from isasim.engine.sweep_dask import run_dask

            run_dask(todo, write, seed, scheduler, workers, progress)
    finally:
        if store:
            store.close()
    found = {tuple(str(r[c]) for c in KEY): r for r in (store.rows if store else rows)}
    return [typed(found[p.key()]) for p in points if p.key() in found]
