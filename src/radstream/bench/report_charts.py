"""The report's charts: Matplotlib figures rendered to inline SVG, no JavaScript.

Each chart function takes plain series and returns the ``<svg>`` element as markup, or None
when there is nothing to draw (the page then says "not measured"). Ids inside each SVG are
prefixed so that charts on one page cannot clash, and the same input gives the same SVG.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence

import matplotlib
import matplotlib.ticker
import numpy as np
from markupsafe import Markup
from matplotlib.axes import Axes

from radstream.bench.report_format import fmt_ms, fmt_num, tex_safe
from radstream.bench.svg import inline_svg, new_figure

# Series longer than this are thinned before drawing, so the page stays small.
MAX_POINTS = 2000
# Percentiles marked on the latency CDF.
CDF_MARKS = (("p50", 50.0, "#1b7837"), ("p95", 95.0, "#e08214"), ("p99", 99.0, "#b2182b"))


def latency_cdf(latencies: Sequence[float], pct: Mapping[str, float | None]) -> Markup | None:
    """The latency CDF with p50, p95 and p99 marked; None with no latencies."""
    values = np.sort(np.asarray([v for v in latencies if v >= 0], dtype=float))
    if values.size == 0:
        return None
    probs = np.arange(1, values.size + 1) / values.size
    if values.size > MAX_POINTS:  # the curve at MAX_POINTS quantiles looks the same
        probs = np.linspace(1 / values.size, 1.0, MAX_POINTS)
        values = np.quantile(values, probs)
    fig, ax = new_figure(8.0, 3.6)
    ax.step(values, probs, where="post", color="#2166ac", linewidth=1.6, label="studies")
    positive = values[values > 0]
    if positive.size and positive[-1] / positive[0] > 20:
        _log_x(ax)
    for label, q, colour in CDF_MARKS:
        x = pct.get(f"{label}_ms") or float(np.percentile(values, q))
        ax.axvline(x, color=colour, linestyle="--", linewidth=1.1)
        ax.annotate(
            f"{label} {fmt_ms(x)}",
            xy=(x, q / 100),
            xytext=(4, -12 if q < 99 else -24),
            textcoords="offset points",
            color=colour,
            fontsize=9,
            fontweight="bold",
        )
    ax.set_xlabel("end-to-end latency (ms" + (", log scale)" if ax.get_xscale() == "log" else ")"))
    ax.set_ylabel("fraction of studies done")
    ax.set_ylim(0, 1.02)
    ax.yaxis.set_major_formatter(matplotlib.ticker.PercentFormatter(1.0))
    return inline_svg(fig, "latency", "Latency CDF: fraction of studies finished within a given time")


def stage_boxes(stages: Mapping[str, Sequence[float]]) -> Markup | None:
    """One box plot (p5-p95 whiskers, max marked) per stage, first stage on top."""
    if not stages:
        return None
    names = list(stages)
    data = [np.asarray(stages[n], dtype=float) for n in names]
    fig, ax = new_figure(8.0, 0.9 + 0.55 * len(names))
    positions = list(range(len(names), 0, -1))  # first stage at the top
    ax.boxplot(
        data,
        positions=positions,
        **_HORIZONTAL,  # type: ignore[arg-type]  # one key, chosen by version below
        whis=(5.0, 95.0),
        showfliers=False,
        widths=0.55,
        patch_artist=True,
        boxprops={"facecolor": "#d1e5f0", "edgecolor": "#2166ac"},
        medianprops={"color": "#b2182b", "linewidth": 2.0},
        whiskerprops={"color": "#2166ac"},
        capprops={"color": "#2166ac"},
    )
    ax.scatter([float(d.max()) for d in data], positions, marker="x", color="#555555", s=18)
    ax.set_yticks(positions, [tex_safe(n) for n in names])
    low = min(float(d.min()) for d in data)
    high = max(float(d.max()) for d in data)
    if low > 0 and high / low > 50:
        _log_x(ax)
    ax.set_xlabel("time per study (ms" + (", log scale)" if ax.get_xscale() == "log" else ")"))
    ax.grid(axis="y", visible=False)
    return inline_svg(fig, "stages", "Per-stage time distributions as box plots")


def throughput_chart(points: Sequence[tuple[float, float]], overall: float | None) -> Markup | None:
    """Completions per minute per window, and the whole run's rate as a dashed line."""
    if not points:
        return None
    t, v = _thin(points)
    fig, ax = new_figure(8.0, 2.8)
    ax.plot(
        t,
        v,
        color="#2166ac",
        linewidth=1.6,
        marker="o" if len(t) < 40 else None,
        ms=3,
        label="each window",
    )
    if overall is not None:
        ax.axhline(
            overall,
            color="#555555",
            linestyle="--",
            linewidth=1.0,
            label=f"whole run: {fmt_num(overall)}/min",
        )
    ax.legend(loc="lower right", fontsize=8, framealpha=0.9)
    ax.set_xlabel("seconds since the first measured send")
    ax.set_ylabel("studies completed / min")
    ax.set_ylim(bottom=0)
    return inline_svg(fig, "throughput", "Throughput over time")


def queue_chart(points: Sequence[tuple[float, float]]) -> Markup | None:
    """Studies in flight over time."""
    if not points:
        return None
    t, v = _thin(points)
    fig, ax = new_figure(8.0, 2.8)
    ax.step(t, v, where="post", color="#b2182b", linewidth=1.4)
    ax.fill_between(t, v, step="post", color="#b2182b", alpha=0.15)
    ax.set_xlabel("seconds since the load generator started (warm-up included)")
    ax.set_ylabel("studies in flight")
    ax.set_ylim(bottom=0)
    ax.yaxis.set_major_locator(matplotlib.ticker.MaxNLocator(integer=True))
    return inline_svg(fig, "queue", "Queue depth (studies in flight) over time")


def _log_x(ax: Axes) -> None:
    """Log scale with plain tick labels at 1-2-5 steps (``200``, not ``2×10²``)."""
    ax.set_xscale("log")
    ax.xaxis.set_major_locator(matplotlib.ticker.LogLocator(base=10.0, subs=(1.0, 2.0, 5.0)))
    ax.xaxis.set_major_formatter(matplotlib.ticker.FuncFormatter(lambda v, _: f"{v:g}"))
    ax.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())






# `vert=False` is deprecated from Matplotlib 3.10, `orientation` does not exist before it.
_MPL_VERSION = tuple(int(p) for p in re.findall(r"\d+", matplotlib.__version__)[:2])
_HORIZONTAL: dict[str, str | bool] = (
    {"orientation": "horizontal"} if _MPL_VERSION >= (3, 10) else {"vert": False}
)




def _thin(points: Sequence[tuple[float, float]]) -> tuple[list[float], list[float]]:
    ordered = sorted(points)
    if len(ordered) > MAX_POINTS:
        step = math.ceil(len(ordered) / MAX_POINTS)
        ordered = ordered[::step] + ([ordered[-1]] if (len(ordered) - 1) % step else [])
    return [p[0] for p in ordered], [p[1] for p in ordered]
