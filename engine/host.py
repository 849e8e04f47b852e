"""`host`: the model's predictions against this machine. Every kernel's emitted machine code runs natively,
warm, best of several calls, next to the time isasim predicts for it at the host's measured clock on the
described microarchitecture nearest to the host's core (isa/hostcpu.py)."""

from __future__ import annotations

import statistics
import time
from dataclasses import dataclass

import numpy as np

from isasim.backends import backend_for
from isasim.engine.targets import Progress
from isasim.isa import native
from isasim.isa.emit import symbol
from isasim.isa.errors import UserError
from isasim.isa.hardware import Machine
from isasim.isa.hostcpu import Clock, HostCpu
from isasim.isa.targets import Target
from isasim.lowering.kernel import canonical
from isasim.lowering.pipeline import LoweredGraph
from isasim.report import ModelReport

SHARE = 0.01  # kernels below this share of the measured forward are timed but left out of the median


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
    """A function that calls the program's machine code once, on buffers of ones (inputs) and zeros."""
    buffers = [np.zeros(b.size, b.dtype.numpy) if b.is_output else np.ones(b.size, b.dtype.numpy)
               for b in program.buffers]
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
    hz = clock.ghz * 1e9
    timings = []
    for i, members in enumerate(groups.values()):
        program = backend.select(members[0].kernel, target, machine)
        cost = backend.cost(program, machine)
        call = _timer(program, target, machine)
        call()  # warm: caches and pages
        measured = max(best_of(call, repeat) - overhead, 1e-9)
        predicted = max(cost.cycles / hz, 1e-12)
        node = members[0].node
        timings.append(KernelTiming(node.name, node.op.removeprefix("aten."), list(node.out.shape), len(members),
                                    predicted, measured, measured / predicted, cost.bound.label, 0.0))
        if progress:
            progress(f"timing {target.name} kernels", i + 1, len(groups))
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
