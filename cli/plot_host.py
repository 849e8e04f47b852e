"""`isasim host --plot FILE.png`: each kernel's measured time against its predicted time, log-log, one panel
per target, coloured by op family; the diagonal is a perfect prediction and the band around it +-25%."""

from __future__ import annotations

from pathlib import Path

from isasim.cli.plot import pyplot, save
from isasim.engine.compare import families, family
from isasim.engine.host import HostReport


def plot_host(report: HostReport, path: Path) -> dict:
    """Write the chart to `path` (PNG, PDF or SVG, by its suffix); returns the points drawn, for checking."""
    plt = pyplot(path)

    names = families()
    colors = plt.get_cmap("tab10").colors
    n = len(report.targets)
    fig, axes = plt.subplots(1, n, figsize=(6 * n, 5.5), squeeze=False)
    drawn = {}
    for ax, t in zip(axes[0], report.targets):
        points = [(family("aten." + k.op), k.predicted_s * 1e6, k.measured_s * 1e6) for k in t.kernels]
        drawn[t.target] = points
        lo = min(min(p, m) for _, p, m in points) / 2
        hi = max(max(p, m) for _, p, m in points) * 2
        ax.plot([lo, hi], [lo, hi], color="black", lw=1, label="measured = predicted")
        ax.fill_between([lo, hi], [lo * 0.75, hi * 0.75], [lo * 1.25, hi * 1.25], color="gray", alpha=0.15,
                        label="within 25%")
        for fam in sorted({f for f, _, _ in points}, key=names.index):
            xs = [p for f, p, _ in points if f == fam]
            ys = [m for f, _, m in points if f == fam]
            ax.scatter(xs, ys, color=colors[names.index(fam) % len(colors)], s=36, edgecolors="black",
                       linewidths=0.4, label=fam, zorder=3)
        ax.set(xscale="log", yscale="log", xlim=(lo, hi), ylim=(lo, hi), xlabel="predicted µs",
               ylabel="measured µs", title=f"{t.target} on {t.uarch} at {t.clock_ghz:.2f} GHz: "
                                           f"forward x{t.forward_ratio:.2f}, median error {t.median_error:.0%}")
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=7, loc="upper left")
    fig.suptitle(f"{report.model} seq {report.seq} on {report.host['name']}, {report.host['core']}")
    save(plt, fig, path)
    return drawn
