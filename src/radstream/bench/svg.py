"""Matplotlib charts as inline SVG for the self-contained HTML reports (bench and A/B)."""

from __future__ import annotations

import io
import re
from contextlib import AbstractContextManager

import matplotlib
from markupsafe import Markup
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from radstream.bench.report_format import attr

_SVG_ID = re.compile(r'\bid="([^"]+)"')
_SVG_REF = re.compile(r'(href="#|url\(#)([^")]+)')


def chart_style(salt: str = "radstream-report") -> AbstractContextManager[None]:
    """The reports' Matplotlib style; ``salt`` keeps SVG ids stable for the same input."""
    return matplotlib.rc_context(
        {
            "svg.fonttype": "none",  # text stays text: small, selectable, DejaVu or browser sans
            "svg.hashsalt": salt,  # stable ids: the same input, the same page
            "font.size": 10.0,
            "axes.spines.top": False,
            "axes.spines.right": False,
            "axes.grid": True,
            "grid.alpha": 0.3,
        }
    )


def new_figure(width: float, height: float, salt: str = "radstream-report") -> tuple[Figure, Axes]:
    """A figure of ``width`` × ``height`` inches with one set of axes, in the reports' style."""
    with chart_style(salt):
        fig = Figure(figsize=(width, height), layout="constrained")
        ax = fig.add_subplot()
    return fig, ax


def inline_svg(fig: Figure, prefix: str, label: str, salt: str = "radstream-report") -> Markup:
    """``fig`` as an inline ``<svg>`` element whose ids cannot clash with other charts."""
    buf = io.StringIO()
    with chart_style(salt):
        fig.savefig(buf, format="svg", metadata={"Date": None})
    text = buf.getvalue()
    text = text[text.index("<svg") :]  # no XML declaration or DOCTYPE inside HTML
    text = re.sub(r"<metadata>.*?</metadata>\s*", "", text, flags=re.S)
    # Matplotlib's global `*{...}` rule would leak into the page; the page's CSS has it scoped.
    text = re.sub(r'<style type="text/css">.*?</style>', "", text, count=1, flags=re.S)
    text = _SVG_ID.sub(lambda m: f'id="{prefix}-{m.group(1)}"', text)
    text = _SVG_REF.sub(lambda m: f"{m.group(1)}{prefix}-{m.group(2)}", text)
    # Size comes from the viewBox and the page's CSS, so the chart scales with the window.
    text = re.sub(
        r'<svg ([^>]*?)width="[^"]*" height="[^"]*"',
        lambda m: f'<svg {m.group(1)}role="img" aria-label="{attr(label)}"',
        text,
        count=1,
    )
    return Markup(text.strip())
