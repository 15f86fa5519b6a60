"""One self-contained HTML page for a ``radstream bench`` run.

The page opens offline: styles are inline, charts are inline SVG drawn with Matplotlib, and
there is no JavaScript. A Content-Security-Policy meta tag forbids scripts and any outside
fetch, so a later edit that adds one shows up as a browser console message, not as a page
that quietly breaks when the network is gone.

Input is the bench JSON plus the raw series (see :func:`render_report_html`). Every key is
optional as far as this module is concerned: whatever is missing is shown as "not measured".
"""

from __future__ import annotations

import io
import math
import re
from collections.abc import Mapping, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jinja2
import matplotlib
import matplotlib.ticker
import numpy as np
from markupsafe import Markup
from matplotlib.axes import Axes
from matplotlib.figure import Figure

NOT_MEASURED = "not measured"
NOT_SET = "not set"  # a manifest entry that is empty (an option not given), not a gap
TEMPLATE_DIR = Path(__file__).parent / "templates"
TEMPLATE_NAME = "report.html.j2"

# Series longer than this are thinned before drawing, so the page stays small.
MAX_POINTS = 2000
# Percentiles marked on the latency CDF.
CDF_MARKS = (("p50", 50.0, "#1b7837"), ("p95", 95.0, "#e08214"), ("p99", 99.0, "#b2182b"))
PERCENTILE_KEYS = (
    ("p50_ms", "p50 (median)"),
    ("p90_ms", "p90"),
    ("p95_ms", "p95"),
    ("p99_ms", "p99"),
    ("p999_ms", "p99.9"),
    ("max_ms", "max"),
)


# --------------------------------------------------------------------------- public API


def render_report(report: Mapping[str, Any], path: Path) -> None:
    """Write the report page for ``report`` to ``path`` (UTF-8, parent folders created)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(render_report_html(report), encoding="utf-8")


def render_report_html(report: Mapping[str, Any]) -> str:
    """The report page for ``report`` as one HTML string; pure apart from CPU time.

    ``report`` is the bench JSON (``n``, ``p50_ms`` … ``max_ms``, ``late_sends``,
    ``throughput_per_min``, ``stable``, ``success_rate``, ``invalid_injected``,
    ``cost_per_image_usd``, ``cost_items``, ``stages``, ``queue_wait``, ``slo``,
    ``efficiency``, ``manifest``, ``load``, optional ``pricing_date``) plus ``series``
    (``latencies_ms``, ``stage_ms``, ``timeline``, ``throughput_windows``).
    """
    context = build_context(report)
    return _environment().get_template(TEMPLATE_NAME).render(**context)


# --------------------------------------------------------------------------- context


def build_context(report: Mapping[str, Any]) -> dict[str, Any]:
    """Everything the template shows, already formatted as text (or inline SVG)."""
    series = _mapping(report.get("series"))
    latencies = _floats(series.get("latencies_ms"))
    slos = _slo_rows(report.get("slo"))
    percentiles = {key: _num(report.get(key)) for key, _ in PERCENTILE_KEYS}
    return {
        "not_measured": NOT_MEASURED,
        "not_set": NOT_SET,
        "verdict": _verdict(slos),
        "headline": _headline(report, percentiles),
        "load": _load(report.get("load")),
        "timed_out": report.get("timed_out") is True,
        "slos": slos,
        "outcomes": _outcomes(report.get("outcomes")),
        "latency": {
            "n": _fmt_int(_count(report.get("n"))),
            "rows": [(label, _fmt_ms(percentiles[key])) for key, label in PERCENTILE_KEYS],
            "late": _late_sends(report.get("late_sends")),
            "chart": _latency_cdf(latencies, percentiles),
            "series_n": len(latencies),
        },
        "stages": _stages(report, _mapping(series.get("stage_ms"))),
        "flow": _flow(report, series),
        "cost": _cost(report),
        "manifest": _manifest_rows(report.get("manifest")),
    }


@dataclass(frozen=True)
class SloRow:
    name: str
    value: str
    target: str
    status: str  # "pass", "fail" or "unknown"
    description: str = ""


@dataclass(frozen=True)
class Verdict:
    status: str  # "pass", "fail" or "unknown"
    title: str
    detail: str


def _slo_rows(raw: Any) -> list[SloRow]:
    rows = []
    for name, spec in _mapping(raw).items():
        spec = _mapping(spec)
        op = str(spec.get("op", "")) or "?"
        passed = spec.get("pass")
        status = "unknown" if not isinstance(passed, bool) else ("pass" if passed else "fail")
        limit = _fmt_named(str(name), _num(spec.get("limit")))
        rows.append(
            SloRow(
                name=str(name),
                value=_fmt_named(str(name), _num(spec.get("value"))),
                target=f"{op} {limit}" if limit != NOT_MEASURED else NOT_MEASURED,
                status=status,
                description=str(spec.get("description") or ""),
            )
        )
    return rows


def _verdict(slos: Sequence[SloRow]) -> Verdict:
    failed = [s.name for s in slos if s.status == "fail"]
    unknown = [s.name for s in slos if s.status == "unknown"]
    if not slos:
        return Verdict("unknown", "NO VERDICT", "No service-level objectives were evaluated.")
    if failed:
        return Verdict(
            "fail",
            "FAIL",
            f"{len(failed)} of {len(slos)} service-level objectives missed: "
            + ", ".join(failed)
            + ".",
        )
    if unknown:
        return Verdict(
            "unknown",
            "INCOMPLETE",
            f"No objective failed, but {len(unknown)} of {len(slos)} could not be checked "
            f"({NOT_MEASURED}): " + ", ".join(unknown) + ".",
        )
    return Verdict("pass", "PASS", f"All {len(slos)} service-level objectives were met.")


def _headline(report: Mapping[str, Any], pct: Mapping[str, float | None]) -> list[tuple[str, str]]:
    stable = report.get("stable")
    invalid = _count(report.get("invalid_injected"))
    return [
        ("Studies measured", _fmt_int(_count(report.get("n")))),
        ("Median latency (p50)", _fmt_ms(pct["p50_ms"])),
        ("p95 latency", _fmt_ms(pct["p95_ms"])),
        ("p99 latency", _fmt_ms(pct["p99_ms"])),
        ("Throughput", _fmt_rate(_num(report.get("throughput_per_min")))),
        ("Success rate", _fmt_pct(_num(report.get("success_rate")))),
        ("Invalid studies injected", _fmt_int(invalid)),
        ("Stable", NOT_MEASURED if not isinstance(stable, bool) else ("yes" if stable else "NO")),
        ("Efficiency vs in-memory limit", _fmt_pct(_num(report.get("efficiency")))),
        ("Cost per image", _fmt_usd(_num(report.get("cost_per_image_usd")))),
    ]


def _load(raw: Any) -> dict[str, str]:
    load = _mapping(raw)
    mode = str(load.get("mode") or "")
    rate = _num(load.get("rate"))
    conc = _count(load.get("concurrency"))
    shape = str(load.get("shape") or "") or ("poisson" if load.get("poisson") is True else None)
    fmt = str(load.get("format") or "") or None
    warmup = _count(load.get("warmup"))
    if mode == "open":
        how = (
            "Open loop: studies were sent on a schedule set in advance"
            + (f" of {_fmt_num(rate)} studies per second" if rate is not None else "")
            + (f" ({shape} arrivals)" if shape else "")
            + ", whether or not earlier studies had finished."
        )
    elif mode == "closed":
        how = (
            "Closed loop: "
            + (f"{conc} senders" if conc is not None else "a fixed number of senders")
            + " each sent the next study only after its previous study had finished."
        )
    else:
        how = f"Load mode {NOT_MEASURED}."
    return {
        "mode": mode or NOT_MEASURED,
        "description": how,
        "rate": _fmt_num(rate) + " /s" if rate is not None else NOT_MEASURED,
        "concurrency": _fmt_int(conc),
        "shape": shape or NOT_MEASURED,
        "format": fmt or NOT_MEASURED,
        "warmup": _fmt_int(warmup),
    }


OUTCOME_LABELS = (
    ("valid", "Valid studies measured"),
    ("succeeded", "… produced a result"),
    ("failed", "… recorded as failed"),
    ("lost", "… lost (neither result nor failure)"),
    ("invalid_injected", "Invalid studies injected on purpose"),
    ("invalid_rejected", "… rejected, as they should be"),
    ("invalid_accepted_or_lost", "… accepted or lost"),
)


def _outcomes(raw: Any) -> list[tuple[str, str]]:
    outcomes = _mapping(raw)
    return [
        (label, _fmt_int(_count(outcomes.get(key)))) for key, label in OUTCOME_LABELS if outcomes
    ]


def _late_sends(raw: Any) -> dict[str, str]:
    if isinstance(raw, int) and not isinstance(raw, bool):  # older bench JSON: a bare count
        raw = {"count": raw}
    late = _mapping(raw)
    return {
        "count": _fmt_int(_count(late.get("count"))),
        "max": _fmt_ms(_num(late.get("max_ms"))),
        "mean": _fmt_ms(_num(late.get("mean_ms"))),
        "measured": "yes" if late else "",
    }


def _stages(report: Mapping[str, Any], stage_series: Mapping[str, Any]) -> dict[str, Any]:
    summary: dict[str, Mapping[str, Any]] = {
        str(k): _mapping(v) for k, v in _mapping(report.get("stages")).items()
    }
    if "queue_wait" in report and "queue_wait" not in summary:
        summary["queue_wait"] = _mapping(report.get("queue_wait"))
    names = list(summary)
    names += [str(k) for k in stage_series if str(k) not in summary]
    # Queue wait is not a processing stage: always last, so it reads as "and also".
    names = [n for n in names if n != "queue_wait"] + [n for n in names if n == "queue_wait"]
    rows = []
    for name in names:
        s = summary.get(name, {})
        values = _floats(stage_series.get(name))
        p50, p95, n = _num(s.get("p50_ms")), _num(s.get("p95_ms")), _count(s.get("n"))
        if values:  # fill gaps in the summary from the raw series
            arr = np.asarray(values)
            p50 = p50 if p50 is not None else float(np.percentile(arr, 50))
            p95 = p95 if p95 is not None else float(np.percentile(arr, 95))
            n = n if n is not None else len(values)
        rows.append(
            {
                "name": _stage_label(name),
                "p50": _fmt_ms(p50),
                "p95": _fmt_ms(p95),
                "n": _fmt_int(n),
            }
        )
    drawn = {_stage_label(n): _floats(stage_series.get(n)) for n in names}
    return {"rows": rows, "chart": _stage_boxes({k: v for k, v in drawn.items() if v})}


def _flow(report: Mapping[str, Any], series: Mapping[str, Any]) -> dict[str, Any]:
    windows = [_mapping(w) for w in _list(series.get("throughput_windows"))]
    tw = [(_num(w.get("t_s")), _num(w.get("per_min"))) for w in windows]
    tput = [(t, v) for t, v in tw if t is not None and v is not None]
    timeline = [_mapping(p) for p in _list(series.get("timeline"))]
    depth = [(_num(p.get("t_s")), _num(p.get("in_flight"))) for p in timeline]
    queue = [(t, v) for t, v in depth if t is not None and v is not None]
    last = timeline[-1] if timeline else {}
    stable = report.get("stable")
    baseline = _num(_mapping(report.get("baseline")).get("images_per_s"))
    return {
        "throughput": _fmt_rate(_num(report.get("throughput_per_min"))),
        "baseline": _fmt_rate(baseline * 60.0 if baseline is not None else None),
        "efficiency": _fmt_pct(_num(report.get("efficiency"))),
        "stable": NOT_MEASURED if not isinstance(stable, bool) else ("yes" if stable else "NO"),
        "sent": _fmt_int(_count(last.get("sent"))),
        "completed": _fmt_int(_count(last.get("completed"))),
        "max_in_flight": _fmt_int(int(max(v for _, v in queue)) if queue else None),
        "throughput_chart": _throughput_chart(tput, _num(report.get("throughput_per_min"))),
        "queue_chart": _queue_chart(queue),
    }


def _cost(report: Mapping[str, Any]) -> dict[str, Any]:
    items = []
    total = 0.0
    any_usd = False
    for raw in _list(report.get("cost_items")):
        item = _mapping(raw)
        usd = _num(item.get("usd"))
        if usd is not None:
            total += usd
            any_usd = True
        quantity = _num(item.get("quantity"))
        unit = str(item.get("unit") or "")
        items.append(
            {
                "name": str(item.get("name") or "(unnamed)"),
                "quantity": (_fmt_num(quantity) + (f" {unit}" if unit else ""))
                if quantity is not None
                else NOT_MEASURED,
                "unit_price": _fmt_usd(_num(item.get("unit_price_usd")))
                + (f" / {unit}" if unit and _num(item.get("unit_price_usd")) is not None else ""),
                "usd": _fmt_usd(usd),
                "note": str(item.get("note") or ""),
            }
        )
    detail = _mapping(report.get("cost"))  # the cost model's own summary, when present
    stated_total = _num(detail.get("total_usd"))
    per_image = _num(report.get("cost_per_image_usd"))
    if per_image is None:
        per_image = _num(detail.get("per_image_usd"))
    pricing_date = (
        report.get("pricing_date")
        or detail.get("pricing_as_of")
        or _mapping(report.get("manifest")).get("pricing_date")
    )
    return {
        "lines": items,
        "total": _fmt_usd(stated_total if stated_total is not None else total if any_usd else None),
        "per_image": _fmt_usd(per_image),
        "pricing_date": str(pricing_date) if pricing_date else NOT_MEASURED,
        "assumptions": [str(a) for a in _list(detail.get("assumptions")) if a],
    }


def _manifest_rows(raw: Any) -> list[tuple[str, str]]:
    rows: list[tuple[str, str]] = []

    def walk(prefix: str, value: Any) -> None:
        if isinstance(value, Mapping) and value:
            for k, v in value.items():
                walk(f"{prefix}.{k}" if prefix else str(k), v)
        elif isinstance(value, bool):
            rows.append((prefix, "true" if value else "false"))
        elif isinstance(value, list | tuple):
            rows.append((prefix, " ".join(str(v) for v in value) if value else NOT_SET))
        elif isinstance(value, Mapping) or value is None or value == "":
            rows.append((prefix, NOT_SET))
        else:
            rows.append((prefix, str(value)))

    manifest = _mapping(raw)
    if manifest:
        walk("", manifest)
    return rows


# --------------------------------------------------------------------------- charts


def _latency_cdf(latencies: Sequence[float], pct: Mapping[str, float | None]) -> Markup | None:
    values = np.sort(np.asarray([v for v in latencies if v >= 0], dtype=float))
    if values.size == 0:
        return None
    probs = np.arange(1, values.size + 1) / values.size
    if values.size > MAX_POINTS:  # the curve at MAX_POINTS quantiles looks the same
        probs = np.linspace(1 / values.size, 1.0, MAX_POINTS)
        values = np.quantile(values, probs)
    fig, ax = _figure(8.0, 3.6)
    ax.step(values, probs, where="post", color="#2166ac", linewidth=1.6, label="studies")
    positive = values[values > 0]
    if positive.size and positive[-1] / positive[0] > 20:
        _log_x(ax)
    for label, q, colour in CDF_MARKS:
        x = pct.get(f"{label}_ms") or float(np.percentile(values, q))
        ax.axvline(x, color=colour, linestyle="--", linewidth=1.1)
        ax.annotate(
            f"{label} {_fmt_ms(x)}",
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
    return _svg(fig, "latency", "Latency CDF: fraction of studies finished within a given time")


def _stage_boxes(stages: Mapping[str, Sequence[float]]) -> Markup | None:
    if not stages:
        return None
    names = list(stages)
    data = [np.asarray(stages[n], dtype=float) for n in names]
    fig, ax = _figure(8.0, 0.9 + 0.55 * len(names))
    positions = list(range(len(names), 0, -1))  # first stage at the top
    ax.boxplot(
        data,
        positions=positions,
        **_HORIZONTAL,
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
    ax.set_yticks(positions, [_tex_safe(n) for n in names])
    low = min(float(d.min()) for d in data)
    high = max(float(d.max()) for d in data)
    if low > 0 and high / low > 50:
        _log_x(ax)
    ax.set_xlabel("time per study (ms" + (", log scale)" if ax.get_xscale() == "log" else ")"))
    ax.grid(axis="y", visible=False)
    return _svg(fig, "stages", "Per-stage time distributions as box plots")


def _throughput_chart(
    points: Sequence[tuple[float, float]], overall: float | None
) -> Markup | None:
    if not points:
        return None
    t, v = _thin(points)
    fig, ax = _figure(8.0, 2.8)
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
            label=f"whole run: {_fmt_num(overall)}/min",
        )
    ax.legend(loc="lower right", fontsize=8, framealpha=0.9)
    ax.set_xlabel("seconds since the first measured send")
    ax.set_ylabel("studies completed / min")
    ax.set_ylim(bottom=0)
    return _svg(fig, "throughput", "Throughput over time")


def _queue_chart(points: Sequence[tuple[float, float]]) -> Markup | None:
    if not points:
        return None
    t, v = _thin(points)
    fig, ax = _figure(8.0, 2.8)
    ax.step(t, v, where="post", color="#b2182b", linewidth=1.4)
    ax.fill_between(t, v, step="post", color="#b2182b", alpha=0.15)
    ax.set_xlabel("seconds since the load generator started (warm-up included)")
    ax.set_ylabel("studies in flight")
    ax.set_ylim(bottom=0)
    ax.yaxis.set_major_locator(matplotlib.ticker.MaxNLocator(integer=True))
    return _svg(fig, "queue", "Queue depth (studies in flight) over time")


def _log_x(ax: Axes) -> None:
    """Log scale with plain tick labels at 1-2-5 steps (``200``, not ``2×10²``)."""
    ax.set_xscale("log")
    ax.xaxis.set_major_locator(matplotlib.ticker.LogLocator(base=10.0, subs=(1.0, 2.0, 5.0)))
    ax.xaxis.set_major_formatter(matplotlib.ticker.FuncFormatter(lambda v, _: f"{v:g}"))
    ax.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())


def _style() -> AbstractContextManager[None]:
    return matplotlib.rc_context(
        {
            "svg.fonttype": "none",  # text stays text: small, selectable, DejaVu or browser sans
            "svg.hashsalt": "radstream-report",  # stable ids: the same input, the same page
            "font.size": 10.0,
            "axes.spines.top": False,
            "axes.spines.right": False,
            "axes.grid": True,
            "grid.alpha": 0.3,
        }
    )


def _figure(width: float, height: float) -> tuple[Figure, Axes]:
    with _style():
        fig = Figure(figsize=(width, height), layout="constrained")
        ax = fig.add_subplot()
    return fig, ax


# `vert=False` is deprecated from Matplotlib 3.10, `orientation` does not exist before it.
_MPL_VERSION = tuple(int(p) for p in re.findall(r"\d+", matplotlib.__version__)[:2])
_HORIZONTAL: dict[str, Any] = (
    {"orientation": "horizontal"} if _MPL_VERSION >= (3, 10) else {"vert": False}
)
_SVG_ID = re.compile(r'\bid="([^"]+)"')
_SVG_REF = re.compile(r'(href="#|url\(#)([^")]+)')


def _svg(fig: Figure, prefix: str, label: str) -> Markup:
    """``fig`` as an inline ``<svg>`` element whose ids cannot clash with other charts."""
    buf = io.StringIO()
    with _style():
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
        lambda m: f'<svg {m.group(1)}role="img" aria-label="{_attr(label)}"',
        text,
        count=1,
    )
    return Markup(text.strip())


def _thin(points: Sequence[tuple[float, float]]) -> tuple[list[float], list[float]]:
    ordered = sorted(points)
    if len(ordered) > MAX_POINTS:
        step = math.ceil(len(ordered) / MAX_POINTS)
        ordered = ordered[::step] + ([ordered[-1]] if (len(ordered) - 1) % step else [])
    return [p[0] for p in ordered], [p[1] for p in ordered]


# --------------------------------------------------------------------------- formatting


def _fmt_ms(v: float | None) -> str:
    if v is None:
        return NOT_MEASURED
    if abs(v) >= 100:
        return f"{v:,.0f} ms"
    if abs(v) >= 10:
        return f"{v:.1f} ms"
    return f"{v:.2f} ms"


def _fmt_num(v: float | None) -> str:
    if v is None:
        return NOT_MEASURED
    if v == int(v) and abs(v) < 1e15:
        return f"{int(v):,}"
    if abs(v) >= 100:
        return f"{v:,.1f}"
    return f"{v:.3g}"


def _fmt_int(v: int | None) -> str:
    return NOT_MEASURED if v is None else f"{v:,}"


def _fmt_pct(v: float | None) -> str:
    if v is None:
        return NOT_MEASURED
    pct = v * 100
    return f"{pct:.0f} %" if pct == int(pct) else f"{pct:.2f} %".replace(".00 %", " %")


def _fmt_rate(v: float | None) -> str:
    return NOT_MEASURED if v is None else f"{_fmt_num(v)} studies/min"


def _fmt_usd(v: float | None) -> str:
    if v is None:
        return NOT_MEASURED
    if v == 0 or abs(v) >= 1:
        return f"${v:,.2f}"
    decimals = min(12, max(2, 2 - math.floor(math.log10(abs(v)))))  # 3 significant digits
    return f"${v:.{decimals}f}"


def _fmt_named(name: str, v: float | None) -> str:
    """A value formatted by what its name says it is (``p95_ms``, ``success_rate`` …)."""
    lower = name.lower()
    if lower.endswith("_ms"):
        return _fmt_ms(v)
    if lower.endswith("_usd"):
        return _fmt_usd(v)
    if "per_min" in lower:
        return _fmt_rate(v)
    if lower.endswith(("_rate", "efficiency", "_ratio")) and v is not None and 0 <= v <= 1:
        return _fmt_pct(v)
    return _fmt_num(v)


def _stage_label(name: str) -> str:
    return "queue wait" if name == "queue_wait" else name


def _tex_safe(text: str) -> str:
    """Matplotlib reads ``$…$`` as maths; user text must stay literal."""
    return text.replace("$", r"\$")


def _attr(text: str) -> str:
    return (
        text.replace("&", "&amp;").replace('"', "&quot;").replace("<", "&lt;").replace(">", "&gt;")
    )


# --------------------------------------------------------------------------- input coercion


def _mapping(v: Any) -> Mapping[str, Any]:
    return v if isinstance(v, Mapping) else {}


def _list(v: Any) -> list[Any]:
    return list(v) if isinstance(v, list | tuple | np.ndarray) else []


def _num(v: Any) -> float | None:
    """A finite float, or None for anything else (missing, None, bool, text, NaN, inf)."""
    if isinstance(v, bool) or not isinstance(v, int | float | np.integer | np.floating):
        return None
    f = float(v)
    return f if math.isfinite(f) else None


def _count(v: Any) -> int | None:
    f = _num(v)
    return None if f is None else int(f)


def _floats(v: Any) -> list[float]:
    return [f for f in (_num(x) for x in _list(v)) if f is not None]


def _environment() -> jinja2.Environment:
    return jinja2.Environment(
        loader=jinja2.FileSystemLoader(TEMPLATE_DIR),
        autoescape=True,  # the template is .j2, so select_autoescape would not match it
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
    )
