"""A kernel on many cores of one socket, or of a two-socket server: what `--cores N` costs and runs.

The kernel is cut into one chunk per core (lowering/split.py: a static split of one parallel loop, as ATen's
and oneDNN's OpenMP loops do), and each chunk is lowered and costed as the kernel it is, on a core of its
own. What the cores share is costed once, for the socket:
  - a core's own bound: its chunk's compute and its private L1 and L2 traffic, its reads from the LLC (whose
    bandwidth grows with the cores: a slice or a CCD's port per core) and its share of the DRAM traffic;
  - shared dram: the bytes the socket fetches from DRAM over its sustained bandwidth. Cores in one LLC domain
    fetch what they share (a GEMM's weight, read whole by every core that owns some of its rows) once: the
    socket's DRAM bytes are the one-core kernel's, once per LLC domain the cores fill, and never more than
    the chunks fetch apart;
  - sync: the fork and join of the parallel loop, which every kernel pays once (a sourced OpenMP figure).
More cores than one socket holds span the server's two sockets (cores numbered socket by socket, as
OMP_PLACES=cores with close binding places them). Their pages are taken to be interleaved across both
sockets' memory (`numactl --interleave=all`, what a run spanning the sockets is advised to use): each
socket's memory serves half of all the DRAM bytes, and half of each socket's own bytes come from the other
socket over the links between them (`remote dram`, at the uarch's `remote_gb_s`). A run within one socket
keeps its memory local (`numactl --membind`).
The kernel's cycles are the slowest core's, the shared DRAM's or the remote DRAM's, whichever is largest,
plus the sync. The bound that decides is named: a core's own (as on one core), `imbalance` where the slowest
core does much more than the average (12 heads over 8 cores: four cores run two heads, four run one),
`shared dram`, `remote dram`, or `sync`.

A kernel too small to pay for its fork stays on one core, as ATen keeps a loop shorter than its grain size
serial: of the split and the one-core run, the faster is chosen, and `run` executes the same choice.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, replace

from isasim.backends import backend_for
from isasim.isa.cost import KernelCost
from isasim.isa.errors import UserError
from isasim.isa.hardware import Bound, Machine
from isasim.isa.machine import Uarch
from isasim.isa.targets import Target
from isasim.lowering.kernel import Kernel
from isasim.lowering.split import Box, box_kernel, boxes, domain_boxes, grids

IMBALANCE = 1.2  # the slowest core over the average of all cores (idle ones count 0) that names the bound
MEMORY = ("l1", "l2", "llc", "dram")


@dataclass(frozen=True)
class Split:
    """How one kernel runs on the socket: its chunks (one per busy core; [kernel] on one core) and its cost."""

    chunks: tuple[Kernel, ...]
    cost: KernelCost


def cores_for(machine: Machine, cores: int | str) -> int:
    """`--cores N` (up to the server's sockets' cores) or `--cores all` (one socket's), on this machine, checked."""
    socket = getattr(machine, "socket", None)
    if socket is None:
        raise UserError(f"--cores splits a kernel across a CPU's cores: {machine.name} is a GPU, whose "
                        "parallelism is its grid; drop --cores or choose a CPU target")
    if cores == "all":
        return socket.cores
    most = socket.cores * socket.sockets
    if not isinstance(cores, int) or isinstance(cores, bool) or not 1 <= cores <= most:
        if socket.sockets == 1:
            raise UserError(f"--cores {cores} is out of range for {machine.name}: its socket ({socket.part}) has "
                            f"{socket.cores} cores; use 1..{socket.cores} or 'all'")
        raise UserError(f"--cores {cores} is out of range for {machine.name}: its server has {socket.sockets} "
                        f"sockets ({socket.part}) of {socket.cores} cores; use 1..{most}, or 'all' for one socket")
    return cores


def split_cost(kernel: Kernel, target: Target, machine: Uarch, cores: int, alone: KernelCost | None = None
               ) -> Split:
    """The fastest of `kernel` on one core (`alone`: its cost there, if known) and each way to share it among
    `cores` (lowering/split.py `grids`: a GEMM's rows, its columns, or blocks of both)."""
    backend = backend_for(target)
    memo: dict[tuple, KernelCost] = {}

    def cost(box: Box) -> KernelCost:
        """A box's cost; boxes of one shape differ only in where they start, so one is costed."""
        shape = tuple((v, size) for v, _, size in box)
        if shape not in memo:
            memo[shape] = backend.cost(backend.select(box_kernel(kernel, box), target, machine), machine)
        return memo[shape]

    best = Split((kernel,), alone or backend.cost(backend.select(kernel, target, machine), machine))
    for grid in grids(kernel, cores):
        chunks = boxes(kernel, grid)
        if len(chunks) < 2:
            continue
        # what one LLC domain's cores fetch from DRAM together: what one core running all their chunks would
        dram = [0.0] * machine.socket.sockets  # per socket: its domains' (a domain lies in one socket)
        for i, domain in enumerate(domain_boxes(kernel, grid, machine.socket.llc_cores)):
            dram[i * machine.socket.llc_cores // machine.socket.cores] += sum(cost(b).bytes["dram"] for b in domain)
        together = socket_cost(kernel.name, [cost(box) for box in chunks], dram, kernel.flops, machine, cores)
        if together.cycles < best.cost.cycles:
            best = Split(tuple(box_kernel(kernel, box) for box in chunks), together)
    return best


def core_shards(target: Target, machine: Uarch, cores: int):
    """Each step's chunks as `split_cost` chooses them, for engine/run.py `run_graph(shards=...)`; chosen once
    per kernel, so the executor's run and the machine code's run the same chunks (None: one core)."""
    chosen: dict[str, tuple[Kernel, ...]] = {}

    def of(step) -> tuple[list[Kernel], bool] | None:
        kernel = step.kernel
        if kernel.name not in chosen:
            chosen[kernel.name] = split_cost(kernel, target, machine, cores).chunks
        chunks = chosen[kernel.name]
        return (list(chunks), False) if len(chunks) > 1 else None

    return of


def socket_cost(name: str, chunks: list[KernelCost], per_socket: list[float], flops: int, machine: Uarch,
                cores: int) -> KernelCost:
    """The kernel's cost with each of `chunks` on a core of its own (see the module docstring); `per_socket`:
    the bytes each socket's cores fetch from DRAM for them all, `flops` the whole kernel's."""
    socket, clock = machine.socket, machine.clock_ghz
    dram = sum(per_socket)
    used = -(-cores // socket.cores)  # sockets the run spans: its memory is interleaved across theirs
    apart = sum(c.bytes["dram"] for c in chunks)
    per_core_dram = machine.level("dram").bytes_per_cycle
    own = []
    for c in chunks:  # each core's bound, with its share of the socket's DRAM traffic
        mine = dram * c.bytes["dram"] / apart if apart else 0.0
        bounds = tuple(replace(b, cycles=mine / per_core_dram) if b.kind == "dram" else b for b in c.bounds)
        slowest = max(bounds, key=lambda b: b.cycles)
        # where compute decides, the bound that decided it inside (a port group, a latency chain), if the chunk
        # names one (a chunk that a memory level decided alone named that level instead)
        decided = c.bound if slowest.kind == "compute" and c.bound.kind not in MEMORY else slowest
        own.append((slowest.cycles, decided, bounds, c))
    core_cycles, core_bound, core_bounds, slowest_chunk = max(own, key=lambda o: o[0])
    if core_cycles > IMBALANCE * sum(o[0] for o in own) / cores:
        core_bound = Bound("imbalance", core_cycles, core_bound.label)
    else:
        core_bound = replace(core_bound, cycles=core_cycles)
    shared = Bound("shared dram", dram / used / (socket.dram_gb_s / clock))
    remote = Bound("remote dram", max(per_socket) * (used - 1) / used / (socket.remote_gb_s / clock)
                   if used > 1 else 0.0)
    sync = Bound("sync", socket.fork_join_cycles(len(chunks), clock))
    cycles = max(core_cycles, shared.cycles, remote.cycles) + sync.cycles
    deciding = max((core_bound, shared, remote, sync), key=lambda b: b.cycles)
    mnemonics: Counter = Counter()
    for c in chunks:
        mnemonics.update(c.by_mnemonic)
    nbytes = {lv: sum(c.bytes[lv] for c in chunks) for lv in ("l1", "l2", "llc")}
    return KernelCost(name, sum(c.instructions for c in chunks), dict(mnemonics), cycles,
                      replace(deciding, cycles=cycles), core_bounds + (shared, *([remote] if used > 1 else []), sync),
                      {**nbytes, "dram": int(dram)},
                      flops, sum(c.fp_ops for c in chunks), slowest_chunk.inner_loop)
