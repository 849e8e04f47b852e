"""`host`: the model's predictions against this machine. Every kernel's emitted machine code runs natively,
warm, best of several calls, next to the time isasim predicts for it at the host's measured clock on the
described microarchitecture nearest to the host's core (isa/hostcpu.py).

Timing runs in rounds over every kernel, a warm-up call and the best of CALLS timed calls each, and the clock
is measured again around them: a shared or power-managed host moves its clock by 10% and more within seconds
(2.7-3.0 GHz on the Zen 3 this was built on) and has slow spells. A kernel's figure is its fewest cycles (time
x the clock around it) over the rounds."""

from __future__ import annotations

import statistics
import time
from dataclasses import dataclass

from isasim.backends import backend_for
from isasim.engine.targets import Progress
from isasim.isa import native
from isasim.isa.emit import symbol
from isasim.isa.errors import UserError
from isasim.isa.hardware import Machine
from isasim.isa.hostcpu import Clock, HostCpu, clock_now
from isasim.isa.targets import Target
from isasim.lowering.kernel import canonical
from isasim.lowering.pipeline import LoweredGraph
from isasim.report import ModelReport

SHARE = 0.01  # kernels below this share of the measured forward are timed but left out of the median
# timed calls per kernel in each round, after one warm-up call: on the Zen 3 host a kernel called once after the
# clock's integer chain ran up to 1.6x slower than from its third call on (attention's P.V: 440 against 270 us)
CALLS = 3


@dataclass
class KernelTiming:
    name: str  # the first node whose kernel this is
    op: str
    shape: list[int]
    calls: int  # identical kernels in the forward (the same op in every layer)
    predicted_s: float  # one call
    measured_s: float
    ratio: float  # measured / predicted
    bound: str  # the deciding bound the model names
    share: float  # of the forward's measured time, all calls together
    clock_ghz: float  # measured around the fastest call (the faster of before and after): predicted_s uses it


@dataclass
class HostTarget:
    target: str
    uarch: str
    clock_ghz: float
    kernels: list[KernelTiming]
    median_error: float  # median |ratio - 1| over kernels with at least SHARE of the forward
    weighted_error: float  # sum |measured - predicted| / sum measured, every call counted
    forward_ratio: float  # the forward's measured time / its predicted time
    call_overhead_s: float  # of one ctypes call, taken off every measurement


@dataclass
class HostReport(ModelReport):
    host: dict
    targets: list[HostTarget]

    def records(self) -> list[dict]:
        """One row per kernel and target."""
        return [{"target": t.target, "uarch": t.uarch, **k.__dict__} for t in self.targets for k in t.kernels]


def best_of(fn, repeat: int) -> float:
    """The fastest of `repeat` calls, in seconds."""
    best = float("inf")
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - start)
    return best


def _timer(program, target: Target, machine: Machine):
    """A function that calls the program's machine code once, on buffers of ones (inputs) and zeros, each
    starting a cache line as a PyTorch tensor does (native.aligned)."""
    buffers = [native.aligned(b.size, b.dtype.numpy, 0 if b.is_output else 1) for b in program.buffers]
    asm, sym = backend_for(target).emit(program, target, machine), symbol(program.name)
    if target.isa != "x86-64":
        raise UserError(f"isasim host times x86-64 machine code; {target.name} is {target.isa}")
    native.run_x86_64(asm, sym, buffers, isolate=True)  # once in a child: a crash must not take this process down
    return native.x86_64_call(asm, sym, buffers)


def time_target(lowered: LoweredGraph, target: Target, machine: Machine, clock: Clock, repeat: int = 5,
                progress: Progress | None = None) -> HostTarget:
    backend = backend_for(target)
    steps = [s for s in lowered.steps if s.kernel is not None]
    groups: dict = {}  # identical kernels (the same op in every layer) are timed once
    for s in steps:
        groups.setdefault(canonical(s.kernel), []).append(s)
    tiny = min(steps, key=lambda s: sum(b.size for b in s.kernel.buffers))
    empty = _timer(backend.select(tiny.kernel, target, machine), target, machine)
    empty()
    overhead = best_of(empty, 20)
    programs = [backend.select(members[0].kernel, target, machine) for members in groups.values()]
    calls = [_timer(p, target, machine) for p in programs]
    best = [(float("inf"), 0.0)] * len(calls)  # per kernel: (cycles, clock in GHz) of its fastest call
    for r in range(repeat):  # rounds over every kernel, so a slow spell of the host spoils one round, not a kernel
        for i, call in enumerate(calls):
            before = clock_now()
            call()  # warm: caches, pages and the vector units, after the kernel before it
            seconds = max(best_of(call, CALLS) - overhead, 1e-9)
            ghz = max(before, clock_now())
            best[i] = min(best[i], (seconds * ghz * 1e9, ghz))
            if progress:
                progress(f"timing {target.name} kernels", r * len(calls) + i + 1, repeat * len(calls))
    timings = []
    for members, program, (cycles, ghz) in zip(groups.values(), programs, best):
        cost = backend.cost(program, machine)
        node = members[0].node
        predicted, measured = max(cost.cycles, 1e-3) / (ghz * 1e9), cycles / (ghz * 1e9)
        timings.append(KernelTiming(node.name, node.op.removeprefix("aten.").removeprefix("isasim."),
                                    list(node.out.shape), len(members),
                                    predicted, measured, measured / predicted, cost.bound.label, 0.0,
                                    round(ghz, 3)))
    forward_measured = sum(k.measured_s * k.calls for k in timings)
    forward_predicted = sum(k.predicted_s * k.calls for k in timings)
    for k in timings:
        k.share = k.measured_s * k.calls / forward_measured
    big = [k for k in timings if k.share >= SHARE]
    timings.sort(key=lambda k: -k.share)
    return HostTarget(target.name, machine.name, clock.ghz, timings,
                      statistics.median(abs(k.ratio - 1) for k in big) if big else 0.0,
                      sum(abs(k.measured_s - k.predicted_s) * k.calls for k in timings) / forward_measured,
                      forward_measured / forward_predicted, overhead)


def host(lowered: LoweredGraph, targets: list[tuple[Target, Machine]], cpu: HostCpu, clock: Clock,
         repeat: int = 5, progress: Progress | None = None) -> HostReport:
    out = [time_target(lowered, t, m, clock, repeat, progress) for t, m in targets]
    cfg = lowered.graph.config
    return HostReport(cfg.get("model", lowered.graph.model), cfg.get("seq", 0), cfg.get("batch", 0),
                      {**cpu.to_dict(), "clock": clock.to_dict()}, out)
