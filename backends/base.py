"""What isasim does with one kind of machine, in one interface: select, cost, count, execute, step, emit and
explain, all over the one Program type (isa/program.py). A SIMT program differs only in carrying its launch
geometry (`Program.launch`).

Everything above this layer (the engine, the API, the CLI) asks a target's backend, never which kind of
machine the target is. backends/__init__.py holds the registry.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from pathlib import Path

import numpy as np

from isasim.isa.cost import KernelCost
from isasim.isa.hardware import Machine
from isasim.isa.machine_state import Events, Memory
from isasim.isa.program import Program
from isasim.isa.targets import Target
from isasim.lowering.kernel import Kernel

Storages = dict[str, np.ndarray]  # every tensor's flat storage, by name


def load_memory(program: Program, storages: Storages) -> Memory:
    """The program's buffers placed in memory, its inputs filled from `storages`."""
    mem = Memory(program.buffers)
    for b in program.buffers:
        if not b.is_output:
            mem.write(b.name, storages[b.name])
    return mem


def store_outputs(program: Program, mem: Memory, storages: Storages) -> None:
    for b in program.buffers:
        if b.is_output:
            storages[b.name] = mem.read(b.name)


def arguments(program: Program) -> list[dict]:
    """The kernel's buffers as an emitted file's manifest lists them, in argument order."""
    return [{"name": b.name, "dtype": b.dtype.value, "elements": b.size,
             "role": "output" if b.is_output else "input"} for b in program.buffers]


class Backend(ABC):
    kind: str  # for people: "scalar CPU", "SIMD CPU", "SIMT GPU"
    file_suffix: str  # of an emitted kernel

    @abstractmethod
    def accepts(self, target: Target) -> bool:
        """Whether the target has the capabilities this backend lowers to."""

    @abstractmethod
    def machine_names(self, target: Target, precision: str = "fp32") -> tuple[str, ...]:
        """The machines (CPU cores or GPUs) this target's timing can come from, in `precision`."""

    @abstractmethod
    def all_machine_names(self) -> tuple[str, ...]:
        """Every machine of this kind that is described."""

    @abstractmethod
    def load_machine(self, name: str) -> Machine:
        """A machine by one of the names `machine_names` gives."""

    @abstractmethod
    def select(self, kernel: Kernel, target: Target, machine: Machine | None = None) -> Program:
        """Lower one kernel; the machine may shape the program (a GPU's tile sizes and grid)."""

    @abstractmethod
    def cost(self, program: Program, machine: Machine) -> KernelCost:
        """Exact counts, cycles as the largest named bound, and bytes per memory level."""

    @abstractmethod
    def counts(self, program: Program, machine: Machine) -> dict[str, int]:
        """What the executor must count: instructions per mnemonic (warp instructions on SIMT)."""

    @abstractmethod
    def execute(self, program: Program, mem: Memory, machine: Machine) -> Events:
        """Run the program on its buffers in `mem` (load_memory) in the batched executor; what it counted."""

    @abstractmethod
    def step(self, program: Program, mem: Memory, machine: Machine) -> Events:
        """The same, one instruction (one warp) at a time: the reference the executor must match bit for bit."""

    @abstractmethod
    def emit(self, program: Program, target: Target, machine: Machine) -> str:
        """The program as a file the real toolchain accepts (GNU as, ptxas)."""

    @abstractmethod
    def manifest_entry(self, program: Program, cost: KernelCost, path: Path, machine: Machine) -> dict:
        """What the manifest says of the kernel emitted to `path`, beyond its name and file: how to call it,
        what it costs (and, for PTX, what ptxas says of it)."""

    @abstractmethod
    def manifest_header(self, target: Target, machine: Machine) -> dict:
        """What an emitted model's manifest says about calling its kernels."""

    @abstractmethod
    def explain(self, program: Program, node, target: Target, machine: Machine, iterations: int):
        """One kernel taught: its hottest code, what each instruction costs, what decides, what would move it."""

    @abstractmethod
    def can_run_native(self, target: Target, precision: str = "fp32", machine: Machine | None = None
                       ) -> str | None:
        """None when this host can run the target's emitted code in `precision`, made for `machine`
        (natively or under an emulator); else why not, in a few words."""

    def run_native(self, program: Program, target: Target, storages: Storages, into: bool = False) -> None:
        """Run the emitted code itself, writing its outputs back (where `can_run_native` allows); `into`: the
        outputs start as `storages` holds them, for a chunk that writes its share."""
        raise NotImplementedError(f"{self.kind} code does not run on this host")
