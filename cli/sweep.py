"""`isasim sweep`: a grid of configurations costed as Dask tasks, rows streamed into a CSV or JSON-lines file."""

from __future__ import annotations

import sys
import time
from contextlib import contextmanager
from typing import TYPE_CHECKING

from isasim.isa.errors import UserError

if TYPE_CHECKING:
    from rich.console import Console


def listed(values: list[str] | None, flag: str, default: list[str] | None = None) -> list[str] | None:
    """A repeatable flag whose values may also be comma-separated: --seq 32,64 --seq 128."""
    if not values:
        return default
    out = [v.strip() for text in values for v in text.split(",") if v.strip()]
    if not out:
        raise UserError(f"{flag} is empty: give at least one value")
    return out


def numbers(values: list[str] | None, flag: str, default: int) -> list[int]:
    out = []
    for v in listed(values, flag, [str(default)]):
        try:
            out.append(int(v))
        except ValueError:
            raise UserError(f"{flag} {v!r} is not a whole number: give a list such as {flag} 32,64,128") from None
    return out


@contextmanager
def progress_bar(enabled: bool):
    """points done, running and failed, on stderr when it is a terminal."""
    if not enabled:
        yield None
        return
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    with Progress(TextColumn("sweep"), BarColumn(), MofNCompleteColumn(), TextColumn("{task.fields[state]}"),
                  TimeElapsedColumn(), console=Console(stderr=True), transient=True) as bar:
        task = bar.add_task("sweep", total=None, state="starting")

        def update(done: int, running: int, failed: int, total: int) -> None:
            bar.update(task, total=total, completed=done, state=f"{running} running, {failed} failed")

        yield update


def cmd_sweep(args, out: Console) -> int:
    from isasim.cli.output import check_plot, check_writable
    from isasim.engine.sweep import grid, sweep

    check_writable(args.output, "-o")
    if args.plot:
        check_plot(args.plot)
    if args.serial and (args.scheduler or args.workers is not None):
        raise UserError("--serial runs every point in this process: drop --scheduler and --workers")
    targets = listed(args.target, "--target")
    from isasim.cli.scale import core_count

    points, notes = grid(listed(args.model, "--model"), numbers(args.seq, "--seq", 128),
                         numbers(args.batch, "--batch", 1), listed(args.precision, "--precision", ["fp32"]),
                         None if targets in (None, ["all"]) else targets, listed(args.uarch, "--uarch"), args.seed,
                         [core_count(c) for c in listed(args.cores, "--cores", ["1"])])
    start = time.perf_counter()
    with progress_bar(sys.stderr.isatty()) as progress:
        rows = sweep(points, args.output, args.format, seed=args.seed, scheduler=args.scheduler,
                     workers=args.workers, serial=args.serial, retry_failed=args.retry_failed, progress=progress)
    seconds = time.perf_counter() - start
    failed = [r for r in rows if r["error"]]
    summary(rows, out)
    for note in notes:
        print(f"isasim: note: {note}", file=sys.stderr)
    for r in failed[:5]:
        print(f"isasim: failed: {r['model']} seq {r['seq']} batch {r['batch']} {r['precision']} {r['target']} on "
              f"{r['uarch']}: {r['error']}", file=sys.stderr)
    if len(failed) > 5:
        print(f"isasim: ... and {len(failed) - 5} more failed points (their rows say why)", file=sys.stderr)
    print(f"isasim: {len(rows)} points in {args.output} ({len(failed)} failed), this run took {seconds:.1f} s",
          file=sys.stderr)
    if args.plot:
        from isasim.cli.plot_sweep import plot_sweep

        plot_sweep(rows, args.plot)
        print(f"isasim: wrote time against seq per target, and the fastest target per shape, to {args.plot}",
              file=sys.stderr)
    return 1 if failed else 0


def summary(rows: list[dict], out: Console) -> None:
    """The fastest target of each configuration: the question most sweeps are run to answer."""
    from rich.table import Table

    best: dict = {}
    for r in rows:
        if r["error"]:
            continue
        k = (r["model"], r["seq"], r["batch"], r["precision"])
        if k not in best or r["seconds"] < best[k]["seconds"]:
            best[k] = r
    if not best:
        return
    table = Table(title="fastest target per configuration (every row is in the output file)", title_justify="left")
    for col in ("model", "seq", "batch", "precision", "target", "uarch", "time", "bound"):
        table.add_column(col, justify="right" if col in ("seq", "batch", "time") else "left")
    for (m, s, b, p), r in best.items():
        table.add_row(m, str(s), str(b), p, r["target"], r["uarch"], _time(r["seconds"]), r["bound"])
    out.print(table)


def _time(seconds: float) -> str:
    return f"{seconds * 1e3:,.2f} ms" if seconds < 1 else f"{seconds:,.2f} s"
