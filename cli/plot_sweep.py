"""`isasim sweep --plot FILE.png`: where each target turns from one regime to another, and which one wins.

A row of two panels per model and precision of the sweep. Left: predicted time against sequence length, one
line per target (on its core), log-log, a line style per batch. A slope of 1 is time linear in the tokens;
attention's seq^2 bends the lines up at long sequences. Right: a heatmap of the fastest target per (seq,
batch), with its time in each cell.
"""

from __future__ import annotations

from pathlib import Path

from isasim.cli.plot import pyplot, save
from isasim.isa.errors import UserError

STYLES = ("-", "--", ":", "-.")


def plot_sweep(rows: list[dict], path: Path) -> dict:
    """Write the charts to `path` (PNG, PDF or SVG, by its suffix): a row of two panels per (model, precision)
    of the sweep. Returns the data drawn, for checking: {(model, precision): {"lines": ..., "best": ...}}."""
    plt = pyplot(path)
    ok = [r for r in rows if not r["error"]]
    if not ok:
        raise UserError("--plot: no point of the sweep succeeded, so there is nothing to draw")
    groups = list(dict.fromkeys((r["model"], r["precision"]) for r in ok))
    fig, axes = plt.subplots(len(groups), 2, figsize=(15, 6 * len(groups)), squeeze=False,
                             gridspec_kw={"width_ratios": [1.2, 1]})
    names = sorted({f"{r['target']} on {r['uarch']}" for r in ok})  # a target keeps its colour in every row
    drawn = {g: draw(plt, left, right, g, [r for r in ok if (r["model"], r["precision"]) == g], names)
             for g, (left, right) in zip(groups, axes)}
    save(plt, fig, path)
    return drawn


def draw(plt, left, right, group: tuple[str, str], mine: list[dict], names: list[str]) -> dict:
    """One model and precision: its lines on the left, its fastest target per (seq, batch) on the right."""
    model, precision = group
    seqs = sorted({r["seq"] for r in mine})
    batches = sorted({r["batch"] for r in mine})
    lines: dict[tuple[str, int], list[tuple[int, float]]] = {}
    for r in sorted(mine, key=lambda r: r["seq"]):
        lines.setdefault((f"{r['target']} on {r['uarch']}", r["batch"]), []).append((r["seq"], r["seconds"]))
    best: dict[tuple[int, int], dict] = {}
    for r in mine:
        k = (r["seq"], r["batch"])
        if k not in best or r["seconds"] < best[k]["seconds"]:
            best[k] = r

    colors = plt.get_cmap("tab20").colors if len(names) > 10 else plt.get_cmap("tab10").colors
    for (name, batch), pts in sorted(lines.items()):
        left.plot([s for s, _ in pts], [t * 1e3 for _, t in pts], marker="o", ms=4,
                  color=colors[names.index(name) % len(colors)], ls=STYLES[batches.index(batch) % len(STYLES)],
                  label=f"{name}, batch {batch}")
    left.set(xscale="log", yscale="log", xlabel="sequence length", ylabel="predicted time (ms)",
             title=f"{model}, {precision}: time against sequence length")
    left.set_xticks(seqs, [str(s) for s in seqs])
    left.set_xticks([], minor=True)
    left.grid(True, which="both", alpha=0.3)
    left.legend(fontsize=7, ncol=2)

    def color(r: dict) -> tuple:  # the winner's line colour on the left
        return colors[names.index(f"{r['target']} on {r['uarch']}") % len(colors)]

    right.imshow([[(*color(best[(s, b)])[:3], 0.55) if (s, b) in best else (1, 1, 1, 1) for s in seqs]
                  for b in batches], aspect="auto", origin="lower")
    for i, b in enumerate(batches):
        for j, s in enumerate(seqs):
            if (s, b) in best:
                r = best[(s, b)]
                right.text(j, i, f"{r['target']} on {r['uarch']}\n{r['seconds'] * 1e3:.3g} ms", ha="center",
                           va="center", fontsize=7)
    right.set_xticks(range(len(seqs)), [str(s) for s in seqs])
    right.set_yticks(range(len(batches)), [str(b) for b in batches])
    right.set(xlabel="sequence length", ylabel="batch", title=f"{model}, {precision}: fastest target per "
              f"(seq, batch)")
    return {"lines": lines, "best": {k: r["target"] for k, r in best.items()}}
