"""`isasim explain`, rendered: a CPU kernel's hottest loop with its timeline, or a GPU kernel's launch,
occupancy and bounds (the explanations come from backends/cpu_explain.py and backends/simt_explain.py);
and the timelines as a Chrome trace."""

from __future__ import annotations

from rich import box
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from isasim.backends.cpu_explain import Explanation
from isasim.backends.simt_explain import SimtExplanation


def render(e: Explanation | SimtExplanation, console: Console, wide: bool = False) -> None:
    (render_simt if isinstance(e, SimtExplanation) else render_explanation)(e, console, wide)


class _Listing:
    """An explanation's instruction table. Each instruction's numbers come with their source: in the wide
    layout in a column, else as numbered notes under the table (a source is a sentence; the instructions
    stay on one line each)."""

    def __init__(self, columns: tuple[str, ...], wide: bool):
        self.wide, self.first, self.notes = wide, {}, []
        self.table = Table(title_justify="left", box=box.HEAVY_HEAD if wide else box.SIMPLE_HEAD,
                           collapse_padding=not wide)
        for col in columns + (("source",) if wide else ()):
            self.table.add_column(col, overflow="fold", no_wrap=col != "source", ratio=1 if col == "source" else None)

    def add(self, i: int, mnemonic: str, source: str, *cells: str) -> None:
        """Row `i`; its source is shown where the mnemonic first appears, later rows point back to it."""
        if mnemonic in self.first:
            source = f"as #{self.first[mnemonic]}"
        else:
            self.first[mnemonic] = i
            if not self.wide:
                self.notes.append(f"#{i} {mnemonic}: {source}")
        self.table.add_row(str(i), *cells, *((escape(source),) if self.wide else ()))

    def print(self, console: Console) -> None:
        console.print(self.table)
        if self.notes:
            console.print("where each instruction's numbers come from:", highlight=False)
            for note in self.notes:
                console.print("  " + escape(note), highlight=False)


def chrome_trace(results: list[Explanation]) -> dict:
    """Explanations as a Chrome trace: one process per target and core, one thread per port."""
    events = []
    for pid, r in enumerate(results):
        events.append({"ph": "M", "name": "process_name", "pid": pid,
                       "args": {"name": f"{r.kernel} on {r.target} / {r.uarch} (1 us = 1 cycle)"}})
        events += [dict(e, pid=pid) for e in r.chrome_events]
    return {"traceEvents": events, "displayTimeUnit": "ns"}



def render_explanation(e: Explanation, console: Console, wide: bool = False) -> None:
    console.print(f"[bold]{e.kernel}[/] ({e.op}) on {e.target} / {e.uarch}: its hottest loop runs {e.trips:,} "
                  f"times; one iteration:")
    listing = _Listing(("#", "instruction", "latency", "rthroughput", "ports"), wide)
    for i, ln in enumerate(e.listing):
        listing.add(i, ln.mnemonic, ln.source, escape(ln.instruction), f"{ln.latency:g}", f"{ln.rthroughput:g}",
                    " ".join(ln.ports) or "-")
    listing.print(console)
    console.print("port pressure per iteration (cycles): "
                  + ", ".join(f"{p} {v:g}" for p, v in e.pressure.items() if v))
    b = e.bound
    console.print(f"bounds per iteration: ports {b['ports']:g} ({b['busiest_ports']}), issue {b['issue']:g}, "
                  f"loop-carried latency {b['latency']:g}, out-of-order window {b['window']:.3g} -> "
                  f"[bold]{b['cycles_per_iteration']:g} cycles, "
                  f"{b['decides']}[/]")
    console.print(e.advice)
    console.print(f"\ntimeline of {e.iterations} iterations (D dispatch, = wait for operands or a port, "
                  f"e execute, E done, - wait to retire, R retire): {e.simulated_cycles_per_iteration:.2f} "
                  f"cycles per iteration including the warm-up")
    for row in e.timeline:
        console.print(row, highlight=False, markup=False)


def render_simt(e: SimtExplanation, console: Console, wide: bool = False) -> None:
    console.print(f"[bold]{e.kernel}[/] ({e.op}) on {e.target} / {e.uarch}: {e.strategy}; grid {e.grid} x block "
                  f"{e.block}, ~{e.registers} registers per thread (isasim's estimate; `isasim emit` shows "
                  f"ptxas's), {e.shared_bytes:,} bytes of shared memory per block")
    o = e.occupancy
    grid = (f"; but the grid gives the busiest SM only {o['blocks_on_busiest_sm']}"
            if o["limiter"] == "grid" else "")
    console.print("occupancy: blocks per SM allowed by " + ", ".join(f"{k} {v}" for k, v in o["limits"].items())
                  + f" -> {o['resident_blocks']} can reside (limited by {o['resource']}){grid}: {o['resident_warps']} "
                  f"warps, {o['achieved']:.0%} of the SM's warp slots")
    where = "its hottest loop runs" if e.trips > 1 else "its instruction stream runs"
    console.print(f"{where} {e.trips:,} times per warp; one pass:")
    listing = _Listing(("#", "PTX", "pipe", "per clk/SM", "latency", "per request"), wide)
    for i, ln in enumerate(e.listing):
        req = "-" if ln.per_request is None else \
            f"{ln.per_request:.2f} {'wavefronts' if 'shared' in ln.mnemonic else 'sectors'}"
        listing.add(i, ln.mnemonic, ln.source, escape(ln.instruction), ln.pipe, f"{ln.per_clock_per_sm:g}",
                    f"{ln.latency:g}", req)
    listing.print(console)
    if e.elsewhere:
        console.print("the rest of each warp's stream: " + ", ".join(
            f"{n:,} {m}" for m, n in sorted(e.elsewhere.items(), key=lambda kv: -kv[1])))
    console.print("bounds (cycles): " + ", ".join(f"{k} {v:,.0f}" for k, v in
                                                  sorted(e.bounds.items(), key=lambda kv: -kv[1]))
                  + f" -> [bold]{e.cycles:,.0f} cycles, {e.decides}[/] (the launch overhead is added to the largest)")
    console.print(e.advice)
