"""GPU descriptions as data: one TOML file per part in ``isa/gpu/``, every number with its source.

The SIMT cost model (isa/simt_cost.py), the executors and the memory model (isa/simt_exec.py,
isa/simt_stepper.py, isa/simt_memory.py) and instruction selection (lowering/select.py: tiles and grids sized
to the GPU) read these; no number of a GPU is written anywhere else. A `Gpu` is a `Machine`
(isa/hardware.py). Conventions: latencies and bandwidths are in SM clock cycles at ``clock_ghz``;
``l2_bytes_per_cycle`` is the whole chip's; ``per_clock_per_sm`` is the CUDA C++ Programming Guide's
"results per clock cycle per multiprocessor" (thread-instructions), so a warp instruction occupies its pipe
for 32 / per_clock_per_sm cycles of one SM.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from functools import cache
from pathlib import Path
from types import MappingProxyType
from typing import Any, Mapping

from isasim.isa.hardware import Unit
from isasim.isa.datafile import MachineFileError, based, files, load, nonnegative, positive, required, text

GPU_DIR = Path(__file__).with_name("gpu")
PIPES = ("fp32", "int", "sfu", "conv", "lsu", "shuffle", "branch", "barrier", "tensor")


@dataclass(frozen=True)
class GpuInstr:
    pipe: str
    per_clock_per_sm: float
    latency: float
    source: str


@dataclass(frozen=True)
class Link:
    """How GPUs of one server reach each other for a collective: NCCL's all-reduce bus bandwidth at large
    messages (nccl-tests' busbw) and the time of a tiny all-reduce (its latency)."""

    name: str
    busbw_gb_s: float
    latency_us: float
    source: str

    def allreduce_seconds(self, nbytes: float, gpus: int) -> float:
        """An all-reduce of `nbytes` over `gpus`: a ring's 2(N-1) steps each move nbytes / N through every
        GPU's link, so 2(N-1)/N x nbytes at the bus bandwidth (nccl-tests' doc/PERFORMANCE.md defines busbw so
        that this holds), plus the latency of a tiny one."""
        if gpus < 2:
            return 0.0
        return 2 * (gpus - 1) / gpus * nbytes / (self.busbw_gb_s * 1e9) + self.latency_us * 1e-6


@dataclass(frozen=True)
class Gpu:
    name: str
    description: str
    ptx_target: str
    clock_ghz: float
    sms: int
    schedulers_per_sm: int
    warp_size: int
    max_warps_per_sm: int
    max_threads_per_sm: int
    max_blocks_per_sm: int
    max_threads_per_block: int
    registers_per_sm: int
    register_alloc_unit: int
    max_registers_per_thread: int
    shared_per_sm: int
    shared_per_block: int
    shared_reserved_per_block: int
    shared_banks: int
    shared_bank_bytes: int
    shared_bytes_per_cycle: float
    shared_latency: float
    sector_bytes: int
    l2_bytes: int
    l2_bytes_per_cycle: float
    l2_latency: float
    dram_gb_per_s: float
    dram_latency: float
    launch_overhead_us: float
    instructions: Mapping[str, GpuInstr]
    sources: tuple[str, ...]
    field_sources: Mapping[str, str]  # clock_source, sms_source, ... as written in the file
    links: Mapping[str, Link] = field(default_factory=lambda: MappingProxyType({}))  # nvlink, pcie: one server's
    gpus_per_server: int = 1

    isa = "ptx"

    def key(self) -> tuple:
        """Everything the cost model reads, hashable: a cache key that tells a modified copy (a test's one-SM
        A100) from the original."""
        return tuple(getattr(self, f.name) for f in fields(self) if f.name not in ("instructions", "sources",
                                                                                 "field_sources", "links")) \
            + tuple(sorted(self.instructions.items()))

    @property
    def dram_bytes_per_cycle(self) -> float:
        return self.dram_gb_per_s / self.clock_ghz

    def timing(self, mnemonic: str) -> GpuInstr:
        try:
            return self.instructions[mnemonic]
        except KeyError:
            raise KeyError(f"no timing for {mnemonic!r} on {self.name}; add it to isa/gpu/{self.name}.toml") from None

    def fp32_lanes(self) -> float:
        """FP32 FMA lanes per SM: what the peak FLOP rate is made of."""
        return self.timing("fma.rn.f32").per_clock_per_sm

    # ---- the Machine protocol (isa/hardware.py) ------------------------------------------------------
    def peak_ops_per_cycle(self, unit: Unit) -> float:
        """Every SM's rate: `unit.lanes` per thread-instruction, at the instruction's results per clock per SM."""
        return unit.ops * unit.lanes * self.timing(unit.instruction).per_clock_per_sm * self.sms

    def bytes_per_cycle(self, level: str) -> float:
        """Shared memory: one SM's; L2 and DRAM: the whole chip's."""
        return {"shared": self.shared_bytes_per_cycle, "l2": self.l2_bytes_per_cycle,
                "dram": self.dram_bytes_per_cycle}[level]

    def memory_levels(self) -> tuple[str, ...]:
        return ("shared", "l2", "dram")

    def sizes(self) -> Mapping[str, int]:
        """Every count and size of the description: SMs, warps, threads, blocks, registers, bytes."""
        return MappingProxyType({k: getattr(self, k) for k in _INT_KEYS})

    def summary(self) -> str:
        return (f"ptx {self.ptx_target}, {self.sms} SMs at {self.clock_ghz} GHz, {self.fp32_lanes():g} FP32 lanes "
                f"per SM, {self.dram_gb_per_s:g} GB/s")

    def source(self, quantity: str) -> str:
        """The source line of any number of the description (a field, a memory level, "clock", a link as
        "link nvlink"), or of an instruction's timing (its mnemonic)."""
        if quantity.startswith("link "):
            return self.links[quantity.removeprefix("link ")].source
        key = _FIELD_SOURCE.get(quantity) or _LEVEL_SOURCE.get(quantity)
        return self.field_sources[key] if key else self.timing(quantity).source


_INT_KEYS = ("sms", "schedulers_per_sm", "warp_size", "max_warps_per_sm", "max_threads_per_sm", "max_blocks_per_sm",
             "max_threads_per_block", "registers_per_sm", "register_alloc_unit", "max_registers_per_thread",
             "shared_per_sm", "shared_per_block", "shared_reserved_per_block", "shared_banks",
             "shared_bank_bytes", "sector_bytes", "l2_bytes")
_FLOAT_KEYS = ("clock_ghz", "shared_bytes_per_cycle", "shared_latency", "l2_bytes_per_cycle", "l2_latency",
               "dram_gb_per_s", "dram_latency", "launch_overhead_us")
# Every number of a GPU description, and the source line that documents it
_FIELD_SOURCE = {
    "gpus_per_server": "gpus_per_server_source",
    "clock_ghz": "clock_source", "sms": "sms_source", "schedulers_per_sm": "schedulers_source",
    **dict.fromkeys(("warp_size", "max_warps_per_sm", "max_threads_per_sm", "max_blocks_per_sm",
                     "max_threads_per_block"), "limits_source"),
    **dict.fromkeys(("registers_per_sm", "register_alloc_unit", "max_registers_per_thread"), "registers_source"),
    **dict.fromkeys(("shared_per_sm", "shared_per_block", "shared_reserved_per_block"), "shared_source"),
    **dict.fromkeys(("shared_banks", "shared_bank_bytes", "shared_bytes_per_cycle", "shared_latency"),
                    "banks_source"),
    "sector_bytes": "sector_source",
    **dict.fromkeys(("l2_bytes", "l2_bytes_per_cycle", "l2_latency"), "l2_source"),
    **dict.fromkeys(("dram_gb_per_s", "dram_latency"), "dram_source"),
    "launch_overhead_us": "launch_source",
}
_LEVEL_SOURCE = {"clock": "clock_source", "shared": "banks_source", "l2": "l2_source", "dram": "dram_source",
                 "launch": "launch_source"}
_SOURCE_KEYS = tuple(dict.fromkeys(_FIELD_SOURCE.values()))


def _number(t: Mapping[str, Any], key: str, kind, where: str) -> float:
    value = required(t, key, kind, where)
    return nonnegative(value, key, where) if key == "shared_reserved_per_block" else positive(value, key, where)


def parse_gpu(data: Mapping[str, Any], where: str) -> Gpu:
    instrs = {}
    for mn, t in required(data, "instructions", dict, where).items():
        here = f"{where} [instructions.\"{mn}\"]"
        pipe = text(t, "pipe", here)
        if pipe not in PIPES:
            raise MachineFileError(f"{here}: pipe must be one of {PIPES}, got {pipe!r}")
        instrs[mn] = GpuInstr(pipe, _number(t, "per_clock_per_sm", (int, float), here),
                              _number(t, "latency", (int, float), here), text(t, "source", here))
    return Gpu(
        name=text(data, "name", where), description=text(data, "description", where),
        ptx_target=text(data, "ptx_target", where),
        **{k: int(_number(data, k, int, where)) for k in _INT_KEYS},
        **{k: _number(data, k, (int, float), where) for k in _FLOAT_KEYS},
        instructions=MappingProxyType(instrs), sources=tuple(required(data, "sources", list, where)),
        field_sources=MappingProxyType({k: text(data, k, where) for k in _SOURCE_KEYS}),
        links=MappingProxyType({name: _parse_link(name, t, f"{where} [links.{name}]")
                                for name, t in required(data, "links", dict, where).items()}),
        gpus_per_server=int(_number(data, "gpus_per_server", int, where)))


def _parse_link(name: str, t: Mapping[str, Any], where: str) -> Link:
    return Link(name, _number(t, "busbw_gb_s", (int, float), where), _number(t, "latency_us", (int, float), where),
                text(t, "source", where))


@cache
def load_gpu(name: str) -> Gpu:
    return load(GPU_DIR, name, "GPU", lambda data, where: parse_gpu(based(data, where, GPU_DIR), where))


def gpu_names() -> tuple[str, ...]:
    return tuple(files(GPU_DIR))
