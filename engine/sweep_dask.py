"""A sweep's points as tasks of a Dask cluster: a LocalCluster of worker processes, or one already running.

This process captures each shape's graph (from the graph cache when it can), one after another, and scatters
it to the workers as data (the graph cache's JSON); each point is one task. The points of a shape are sent
as soon as its graph is, so the workers cost them while the next shape is captured; the largest shapes
first, so a long point does not run alone at the end. Rows are written as their tasks finish, in whatever
order that is. A worker that dies (killed, out of memory) is replaced by its nanny and its tasks run again
elsewhere; a point that kills workers again and again fails with Dask's KilledWorker and is recorded as
failed.
"""

from __future__ import annotations

import logging
import signal
import threading
from contextlib import contextmanager
from typing import Callable, Iterator

from isasim.engine.sweep_point import Point, SweepProgress, capture, cost_point, failed
from isasim.isa.errors import UserError

CONNECT_TIMEOUT = "10s"


def heaviest_first(points: list[Point]) -> list[Point]:
    """The order tasks start in: the largest shapes first, so that the last tasks to run are short ones and no
    worker is left with a long one at the end; the points of one shape and precision together, so that a
    worker lowers that graph once (sweep_point.cost_point keeps the last few lowered); the SIMT point of a
    shape first among them, since its cost model's work grows with the grid (the CPU models' loops are
    counted in closed form, about 0.1 s a point for minilm whatever the shape)."""
    return sorted(points, key=lambda p: (-p.seq * p.batch, p.shape, p.precision, p.target != "simt"))


def worker_environ() -> dict:
    """The environment Dask's nannies give the worker processes they start, less MALLOC_TRIM_THRESHOLD_=65536.
    Dask sets it so that workers return freed memory to the system at once; but the SIMT cost model builds
    large temporary index arrays (a thread's address, for every thread of the grid) over and over, and with
    glibc trimming at 64 KiB each one is page-faulted in anew. Measured on a 2-core AMD EPYC Zen 5 host,
    one minilm seq 256 batch 8 SIMT point (costed again, its GEMM tiles chosen): 2.4 s in a default worker,
    0.6 s without the variable, 0.6 s in a plain process. A large value is no cure (2.3 s at 1 GiB): once the
    variable is set at all, glibc stops adapting its mmap threshold, so every large array is mmapped and
    unmapped (mallopt(3), M_MMAP_THRESHOLD)."""
    import dask

    env = dict(dask.config.get("distributed.nanny.pre-spawn-environ", {}))
    env.pop("MALLOC_TRIM_THRESHOLD_", None)
    return env


@contextmanager
def client_for(scheduler, workers: int | None) -> Iterator:
    """A Dask client: to the scheduler at an address (tcp://HOST:8786), to a Client given as is, or to a new
    LocalCluster of `workers` single-threaded processes (default: this machine's usable cores)."""
    try:
        from distributed import Client, LocalCluster
    except ImportError:
        raise UserError("isasim sweep runs on Dask: pip install dask distributed (or add --serial)") from None
    if scheduler is not None and not isinstance(scheduler, str):
        yield scheduler  # the caller's own client: theirs to close
        return
    quiet = logging.getLogger("distributed")
    level = quiet.level
    quiet.setLevel(logging.CRITICAL)  # (a replaced worker is the sweep's business; its rows say what failed)
    try:
        if scheduler is not None:
            if workers is not None:
                raise UserError("--workers sizes a local cluster: drop it with --scheduler (the cluster has its own)")
            try:
                client = Client(scheduler, timeout=CONNECT_TIMEOUT)
            except (OSError, TimeoutError, ValueError) as e:
                raise UserError(f"cannot reach a Dask scheduler at {scheduler} ({str(e).splitlines()[0]}): start "
                                f"one with `dask scheduler` or drop --scheduler") from None
            with client:
                yield client
            return
        import dask

        from isasim.engine.parallel import usable_cores

        # Dask's diagnostics for a dashboard a sweep does not open, slowed or off: the tick that wakes every
        # process each 20 ms to notice a blocked event loop, the system monitor's samples, the profiler that
        # samples the workers' stacks every 10 ms. With every core busy costing, these wakes take from the
        # points: the 60-point minilm benchmark grid ran in 6.9 s on a 2-core Zen 5 host with them, 6.5 s
        # with the tick alone slowed to 1 s.
        # The workers are forked from this process rather than spawned: a spawned worker starts Python afresh
        # and imports distributed, numpy and isasim again (about 1 s of CPU each on that host, taken from the
        # first points), where a forked one starts with all of it loaded. The same grid, API call, 3 runs
        # each: 7.4 s spawned, 6.9 s forked. (The threads this process runs at the fork are Dask's event loop;
        # see docs/design.md on why forking from it holds. A --scheduler cluster is not affected.)
        with dask.config.set({"distributed.nanny.pre-spawn-environ": worker_environ(),
                              "distributed.worker.multiprocessing-method": "fork",
                              "distributed.admin.tick.interval": "1s",
                              "distributed.admin.system-monitor.interval": "5s",
                              "distributed.worker.profile.enabled": False}), interrupts_ignored():
            cluster = LocalCluster(n_workers=workers or usable_cores(), threads_per_worker=1, processes=True,
                                   dashboard_address=None, silence_logs=logging.CRITICAL)
        with cluster, Client(cluster) as client:
            client.register_plugin(one_thread_plugin())
            yield client
    finally:
        quiet.setLevel(level)


def one_thread_plugin():
    """A plugin that puts each local worker's libraries on one thread, as `threads_per_worker=1` means: a worker
    forked from the sweep's process inherits the thread pools torch and the BLAS set up there (the
    OMP_NUM_THREADS=1 Dask sets before starting a worker comes too late for libraries already loaded). It runs
    on every worker, a nanny's replacement for a lost one too."""
    from distributed import WorkerPlugin

    class OneThread(WorkerPlugin):
        def setup(self, worker) -> None:
            import sys

            from threadpoolctl import threadpool_limits

            if "torch" in sys.modules:
                sys.modules["torch"].set_num_threads(1)
            threadpool_limits(1)

    return OneThread()


@contextmanager
def interrupts_ignored() -> Iterator[None]:
    """Ctrl-C ignored while the local workers are started, so that they ignore it too (an ignored signal stays
    ignored in a child, and Python then installs no KeyboardInterrupt handler). A terminal sends Ctrl-C to
    the whole process group: the workers would each die with a traceback of their own, where the sweep's
    process is to stop them and print its one line."""
    if threading.current_thread() is not threading.main_thread():
        yield  # (only the main thread may set a handler: an API caller's thread leaves it as it is)
        return
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)


def run_dask(points: list[Point], write: Callable[[dict], None], seed: int, scheduler, workers: int | None,
             progress: SweepProgress | None = None) -> None:
    from distributed import as_completed

    with client_for(scheduler, workers) as client:
        order = heaviest_first(points)
        tasks: dict = {}  # future -> its point, while it runs
        finished = as_completed()
        done = bad = 0

        def record(row: dict) -> None:
            nonlocal done, bad
            write(row)
            done += 1
            bad += bool(row["error"])
            if progress:
                progress(done, running(client, len(tasks)), bad, len(points))

        for shape in dict.fromkeys(p.shape for p in order):  # the largest first, as the points
            mine = [(i, p) for i, p in enumerate(order) if p.shape == shape]
            try:
                # (in a list: a dict given alone is scattered as one piece of data per key)
                graph, = client.scatter([capture(*shape, seed)], broadcast=True, hash=False)
            except Exception as e:  # a shape that cannot be captured fails its points; the sweep goes on
                for _, p in mine:
                    record(failed(p, e))
                continue
            for i, p in mine:
                future = client.submit(cost_point, graph, p, pure=False, priority=len(order) - i)
                tasks[future] = p
                finished.add(future)
            graph.release()  # (the workers keep it until its points are done: then it goes)
            while finished.has_ready():  # rows of the shapes sent so far, while this process captures the next
                future = finished.next()
                record(outcome(future, tasks.pop(future)))
        for future in finished:
            record(outcome(future, tasks.pop(future)))


def outcome(future, point: Point) -> dict:
    """A finished task's row: its result, or the point's failed row (Dask's error, a lost worker's)."""
    if future.status == "finished":
        row = future.result()
    else:
        try:
            error = future.exception()
        except Exception as e:  # (a cancelled task has none: the cancellation is its error)
            error = e
        row = failed(point, error)
    future.release()
    return row


def running(client, left: int) -> int:
    """Points running now: each worker runs as many tasks at once as it has threads."""
    if not left:
        return 0
    busy = client.processing()
    threads = client.nthreads()
    return min(left, sum(min(len(keys), threads.get(w, 1)) for w, keys in busy.items()))
