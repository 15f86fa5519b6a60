"""The A/B report's charts, as inline SVG (Matplotlib, no JavaScript), like bench's report.

Each function returns the ``<svg>`` markup, or None when there is nothing to draw. Ids in
each SVG are prefixed so that charts on one page cannot clash; the same input gives the same
SVG (fixed hash salt, no date).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import matplotlib
import matplotlib.ticker
import numpy as np
from markupsafe import Markup
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from radstream.ab.model import MetricResult
from radstream.bench.svg import inline_svg, new_figure

VERDICT_COLOURS = {
    "b_better": "#1a7f37",
    "a_better": "#c62828",
    "same": "#2166ac",
    "inconclusive": "#8a6d00",
}
ARM_COLOURS = ("#2166ac", "#e08214", "#1b7837", "#762a83", "#b2182b", "#35978f")
MAX_POINTS = 2000


def arm_colour(index: int) -> str:
    """The colour of the arm at ``index`` (in the experiment's arm order)."""
    return ARM_COLOURS[index % len(ARM_COLOURS)]


def _tex_safe(text: str) -> str:
    # Matplotlib reads $…$ as mathtext; arm names are user text.
    return text.replace("$", r"\$")


def forest_plot(rows: Sequence[MetricResult], margin: float) -> Markup | None:
    """Each metric's ratio b/a with its interval, the ±margin band, and 1 marked."""
    drawn = [r for r in rows if r.ci95 is not None and r.ratio is not None]
    if not drawn:
        return None
    fig, ax = _figure(8.0, 0.45 * len(drawn) + 1.4)
    ax.axvspan(1 - margin, 1 + margin, color="#d0d7de", alpha=0.5, label=f"±{margin:.0%} (same)")
    ax.axvline(1.0, color="#57606a", linewidth=1.0)
    labels = []
    for y, row in enumerate(reversed(drawn)):
        assert row.ci95 is not None and row.ratio is not None
        ci = row.ci95["ratio"]
        colour = VERDICT_COLOURS[row.verdict]
        ax.plot([ci.low, ci.high], [y, y], color=colour, linewidth=2.4)
        ax.plot([row.ratio], [y], "o", color=colour, markersize=6)
        star = " *" if row.projected else ""
        labels.append(_tex_safe(f"{row.metric} ({row.arm_b}/{row.arm_a}){star}"))
    ax.set_yticks(range(len(drawn)), labels)
    ax.set_ylim(-0.7, len(drawn) - 0.3)
    ax.set_xlabel("ratio b / a with its interval (1 = no difference)")
    ax.legend(loc="lower right", fontsize=8, frameon=False)
    return _svg(fig, "forest", "Forest plot of the ratio intervals")


def latency_cdfs(latencies: Mapping[str, Sequence[float]]) -> Markup | None:
    """Every arm's end-to-end latency CDF, overlaid."""
    if not any(latencies.values()):
        return None
    fig, ax = _figure(8.0, 3.6)
    for i, (arm, values) in enumerate(latencies.items()):
        v = np.sort(np.asarray([x for x in values if x >= 0], dtype=float))
        if v.size == 0:
            continue
        p = np.arange(1, v.size + 1) / v.size
        if v.size > MAX_POINTS:
            p = np.linspace(1 / v.size, 1.0, MAX_POINTS)
            v = np.quantile(v, p)
        ax.step(v, p, where="post", color=arm_colour(i), linewidth=1.6, label=_tex_safe(arm))
    ax.set_xlabel("end-to-end latency (ms)")
    ax.set_ylabel("fraction of studies done")
    ax.set_ylim(0, 1.02)
    ax.yaxis.set_major_formatter(matplotlib.ticker.PercentFormatter(1.0))
    ax.legend(loc="lower right", fontsize=9, frameon=False)
    return _svg(fig, "cdf", "Latency CDFs of the arms, overlaid")


def block_timeline(
    blocks: Sequence[tuple[str, float, float]], arms: Sequence[str]
) -> Markup | None:
    """The blocks as bars over time: ``(arm, start_s, end_s)`` each, one row per arm."""
    if not blocks:
        return None
    rows = list(arms)
    for arm, _, _ in blocks:
        if arm not in rows:
            rows.append(arm)
    fig, ax = _figure(8.0, 0.5 * len(rows) + 1.3)
    for n, (arm, start, end) in enumerate(blocks):
        y = rows.index(arm)
        ax.barh(y, max(end - start, 1e-3), left=start, color=arm_colour(y), height=0.6)
        ax.annotate(
            str(n + 1),
            xy=((start + end) / 2, y),
            ha="center",
            va="center",
            color="#ffffff",
            fontsize=8,
            fontweight="bold",
        )
    ax.set_yticks(range(len(rows)), [_tex_safe(r) for r in rows])
    ax.set_xlabel("seconds since the experiment started (numbers: block order)")
    return _svg(fig, "blocks", "Block order over time")


def _figure(width: float, height: float) -> tuple[Figure, Axes]:
    return new_figure(width, height, "radstream-ab-report")


def _svg(fig: Figure, prefix: str, label: str) -> Markup:
    return inline_svg(fig, prefix, label, "radstream-ab-report")
