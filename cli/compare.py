"""`isasim compare`, rendered: the comparison (engine/compare.py) as a table, markdown, CSV or JSON."""

from __future__ import annotations

import csv
import io
import json

from rich.console import Console
from rich.table import Table

from isasim.cli.render import human
from isasim.engine.compare import Comparison, Row, families


def _human(n: float) -> str:
    return human(n, 2)


HEAD = ("target", "uarch", "instructions", "cycles", "time", "FLOP/cycle", "of peak", "L1 B", "L2 B", "LLC B",
        "DRAM B", "FLOP/DRAM B", "speed-up vs x86-64", "bound")


def _cells(r: Row) -> list[str]:
    return [r.target, r.uarch, _human(r.instructions), _human(r.cycles), f"{r.seconds * 1e3:.1f} ms",
            f"{r.flop_per_cycle:.3f}", f"{r.flop_per_cycle / r.peak_flop_per_cycle:.1%}",
            *(_human(r.bytes[lv]) for lv in ("l1", "l2", "llc", "dram")), f"{r.arithmetic_intensity:.1f}",
            f"{r.speedup_over_scalar_x86:.2f}x", r.dominant_bound]


def render_table(c: Comparison, console: Console) -> None:
    table = Table(title=f"{c.model} seq {c.seq} batch {c.batch}: {c.flops:,} matmul FLOPs", title_justify="left")
    for h in HEAD:
        table.add_column(h, justify="left" if h in ("target", "uarch", "bound") else "right")
    for r in c.rows:
        table.add_row(*_cells(r))
    console.print(table)
    shares = Table(title="share of cycles by op family", title_justify="left")
    shares.add_column("target / uarch")
    for f in families():
        shares.add_column(f, justify="right")
    for r in c.rows:
        shares.add_row(f"{r.target} / {r.uarch}", *(f"{r.family_shares.get(f, 0.0):.1%}" for f in families()))
    console.print(shares)


def render_markdown(c: Comparison) -> str:
    lines = ["| " + " | ".join(HEAD) + " |", "|" + "---|" * len(HEAD)]
    lines += ["| " + " | ".join(_cells(r)) + " |" for r in c.rows]
    fams = families()
    lines += ["", "| target / uarch | " + " | ".join(fams) + " |", "|" + "---|" * (len(fams) + 1)]
    lines += [f"| {r.target} / {r.uarch} | " + " | ".join(f"{r.family_shares.get(f, 0.0):.1%}" for f in fams)
              + " |" for r in c.rows]
    return "\n".join(lines) + "\n"


def render_csv(c: Comparison) -> str:
    buf = io.StringIO()
    w = csv.writer(buf)
    fams = families()
    w.writerow(["target", "uarch", "instructions", "cycles", "seconds", "flop_per_cycle", "peak_flop_per_cycle",
                "bytes_l1", "bytes_l2", "bytes_llc", "bytes_dram", "flop_per_dram_byte", "speedup_over_scalar_x86",
                "dominant_bound", *(f"share_{f.replace(' ', '_')}" for f in fams)])
    for r in c.rows:
        w.writerow([r.target, r.uarch, r.instructions, f"{r.cycles:.1f}", r.seconds, r.flop_per_cycle,
                    r.peak_flop_per_cycle, *(r.bytes[lv] for lv in ("l1", "l2", "llc", "dram")),
                    r.arithmetic_intensity, r.speedup_over_scalar_x86, r.dominant_bound,
                    *(r.family_shares.get(f, 0.0) for f in fams)])
    return buf.getvalue()


def render_json(c: Comparison) -> str:
    return json.dumps(c.to_dict(), indent=2) + "\n"
