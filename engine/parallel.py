"""Work items in forked processes, up to the machine's cores, with their progress forwarded to this one.

Forked children inherit what the parent built (the lowered graph, the weights, PyTorch's reference) without
copying it: pages are shared until written, and numpy's data buffers are only read. Each child returns its
result, how long it took and its peak RSS. Ctrl-C is the parent's to handle: children ignore SIGINT and are
terminated when the parent stops waiting.
"""

from __future__ import annotations

import multiprocessing
import os
import queue as queues
import resource
import signal
import time
from typing import Any, Callable

from isasim.engine.targets import Progress

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


def _child_init() -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)


def _child(i: int):
    work, items, queue = _JOB["work"], _JOB["items"], _JOB["queue"]
    return measured(work, items[i], lambda what, done, total: queue.put((what, done, total)))


def run_forked(work: Work, items: list, jobs: int, progress: Progress | None = None) -> list[tuple[Any, float, int]]:
    """[(work(item), seconds, peak RSS)] for each item, in order, computed by `jobs` forked processes."""
    ctx = multiprocessing.get_context("fork")
    queue = ctx.Queue()
    _JOB.update(work=work, items=items, queue=queue)
    pool = ctx.Pool(jobs, initializer=_child_init, maxtasksperchild=1)  # a fresh process per item: its own peak
    try:
        pending = pool.map_async(_child, range(len(items)), chunksize=1)
        while not pending.ready():
            try:
                update = queue.get(timeout=0.2)
            except queues.Empty:
                continue
            if progress:
                progress(*update)
        results = pending.get()
        pool.close()
        return results
    finally:
        pool.terminate()
        pool.join()
        _JOB.clear()
