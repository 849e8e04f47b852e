"""One point of a sweep: its configuration (`Point`), its shape's graph (`capture`) and its row (`cost_point`).

A row holds the totals `isasim trace` reports for the point (engine/trace.py): instructions, cycles, seconds,
bytes per memory level, the kind of bound that decided the most cycles, and each op family's share of the
cycles (the families `compare` groups ops by). These functions run wherever the point runs: in the sweep's own
process (--serial), or as tasks on a Dask worker (engine/sweep_dask.py), which receive the graph as JSON data.
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass
from typing import Callable

from isasim.engine.compare import families, family
from isasim.engine.trace import LEVELS, TargetTrace
from isasim.isa.errors import UserError
from isasim.version import __version__

KEY = ("model", "seq", "batch", "precision", "target", "uarch", "cores")
SHARES = tuple("share_" + re.sub(r"\W+", "_", f.lower()) for f in families())
COLUMNS = KEY + ("instructions", "cycles", "seconds", "bound", *(f"bytes_{lv}" for lv in LEVELS), *SHARES,
                 "error", "isasim")  # isasim: the version that costed the row (a table holds one version's rows)
INTS = {"seq", "batch", "cores", "instructions", *(f"bytes_{lv}" for lv in LEVELS)}
FLOATS = {"cycles", "seconds", *SHARES}

# (done, running, failed, total): how a sweep reports its progress as points finish
SweepProgress = Callable[[int, int, int, int], None]


@dataclass(frozen=True)
class Point:
    model: str
    seq: int
    batch: int
    precision: str
    target: str
    uarch: str
    cores: int = 1  # of a CPU's socket, each kernel split as `trace --cores` splits it (a GPU: 1)

    @property
    def shape(self) -> tuple[str, int, int]:
        """What its graph depends on: the points of one shape share one capture."""
        return self.model, self.seq, self.batch

    def key(self) -> tuple[str, ...]:
        return tuple(str(v) for v in asdict(self).values())

    def label(self) -> str:
        cores = f" x{self.cores} cores" if self.cores > 1 else ""
        return f"{self.model} seq {self.seq} batch {self.batch} {self.precision} {self.target} on {self.uarch}{cores}"


def capture(model: str, seq: int, batch: int, seed: int = 0) -> dict:
    """One shape's graph as JSON data (from the graph cache when it was captured before)."""
    from isasim.engine.graphs import cost_graph
    from isasim.models.graph_cache import to_json

    return to_json(cost_graph(model, seq, batch, seed))


# this process's last few lowered graphs: a worker runs the points of a shape one after another, but it may
# be handed another shape's point in between (sweep_dask.heaviest_first)
_LOWERED: dict = {}
KEEP_LOWERED = 4


def cost_point(graph: dict, point: Point) -> dict:
    """The point's row: its configuration and the totals `trace` reports for it."""
    from isasim.engine.graphs import in_precision
    from isasim.engine.targets import pick_targets
    from isasim.engine.trace import trace
    from isasim.lowering.pipeline import lower_graph
    from isasim.models.graph_cache import from_json

    memo = (point.shape, point.precision, id(graph))
    if memo in _LOWERED:
        _LOWERED[memo] = _LOWERED.pop(memo)  # (the most recently used last)
    else:
        while len(_LOWERED) >= KEEP_LOWERED:
            del _LOWERED[next(iter(_LOWERED))]
        # (it holds `graph` too, so no other graph can take its id while it is here)
        _LOWERED[memo] = graph, lower_graph(in_precision(from_json(graph), point.precision))
    pair = pick_targets([point.target], [point.uarch], point.precision)
    return row(point, trace(_LOWERED[memo][1], pair, None, point.cores).targets[0])


def row(point: Point, t: TargetTrace) -> dict:
    shares = dict.fromkeys(SHARES, 0.0)
    for op in t.ops:
        shares[SHARES[families().index(family(op.op))]] += op.cycles / t.cycles if t.cycles else 0.0
    bound = max(t.bounds, key=t.bounds.get) if t.bounds else ""
    return {**asdict(point), "instructions": t.instructions, "cycles": t.cycles, "seconds": t.seconds,
            "bound": bound, **{f"bytes_{lv}": t.bytes[lv] for lv in LEVELS}, **shares, "error": "",
            "isasim": __version__}


def failed(point: Point, error: BaseException) -> dict:
    """The row of a point that failed: its configuration and the one-line error."""
    text = str(error).strip().splitlines()[0] if str(error).strip() else ""
    if not isinstance(error, UserError):
        text = f"{type(error).__name__}: {text}" if text else type(error).__name__
    return {**asdict(point), **{c: "" for c in COLUMNS if c not in KEY}, "error": text, "isasim": __version__}


def typed(row: dict) -> dict:
    """A row read back from a file (CSV gives strings) with numbers as numbers; a failed row's are None."""
    out = {}
    for c in COLUMNS:
        v = row.get(c)
        if v in ("", None):
            out[c] = "" if c in ("error", "bound", "isasim") else None
        elif c in INTS:
            out[c] = int(v)
        elif c in FLOATS:
            out[c] = float(v)
        else:
            out[c] = v
    return out
