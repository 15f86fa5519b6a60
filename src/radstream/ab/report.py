"""One self-contained HTML page for ``radstream ab run --report FILE.html``.

Like the bench report: inline styles, inline SVG charts (:mod:`radstream.ab.report_charts`),
no JavaScript, and a Content-Security-Policy that forbids scripts and outside fetches. The
page shows the verdict table, a forest plot of the ratio intervals, the arms' latency CDFs
overlaid, the block order over time, the projection labels, and the method in words.
"""

from __future__ import annotations

import json
import math
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import jinja2

from radstream.ab.model import ExperimentResult, MetricResult, Projection, SweepPoint
from radstream.ab.report_charts import block_timeline, forest_plot, latency_cdfs
from radstream.ab.run import ExperimentRun

TEMPLATE_DIR = Path(__file__).parent / "templates"
TEMPLATE_NAME = "ab_report.html.j2"
NOT_MEASURED = "not measured"


@dataclass(frozen=True)
class Row:
    """One verdict-table row, formatted."""

    metric: str
    arms: str
    a: str
    b: str
    diff: str
    ratio: str
    interval: str
    p_value: str
    verdict: str
    reason: str
    projected: bool


def _finite(v: float | None) -> float | None:
    return v if v is not None and math.isfinite(v) else None


def fmt_value(v: float | None, unit: str) -> str:
    """A metric's value in its unit, or "not measured"."""
    v = _finite(v)
    if v is None:
        return NOT_MEASURED
    if unit == "USD":
        return f"${v:.3g}"
    if unit == "fraction":
        return f"{v:.1%}"
    if unit == "ms":
        return f"{v:.1f} ms"
    return f"{v:.4g} {unit}"


def _row(m: MetricResult) -> Row:
    ci = m.ci95["ratio"] if m.ci95 else None
    level = f"{m.ci_level:.1%}".replace(".0%", "%")
    return Row(
        metric=m.metric,
        arms=f"{m.arm_b} vs {m.arm_a}",
        a=fmt_value(m.a, m.unit),
        b=fmt_value(m.b, m.unit),
        diff=fmt_value(m.diff, m.unit) if m.unit != "fraction" else _pp(m.diff),
        ratio=f"{m.ratio:.3f}" if _finite(m.ratio) is not None else NOT_MEASURED,
        interval=f"{ci.low:.3f} – {ci.high:.3f} ({level})" if ci else NOT_MEASURED,
        p_value=f"{m.p_value:.2g}" if m.p_value is not None else NOT_MEASURED,
        verdict=m.verdict,
        reason=m.reason,
        projected=m.projected,
    )


def _pp(v: float | None) -> str:
    v = _finite(v)
    return NOT_MEASURED if v is None else f"{100 * v:+.1f} pp"


def _projections(items: list[Projection]) -> list[dict[str, object]]:
    """Labels grouped by method: one entry per method with its figures and arms."""
    grouped: dict[str, dict[str, object]] = {}
    for p in items:
        entry = grouped.setdefault(
            p.method,
            {
                "method": p.method,
                "figures": [],
                "arms": [],
                "assumptions": p.assumptions,
                "sources": p.sources,
            },
        )
        for key, value in (("figures", p.figure), ("arms", p.arm)):
            seen = entry[key]
            assert isinstance(seen, list)
            if value not in seen:
                seen.append(value)
    return list(grouped.values())


def _sweep_rows(points: list[SweepPoint]) -> list[dict[str, str]]:
    return [
        {
            "memory": f"{p.memory_mb} MB",
            "p95": fmt_value(p.p95_ms, "ms"),
            "cost": fmt_value(p.cost_per_image_usd, "USD"),
        }
        for p in points
    ]


def _manifest(result: ExperimentResult) -> list[tuple[str, str]]:
    rows = [("experiment", result.experiment), ("baseline", result.baseline)]
    rows += [
        (f"arm {a}", ", ".join(f"{k}={v}" for k, v in s.items()) or "(defaults)")
        for a, s in result.arms.items()
    ]
    if result.stacks:
        rows.append(
            ("measured on", "deployed stacks: " + ", ".join(s.stack for s in result.stacks))
        )
    for key, value in result.manifest.items():
        if key == "block_log":
            continue
        rows.append((key, value if isinstance(value, str) else json.dumps(value, default=str)))
    return rows


def build_context(run: ExperimentRun) -> dict[str, object]:
    """Everything the template shows, formatted."""
    result = run.result
    counts = Counter(m.verdict for m in result.metrics)
    projected = bool(result.projected)
    summary = ", ".join(f"{n} {v}" for v, n in sorted(counts.items()))
    blocks = [(b.arm, b.start_s, b.end_s) for b in run.log]
    timeline_arms = list(result.arms) if not projected else sorted({b.arm for b in run.log})
    return {
        "experiment": result.experiment,
        "projected": projected,
        "summary": summary,
        "arms": [
            (a, ", ".join(f"{k}={v}" for k, v in s.items()) or "(defaults)")
            for a, s in result.arms.items()
        ],
        "baseline": result.baseline,
        "blocks": result.blocks,
        "order": " ".join(result.order),
        "margin": f"{result.margin:.0%}",
        "rows": [_row(m) for m in result.metrics],
        "correction": result.correction,
        "srm": result.srm,
        "projections": _projections(result.projected),
        "sweep": result.sweep,
        "sweep_rows": _sweep_rows(result.sweep.points) if result.sweep else [],
        "method": result.method,
        "manifest": _manifest(result),
        "forest": forest_plot(result.metrics, result.margin),
        "cdfs": latency_cdfs(run.latencies),
        "timeline": block_timeline(blocks, timeline_arms),
        "not_measured": NOT_MEASURED,
        "stacks": result.stacks,
        "emulator": next((s.endpoint_url for s in result.stacks if s.endpoint_url), None),
    }


def render_ab_report_html(run: ExperimentRun) -> str:
    """The report page as one HTML string."""
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(TEMPLATE_DIR),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
    )
    return env.get_template(TEMPLATE_NAME).render(**build_context(run))


def render_ab_report(run: ExperimentRun, path: Path) -> None:
    """Write the report page to ``path`` (UTF-8, parent folders created)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(render_ab_report_html(run), encoding="utf-8")


__all__ = ["NOT_MEASURED", "build_context", "render_ab_report", "render_ab_report_html"]
