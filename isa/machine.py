"""Microarchitecture descriptions as data: one TOML file per core in ``isa/uarch/``.

Every number in those files carries its source (docs/design.md, "Hardware is data"); this module only parses and
checks them into frozen dataclasses. Nothing here knows a hardware number.

Conventions the TOML files follow (and the checks below enforce where they can):

* ``InstrTiming.latency``: cycles from operands ready to result usable by a dependent instruction.
  For loads it is the L1-hit load-to-use latency; for stores it is not consumed by a chain.
* ``InstrTiming.rthroughput``: reciprocal throughput in cycles per instruction when many independent
  copies run (the authoritative throughput number; ``ports`` say where the pressure lands).
* ``InstrTiming.ports``: the execution ports (each named in ``Uarch.ports``) any of the
  instruction's micro-ops may issue to, as a union over its micro-ops.
* ``InstrTiming.uops``: the slots the instruction takes in the ``issue_width`` budget: fused-domain
  micro-ops on Intel, macro-ops on AMD, MOPs on Arm.
* ``MemLevel.bytes_per_cycle``: sustainable bandwidth from that level to ONE core, in core cycles.
  DRAM's is a single-core sustainable bandwidth (GB/s) divided by ``clock_ghz``.
* A description models ONE core running alone (the simulator runs one thread). ``MemLevel.size`` is
  what that core can hold: private L1D/L2 as built, and for the shared LLC everything the core can
  reach (the whole L3 or system-level cache; on Zen 4 its own CCD's L3). With all cores busy a core
  gets only its share (total / cores); each file's source line gives that number too. Note the
  Neoverse SLCs are mostly exclusive of L2, so their reach adds to the L2's.
* ``MemLevel.latency`` is the scalar integer pointer-chase load-to-use latency of a hit in that level.
* ``features``: the instruction-set extensions the core has, named as Linux's /proc/cpuinfo flags name them
  (a target's ``host_features`` must be among them for the target to run on the core: no AVX-512 on Zen 3).
* ``reorder_buffer``: micro-ops the core holds in flight, dispatch to retirement. ``scheduler``: the entries
  that hold micro-ops waiting for their operands where the vector/FP work waits (Intel's unified
  reservation station; AMD's FP scheduler; Arm's issue queues for the vector pipes, together). Both bound
  how far independent loop trips overlap (isa/cost.py, the window bound).
* ``[socket]``: the chip a core sits in, for `--cores` (engine/cores.py): a representative part, its cores,
  how many of them share one last-level cache (an AMD CCD's 8; every core of an Intel mesh or an Arm SLC),
  the socket's sustained DRAM bandwidth (a STREAM-class measurement where one is published, GB/s), and what
  one OpenMP parallel loop's fork and join costs: ``fork_join_ns`` at 2 cores plus ``fork_join_ns_per_doubling``
  for each doubling beyond (a barrier's tree grows with log2 of the threads). Optionally ``sockets``, those
  of the server the part is sold in (default 1), with ``remote_gb_s``, what the links between two sockets
  carry each way (Intel's UPI), and ``sockets_source``: `--cores` beyond one socket's count then spans them.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from types import MappingProxyType
from typing import Any, Mapping

from isasim.isa.datafile import MachineFileError, based, files, load, nonnegative, positive, required, text
from isasim.isa.errors import UserError
from isasim.isa.hardware import Unit

UARCH_DIR = Path(__file__).with_name("uarch")
ISAS = ("x86-64", "aarch64")
LEVEL_NAMES = ("l1", "l2", "llc", "dram")


@dataclass(frozen=True)
class InstrTiming:
    latency: float
    rthroughput: float
    ports: tuple[str, ...]
    uops: int
    source: str


@dataclass(frozen=True)
class MemLevel:
    name: str  # one of LEVEL_NAMES
    size: int | None  # bytes per core (see module docstring); None for DRAM
    assoc: int | None
    line: int
    bytes_per_cycle: float
    latency: float
    source: str


@dataclass(frozen=True)
class Socket:
    part: str
    cores: int
    llc_cores: int  # cores that share one last-level cache
    dram_gb_s: float  # sustained, all cores reading
    fork_join_ns: float  # one parallel loop's fork and join on 2 cores
    fork_join_ns_per_doubling: float
    cores_source: str
    dram_source: str
    fork_join_source: str
    sockets: int = 1  # of the server: --cores up to sockets x cores
    remote_gb_s: float = 0.0  # between two sockets, each way
    sockets_source: str = ""

    def fork_join_cycles(self, cores: int, clock_ghz: float) -> float:
        """Cycles one parallel loop over `cores` threads spends starting them and waiting at its join."""
        if cores < 2:
            return 0.0
        return (self.fork_join_ns + self.fork_join_ns_per_doubling * math.log2(cores / 2)) * clock_ghz


@dataclass(frozen=True)
class Uarch:
    name: str
    isa: str  # "x86-64" | "aarch64"
    clock_ghz: float
    issue_width: int
    ports: tuple[str, ...]
    levels: tuple[MemLevel, ...]
    instructions: Mapping[str, InstrTiming]
    sources: tuple[str, ...]
    description: str
    clock_source: str
    issue_width_source: str
    features: tuple[str, ...]
    features_source: str
    reorder_buffer: int
    reorder_buffer_source: str
    scheduler: int
    scheduler_source: str
    socket: Socket
    fuses_sub_branch: bool = False  # `sub r, imm; jnz` (a loop latch) issues as one macro-fused uop
    fusion_source: str = ""

    def timing(self, mnemonic: str) -> InstrTiming:
        try:
            return self.instructions[mnemonic]
        except KeyError:
            raise KeyError(
                f"no timing for {mnemonic!r} on {self.name} ({self.isa}); "
                f"add it to isa/uarch/{self.name}.toml"
            ) from None

    def lacks(self, features: tuple[str, ...]) -> list[str]:
        """Which of `features` (cpuinfo flag names) this core does not have."""
        return [f for f in features if f not in self.features]

    def level(self, name: str) -> MemLevel:
        for lvl in self.levels:
            if lvl.name == name:
                return lvl
        raise KeyError(f"{self.name} has no memory level {name!r}")

    # ---- the Machine protocol (isa/hardware.py) ------------------------------------------------------
    def peak_ops_per_cycle(self, unit: Unit) -> float:
        return unit.ops * unit.lanes / self.timing(unit.instruction).rthroughput

    def bytes_per_cycle(self, level: str) -> float:
        return self.level(level).bytes_per_cycle

    def memory_levels(self) -> tuple[str, ...]:
        return tuple(lvl.name for lvl in self.levels)

    def sizes(self) -> Mapping[str, int]:
        """Bytes each cache level holds for this core (see the module docstring), and the cache line."""
        out = {lvl.name: lvl.size for lvl in self.levels if lvl.size is not None}
        out["line"] = self.levels[0].line
        return MappingProxyType(out)

    def summary(self) -> str:
        fusion = ", sub+jnz macro-fused" if self.fuses_sub_branch else ""
        return f"{self.isa}, {self.clock_ghz} GHz, issue width {self.issue_width}{fusion}"

    def source(self, quantity: str) -> str:
        """The source line of a number: "clock" (or "clock_ghz"), "issue_width", "reorder_buffer",
        "scheduler", "features", a memory level (its size,
        bandwidth and latency), "line", or an instruction's timing key."""
        if quantity in ("clock", "clock_ghz"):
            return self.clock_source
        if quantity == "issue_width":
            return self.issue_width_source
        if quantity == "features":
            return self.features_source
        if quantity == "reorder_buffer":
            return self.reorder_buffer_source
        if quantity == "scheduler":
            return self.scheduler_source
        if quantity in LEVEL_NAMES:
            return self.level(quantity).source
        if quantity == "line":
            return self.levels[0].source
        if quantity in ("cores", "socket"):
            return self.socket.cores_source
        if quantity == "socket dram":
            return self.socket.dram_source
        if quantity == "fork_join":
            return self.socket.fork_join_source
        if quantity == "sockets":
            return self.socket.sockets_source
        return self.timing(quantity).source


def _parse_instr(mnemonic: str, t: Mapping[str, Any], ports: tuple[str, ...], where: str) -> InstrTiming:
    here = f"{where} [instructions.{mnemonic}]"
    used = tuple(required(t, "ports", list, here))
    unknown = [p for p in used if p not in ports]
    if unknown:
        raise MachineFileError(f"{here}: ports {used} must be among {ports}")
    uops = required(t, "uops", int, here)
    if uops < 1:
        raise MachineFileError(f"{here}: uops must be >= 1")
    return InstrTiming(
        # a move eliminated at rename has latency 0 and uses no port (ports = []), only an issue slot
        latency=float(nonnegative(required(t, "latency", (int, float), here), "latency", here)),
        rthroughput=positive(required(t, "rthroughput", (int, float), here), "rthroughput", here),
        ports=used,
        uops=uops,
        source=text(t, "source", here),
    )


def _parse_level(t: Mapping[str, Any], where: str) -> MemLevel:
    name = required(t, "name", str, where)
    here = f"{where} [[levels]] {name}"
    size = t.get("size")
    assoc = t.get("assoc")
    if name != "dram":
        size = int(positive(required(t, "size", int, here), "size", here))
        assoc = int(positive(required(t, "assoc", int, here), "assoc", here))
    return MemLevel(
        name=name,
        size=size,
        assoc=assoc,
        line=int(positive(required(t, "line", int, here), "line", here)),
        bytes_per_cycle=positive(required(t, "bytes_per_cycle", (int, float), here), "bytes_per_cycle", here),
        # a move eliminated at rename has latency 0 and uses no port (ports = []), only an issue slot
        latency=float(nonnegative(required(t, "latency", (int, float), here), "latency", here)),
        source=text(t, "source", here),
    )


def _parse_socket(t: Mapping[str, Any], where: str) -> Socket:
    here = f"{where} [socket]"
    cores = int(positive(required(t, "cores", int, here), "cores", here))
    llc_cores = int(positive(required(t, "llc_cores", int, here), "llc_cores", here))
    if cores % llc_cores:
        raise MachineFileError(f"{here}: cores ({cores}) must be a multiple of llc_cores ({llc_cores})")
    return Socket(
        part=text(t, "part", here), cores=cores, llc_cores=llc_cores,
        dram_gb_s=positive(required(t, "dram_gb_s", (int, float), here), "dram_gb_s", here),
        fork_join_ns=positive(required(t, "fork_join_ns", (int, float), here), "fork_join_ns", here),
        fork_join_ns_per_doubling=nonnegative(required(t, "fork_join_ns_per_doubling", (int, float), here),
                                              "fork_join_ns_per_doubling", here),
        cores_source=text(t, "cores_source", here), dram_source=text(t, "dram_source", here),
        fork_join_source=text(t, "fork_join_source", here), **_sockets(t, here))


def _sockets(t: Mapping[str, Any], here: str) -> dict:
    """The optional sockets of the server, and the links between them."""
    if "sockets" not in t:
        return {}
    sockets = int(positive(required(t, "sockets", int, here), "sockets", here))
    if sockets not in (1, 2):
        raise MachineFileError(f"{here}: sockets must be 1 or 2 (isasim models servers of one or two sockets)")
    if sockets == 1:
        return {}
    return {"sockets": sockets, "sockets_source": text(t, "sockets_source", here),
            "remote_gb_s": positive(required(t, "remote_gb_s", (int, float), here), "remote_gb_s", here)}


def parse_uarch(data: Mapping[str, Any], where: str) -> Uarch:
    """Build and check a Uarch from parsed TOML (``where`` names the file in error messages)."""
    isa = required(data, "isa", str, where)
    if isa not in ISAS:
        raise MachineFileError(f"{where}: isa must be one of {ISAS}, got {isa!r}")
    ports = tuple(required(data, "ports", list, where))
    if not ports or len(set(ports)) != len(ports):
        raise MachineFileError(f"{where}: ports must be non-empty and unique")
    levels = tuple(_parse_level(t, where) for t in required(data, "levels", list, where))
    if tuple(lvl.name for lvl in levels) != LEVEL_NAMES:
        raise MachineFileError(f"{where}: levels must be {LEVEL_NAMES} in that order")
    instrs = required(data, "instructions", dict, where)
    timings = {m: _parse_instr(m, t, ports, where) for m, t in instrs.items()}
    sources = tuple(required(data, "sources", list, where))
    if not sources:
        raise MachineFileError(f"{where}: sources must list the references used")
    return Uarch(
        name=required(data, "name", str, where),
        isa=isa,
        clock_ghz=positive(required(data, "clock_ghz", (int, float), where), "clock_ghz", where),
        issue_width=int(positive(required(data, "issue_width", int, where), "issue_width", where)),
        ports=ports,
        levels=levels,
        instructions=MappingProxyType(timings),
        sources=sources,
        description=required(data, "description", str, where).strip(),
        clock_source=text(data, "clock_source", where),
        issue_width_source=text(data, "issue_width_source", where),
        features=tuple(required(data, "features", list, where)),
        features_source=text(data, "features_source", where),
        reorder_buffer=int(positive(required(data, "reorder_buffer", int, where), "reorder_buffer", where)),
        reorder_buffer_source=text(data, "reorder_buffer_source", where),
        scheduler=int(positive(required(data, "scheduler", int, where), "scheduler", where)),
        scheduler_source=text(data, "scheduler_source", where),
        socket=_parse_socket(required(data, "socket", dict, where), where),
        fuses_sub_branch=bool(data.get("fuses_sub_branch", False)),
        fusion_source=text(data, "fusion_source", where) if data.get("fuses_sub_branch") else "",
    )


@cache
def load_uarch(name: str) -> Uarch:
    """The microarchitecture called ``name`` (a file stem in isa/uarch/); cached."""
    return load(UARCH_DIR, name, "microarchitecture", lambda data, where: parse_uarch(based(data, where, UARCH_DIR),
                                                                                     where))


def uarch_names(isa: str | None = None) -> tuple[str, ...]:
    """Names of the described microarchitectures, optionally only those of one ISA."""
    if isa is not None and isa not in ISAS:
        raise UserError(f"unknown ISA {isa!r}: choose one of {', '.join(ISAS)}")
    names = tuple(files(UARCH_DIR))
    if isa is None:
        return names
    return tuple(n for n in names if load_uarch(n).isa == isa)
