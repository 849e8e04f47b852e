"""`isasim compare --plot FILE.png`: a roofline of each op family per target, and where the cycles go.

Left: for the default core of each target, every op family as a point (floating-point operations per DRAM
byte, operations per cycle achieved) under that core's two ceilings: the FMA peak and DRAM bandwidth times
intensity (Williams, Waterman & Patterson, "Roofline", CACM 2009). Right: each target x core's cycles split
by op family, as stacked shares.
"""

from __future__ import annotations

from pathlib import Path

from isasim.engine.compare import Comparison, Row
from isasim.isa.targets import get_any_target
from isasim.cli.output import check_plot, replacing
from isasim.isa.errors import UserError


def roofline_points(cmp: Comparison) -> dict[str, list[tuple[str, float, float]]]:
    """Per target (on its default core): (family, FLOP per DRAM byte, FLOP per cycle) for each op family
    that does floating-point work and touches DRAM."""
    out: dict[str, list[tuple[str, float, float]]] = {}
    for row in _default_rows(cmp):
        out[row.target] = [(fam, f["fp_ops"] / f["dram_bytes"], f["fp_ops"] / f["cycles"])
                           for fam, f in row.families.items()
                           if f["fp_ops"] > 0 and f["dram_bytes"] > 0 and f["cycles"] > 0]
    return out


def _default_rows(cmp: Comparison) -> list[Row]:
    return [r for r in cmp.rows if get_any_target(r.target).default_uarch == r.uarch]


def pyplot(path: Path):
    """matplotlib's pyplot, drawing off screen, once `path` is known to be a plot this can write."""
    check_plot(path)
    try:
        import matplotlib
    except ImportError:
        raise UserError("--plot needs matplotlib: pip install matplotlib") from None
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def save(plt, fig, path: Path) -> None:
    """The figure written to `path` in the format its suffix names, replacing a file only once complete."""
    fig.tight_layout()
    with replacing(path, "wb") as f:
        fig.savefig(f, format=path.suffix[1:].lower(), dpi=110)
    plt.close(fig)


def plot_comparison(cmp: Comparison, path: Path) -> dict:
    """Write the two charts to `path` (PNG, PDF or SVG, by its suffix); returns the data drawn, for checking."""
    plt = pyplot(path)

    points = roofline_points(cmp)
    fig, (roof, bars) = plt.subplots(1, 2, figsize=(17, 6.5), gridspec_kw={"width_ratios": [1.1, 1]})
    # Targets and op families never share a colour: targets take tab10 (and a line style each, since two
    # targets' ceilings can coincide: x86-64 and aarch64, or avx2's and avx512's DRAM slopes), families Set2.
    target_colors = plt.get_cmap("tab10").colors
    styles = ("-", "--", "-.", ":", (0, (5, 1)), (0, (3, 1, 1, 1)), (0, (1, 1)))
    markers = "osD^vP*X"
    families = sorted({fam for pts in points.values() for fam, _, _ in pts})
    lo = min((ai for pts in points.values() for _, ai, _ in pts), default=0.1) / 2
    hi = max((ai for pts in points.values() for _, ai, _ in pts), default=100) * 4
    rows = _default_rows(cmp)
    for i, row in enumerate(rows):
        color, style = target_colors[i % len(target_colors)], styles[i % len(styles)]
        ridge = row.peak_flop_per_cycle / row.dram_bytes_per_cycle
        xs = [lo, ridge, hi] if lo < ridge < hi else [lo, hi]
        roof.plot(xs, [min(row.peak_flop_per_cycle, x * row.dram_bytes_per_cycle) for x in xs], color=color,
                  ls=style, lw=1.4, label=f"{row.target} / {row.uarch} ceilings")
        shift = 1 + 0.06 * (i - (len(rows) - 1) / 2)  # targets' points for one family side by side, not on top
        for fam, ai, perf in points.get(row.target, []):
            roof.scatter(ai * shift, perf, color=color, marker=markers[families.index(fam) % len(markers)], s=40,
                         edgecolors="black", linewidths=0.4, zorder=3)
    for fam in families:
        roof.scatter([], [], color="gray", marker=markers[families.index(fam) % len(markers)], label=fam)
    roof.set(xscale="log", yscale="log", xlabel="floating-point operations per DRAM byte",
             ylabel="floating-point operations per cycle", title=f"{cmp.model} seq {cmp.seq}: roofline per op family")
    roof.grid(True, which="both", alpha=0.3)
    roof.legend(fontsize=7, loc="upper left")

    family_colors = plt.get_cmap("Set2").colors + plt.get_cmap("Pastel1").colors
    labels = [f"{r.target} / {r.uarch}" for r in cmp.rows]
    fams = sorted({f for r in cmp.rows for f in r.family_shares}, key=lambda f: -cmp.rows[0].family_shares.get(f, 0))
    left = [0.0] * len(cmp.rows)
    for j, fam in enumerate(fams):
        widths = [r.family_shares.get(fam, 0.0) for r in cmp.rows]
        bars.barh(labels, widths, left=left, color=family_colors[j % len(family_colors)], label=fam)
        left = [a + b for a, b in zip(left, widths)]
    bars.invert_yaxis()
    bars.set(xlabel="share of the forward's cycles", xlim=(0, 1), title="cycles by op family")
    bars.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    save(plt, fig, path)
    return {"roofline": points, "shares": {lab: r.family_shares for lab, r in zip(labels, cmp.rows)}}
