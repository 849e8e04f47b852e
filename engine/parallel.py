"""Work items in forked processes, up to the machine's cores, with their progress forwarded to this one.

Forked children inherit what the parent built (the lowered graph, the weights, PyTorch's reference) without
copying it: pages are shared until written, and numpy's data buffers are only read. Each child returns its
result, how long it took and its peak RSS. Ctrl-C is the parent's to handle: children ignore SIGINT and are
stopped when the parent stops waiting; a child that dies ends the run in one line, not a hang.
"""

from __future__ import annotations

import multiprocessing
import multiprocessing.connection
import os
import queue as queues
import resource
import signal
import time
from typing import Any, Callable

from isasim.engine.targets import Progress
from isasim.isa.errors import UserError

Work = Callable[[Any, "Progress | None"], Any]  # (item, progress) -> result
_JOB: dict = {}  # what the children inherit at fork: the work, its items and the progress queue


def usable_cores() -> int:
    """The cores this process may run on (its affinity, as taskset or a container sets it)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def can_fork() -> bool:
    """Whether processes can start as copies of this one (Linux and macOS; not Windows)."""
    return "fork" in multiprocessing.get_all_start_methods()


def peak_rss_bytes(children: bool = False) -> int:
    """This process's peak resident set (or its largest waited-for child's), in bytes (Linux counts KiB)."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN if children else resource.RUSAGE_SELF)
    return usage.ru_maxrss * 1024


def measured(work: Work, item, progress: Progress | None) -> tuple[Any, float, int]:
    """work(item), its wall-clock seconds and the process's peak RSS once it is done."""
    start = time.perf_counter()
    result = work(item, progress)
    return result, time.perf_counter() - start, peak_rss_bytes()


def _child(i: int, results) -> None:
    """A forked process's whole life: work on item i, send (result, seconds, peak RSS) or the exception."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the parent's to handle
    work, items, queue = _JOB["work"], _JOB["items"], _JOB["queue"]
    try:
        outcome = ("ok", measured(work, items[i], lambda what, done, total: queue.put((what, done, total))))
    except BaseException as e:  # (sent to the parent, which raises it)
        outcome = ("error", e)
    results.send(outcome)
    results.close()


def _forward(queue, progress: Progress | None) -> None:
    """Every progress update the children have sent so far, passed on."""
    while True:
        try:
            update = queue.get_nowait()
        except queues.Empty:
            return
        if progress:
            progress(*update)


def run_forked(work: Work, items: list, jobs: int, progress: Progress | None = None,
               names: list[str] | None = None) -> list[tuple[Any, float, int]]:
    """[(work(item), seconds, peak RSS)] for each item, in order, each computed by a forked process of its own
    (so each reports its own peak), `jobs` at a time. A process that dies without an answer (the kernel's OOM
    killer, a signal) ends the run with a UserError naming it (`names`) instead of a hang; on any exit, the
    others are stopped."""
    ctx = multiprocessing.get_context("fork")
    queue = ctx.Queue()
    _JOB.update(work=work, items=items, queue=queue)
    results: list = [None] * len(items)
    running: dict = {}  # pipe -> (item, process)
    waiting = list(range(len(items)))
    try:
        while waiting or running:
            while waiting and len(running) < jobs:
                i = waiting.pop(0)
                receive, send = ctx.Pipe(duplex=False)
                proc = ctx.Process(target=_child, args=(i, send), daemon=True)
                proc.start()
                send.close()
                running[receive] = (i, proc)
            _forward(queue, progress)  # progress first: a child's updates come before its answer
            for pipe in multiprocessing.connection.wait(list(running), timeout=0.2):
                i, proc = running.pop(pipe)
                try:
                    kind, value = pipe.recv()
                except EOFError:
                    proc.join()
                    what = names[i] if names else f"item {i + 1}"
                    raise UserError(f"the process for {what} died (exit {proc.exitcode}; out of memory? see `dmesg`): "
                                    "run again with --jobs 1, or lower --batch or --seq") from None
                proc.join()
                if kind == "error":
                    raise value
                results[i] = value
        _forward(queue, progress)  # (the last updates of the last processes)
        return results
    finally:
        for _, proc in running.values():
            proc.terminate()
            proc.join()
        _JOB.clear()
