"""One self-contained HTML page for a ``radstream bench`` run.

The page opens offline: styles are inline, charts are inline SVG drawn with Matplotlib
(:mod:`radstream.bench.report_charts`), and there is no JavaScript. A
Content-Security-Policy meta tag forbids scripts and any outside fetch, so a later edit
that adds one shows up as a browser console message, not as a page that quietly breaks when
the network is gone. What the page says is built in :mod:`radstream.bench.report_context`
and formatted by :mod:`radstream.bench.report_format`.
"""

from __future__ import annotations

from dataclasses import fields
from pathlib import Path

import jinja2

from radstream.bench.report import BenchReport
from radstream.bench.report_context import build_context
from radstream.bench.report_format import NOT_MEASURED

__all__ = ["NOT_MEASURED", "TEMPLATE_DIR", "TEMPLATE_NAME", "render_report", "render_report_html"]

TEMPLATE_DIR = Path(__file__).parent / "templates"
TEMPLATE_NAME = "report.html.j2"


def render_report(report: BenchReport, path: Path) -> None:
    """Write the report page for ``report`` to ``path`` (UTF-8, parent folders created)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(render_report_html(report), encoding="utf-8")


def render_report_html(report: BenchReport) -> str:
    """The report page for ``report`` as one HTML string; pure apart from CPU time."""
    context = build_context(report)
    # Shallow: the sections stay objects, which the template reads by attribute.
    variables = {f.name: getattr(context, f.name) for f in fields(context)}
    return _environment().get_template(TEMPLATE_NAME).render(**variables)


def _environment() -> jinja2.Environment:
    return jinja2.Environment(
        loader=jinja2.FileSystemLoader(TEMPLATE_DIR),
        autoescape=True,  # the template is .j2, so select_autoescape would not match it
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
    )
