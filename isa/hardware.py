"""What isasim asks of any machine, CPU core or GPU alike, and the typed bound a cost names.

A `Machine` is data (isa/uarch/*.toml for CPU cores, isa/gpu/*.toml for GPUs; isa/machine.py and isa/gpu.py
parse them): its clock, the peak rate of an execution unit, the bandwidth of each memory level, the sizes of
its storage, and the source of every one of those numbers. The engine and the reports use only this protocol,
so a comparison table or a roofline never asks which kind of machine it is looking at.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping, Protocol, runtime_checkable

# Every limiter a cost may name. CPU blocks are decided by a port group, the issue width, a loop-carried
# latency chain or the out-of-order window; CPU kernels by their compute or a memory level. GPU kernels by issue, a pipe, shared-memory
# wavefronts, L2 or DRAM bandwidth, one warp's latency chain, or the launch overhead. A kernel split over many
# cores (engine/cores.py) also by its slowest core's share ("imbalance"), the socket's DRAM bandwidth ("shared
# dram") or the fork and join of its parallel loop ("sync"); an all-reduce between GPUs by their "link".
BOUND_KINDS = ("compute", "port", "issue", "latency", "window", "l1", "l2", "llc", "dram", "pipe", "shared",
               "launch", "imbalance", "shared dram", "remote dram", "sync", "link")


@dataclass(frozen=True)
class Bound:
    """A limit on a block's or a kernel's cycles: its kind (one of BOUND_KINDS), where it applies (the port
    group of a "port" bound, the pipe of a "pipe" bound; empty otherwise) and the cycles it alone would take."""

    kind: str
    cycles: float
    where: str = ""

    def __post_init__(self) -> None:
        if self.kind not in BOUND_KINDS:
            raise ValueError(f"unknown bound kind {self.kind!r}: one of {BOUND_KINDS}")

    @property
    def label(self) -> str:
        """How reports name it: "latency", "port p01", "pipe lsu"."""
        return f"{self.kind} {self.where}" if self.where else self.kind

    def __str__(self) -> str:
        return self.label


def decider(bounds: tuple[Bound, ...]) -> Bound:
    """The bound with the most cycles; the first of them on a tie."""
    return max(bounds, key=lambda b: b.cycles)


@dataclass(frozen=True)
class Unit:
    """An execution unit's widest arithmetic instruction: its timing key, how many lanes one instruction works on
    (per thread, on a GPU) and operations per lane (an FMA: 2)."""

    instruction: str
    lanes: int = 1
    ops: int = 2


@runtime_checkable
class Machine(Protocol):
    """A CPU core (isa/machine.py `Uarch`) or a GPU (isa/gpu.py `Gpu`)."""

    name: str
    isa: str  # the instruction set its targets emit: "x86-64", "aarch64" or "ptx"
    description: str
    clock_ghz: float
    sources: tuple[str, ...]  # the references its numbers come from

    def peak_ops_per_cycle(self, unit: Unit) -> float:
        """Operations per clock cycle when `unit` runs flat out: one core, or every SM of a GPU."""
        ...

    def bytes_per_cycle(self, level: str) -> float:
        """Sustainable bandwidth of a memory level (one of `memory_levels()`), bytes per clock cycle."""
        ...

    def memory_levels(self) -> tuple[str, ...]:
        """Its memory levels, nearest first."""
        ...

    def sizes(self) -> Mapping[str, int]:
        """Registers, caches, warps, shared memory: whatever this machine has, by name."""
        ...

    def source(self, quantity: str) -> str:
        """Where a number comes from: "clock", a level's name, a size's name, or an instruction's timing key."""
        ...

    def summary(self) -> str:
        """Its headline numbers in one line, for `isasim targets`."""
        ...
