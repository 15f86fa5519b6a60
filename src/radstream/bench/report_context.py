"""What the HTML report shows, built from a :class:`~radstream.bench.report.BenchReport`.

Every value is formatted here (text, or inline SVG from :mod:`radstream.bench.report_charts`)
so that the template only lays it out. What a run did not measure reads "not measured".
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from markupsafe import Markup

from radstream.bench.report import QUEUE_WAIT, BenchReport, OutcomeCounts, SloResult
from radstream.bench.report_charts import latency_cdf, queue_chart, stage_boxes, throughput_chart
from radstream.bench.report_format import (
    NOT_MEASURED,
    NOT_SET,
    finite,
    fmt_int,
    fmt_ms,
    fmt_named,
    fmt_num,
    fmt_pct,
    fmt_rate,
    fmt_usd,
    fmt_yes_no,
    stage_label,
)

PERCENTILE_LABELS = (
    ("p50_ms", "p50 (median)"),
    ("p90_ms", "p90"),
    ("p95_ms", "p95"),
    ("p99_ms", "p99"),
    ("p999_ms", "p99.9"),
    ("max_ms", "max"),
)
OUTCOME_LABELS = (
    ("valid", "Valid studies measured"),
    ("succeeded", "… produced a result"),
    ("failed", "… recorded as failed"),
    ("lost", "… lost (neither result nor failure)"),
    ("invalid_injected", "Invalid studies injected on purpose"),
    ("invalid_rejected", "… rejected, as they should be"),
    ("invalid_accepted_or_lost", "… accepted or lost"),
)

Rows = list[tuple[str, str]]


@dataclass(frozen=True)
class SloRow:
    """One objective as a table row."""

    name: str
    value: str
    target: str
    status: str  # "pass" or "fail"
    description: str = ""


@dataclass(frozen=True)
class Verdict:
    """The banner at the top: did the run meet its objectives?"""

    status: str  # "pass", "fail" or "unknown"
    title: str
    detail: str


@dataclass(frozen=True)
class LoadView:
    """The load that was applied, in words and figures."""

    mode: str
    description: str
    rate: str
    concurrency: str
    shape: str
    format: str
    warmup: str


@dataclass(frozen=True)
class LateView:
    """Sends that went out late."""

    count: str
    max: str
    mean: str


@dataclass(frozen=True)
class LatencyView:
    """End-to-end latency: percentiles, late sends and the CDF."""

    n: str
    rows: Rows
    late: LateView
    chart: Markup | None
    series_n: int


@dataclass(frozen=True)
class StageRowView:
    """One stage's line in the stage table."""

    name: str
    p50: str
    p95: str
    n: str


@dataclass(frozen=True)
class StagesView:
    """The stage table and its box plots."""

    rows: list[StageRowView]
    chart: Markup | None


@dataclass(frozen=True)
class FlowView:
    """Throughput and queue depth over time."""

    throughput: str
    baseline: str
    efficiency: str
    stable: str
    sent: str
    completed: str
    max_in_flight: str
    throughput_chart: Markup | None
    queue_chart: Markup | None


@dataclass(frozen=True)
class CostLine:
    """One line of the bill."""

    name: str
    quantity: str
    unit_price: str
    usd: str
    note: str


@dataclass(frozen=True)
class CostView:
    """The itemised bill."""

    lines: list[CostLine]
    total: str
    per_image: str
    pricing_date: str
    assumptions: list[str]


@dataclass(frozen=True)
class ReportContext:
    """Everything the template shows, already formatted."""

    verdict: Verdict
    headline: Rows
    load: LoadView
    timed_out: bool
    slos: list[SloRow]
    outcomes: Rows
    latency: LatencyView
    stages: StagesView
    flow: FlowView
    cost: CostView
    manifest: Rows
    not_measured: str = NOT_MEASURED
    not_set: str = NOT_SET


def build_context(report: BenchReport) -> ReportContext:
    """The page's content for ``report``."""
    series = report.series
    latencies = [v for v in series.latencies_ms if finite(v) is not None]
    percentiles = {key: finite(getattr(report, key)) for key, _ in PERCENTILE_LABELS}
    slos = [_slo_row(name, result) for name, result in report.slo.items()]
    return ReportContext(
        verdict=_verdict(slos),
        headline=_headline(report),
        load=_load(report),
        timed_out=report.timed_out,
        slos=slos,
        outcomes=_outcomes(report.outcomes),
        latency=LatencyView(
            n=fmt_int(report.n),
            rows=[(label, fmt_ms(percentiles[key])) for key, label in PERCENTILE_LABELS],
            late=LateView(
                count=fmt_int(report.late_sends.count),
                max=fmt_ms(report.late_sends.max_ms),
                mean=fmt_ms(report.late_sends.mean_ms),
            ),
            chart=latency_cdf(latencies, percentiles),
            series_n=len(latencies),
        ),
        stages=_stages(report),
        flow=_flow(report),
        cost=_cost(report),
        manifest=manifest_rows(report.manifest.model_dump(mode="json")),
    )


def _slo_row(name: str, result: SloResult) -> SloRow:
    return SloRow(
        name=name,
        value=fmt_named(name, result.value),
        target=f"{result.op} {fmt_named(name, result.limit)}",
        status="pass" if result.passed else "fail",
        description=result.description,
    )


def _verdict(slos: Sequence[SloRow]) -> Verdict:
    if not slos:
        return Verdict("unknown", "NO VERDICT", "No service-level objectives were evaluated.")
    failed = [s.name for s in slos if s.status == "fail"]
    if failed:
        return Verdict(
            "fail",
            "FAIL",
            f"{len(failed)} of {len(slos)} service-level objectives missed: "
            + ", ".join(failed)
            + ".",
        )
    return Verdict("pass", "PASS", f"All {len(slos)} service-level objectives were met.")


def _headline(report: BenchReport) -> Rows:
    return [
        ("Studies measured", fmt_int(report.n)),
        ("Median latency (p50)", fmt_ms(report.p50_ms)),
        ("p95 latency", fmt_ms(report.p95_ms)),
        ("p99 latency", fmt_ms(report.p99_ms)),
        ("Throughput", fmt_rate(report.throughput_per_min)),
        ("Success rate", fmt_pct(report.success_rate)),
        ("Invalid studies injected", fmt_int(report.invalid_injected)),
        ("Stable", fmt_yes_no(report.stable)),
        ("Efficiency vs in-memory limit", fmt_pct(report.efficiency)),
        ("Cost per image", fmt_usd(report.cost_per_image_usd)),
    ]


def _load(report: BenchReport) -> LoadView:
    load = report.load
    shape = load.shape or ("poisson" if load.poisson else None)
    if load.mode == "open":
        how = (
            "Open loop: studies were sent on a schedule set in advance"
            + (f" of {fmt_num(load.rate)} studies per second" if load.rate is not None else "")
            + (f" ({shape} arrivals)" if shape else "")
            + ", whether or not earlier studies had finished."
        )
    elif load.mode == "closed":
        how = (
            "Closed loop: "
            + (
                f"{load.concurrency} senders"
                if load.concurrency is not None
                else "a fixed number of senders"
            )
            + " each sent the next study only after its previous study had finished."
        )
    else:
        how = f"Load mode {NOT_MEASURED}."
    return LoadView(
        mode=load.mode or NOT_MEASURED,
        description=how,
        rate=fmt_num(load.rate) + " /s" if load.rate is not None else NOT_MEASURED,
        concurrency=fmt_int(load.concurrency),
        shape=shape or NOT_MEASURED,
        format=load.format or NOT_MEASURED,
        warmup=fmt_int(load.warmup),
    )


def _outcomes(outcomes: OutcomeCounts) -> Rows:
    return [(label, fmt_int(getattr(outcomes, key))) for key, label in OUTCOME_LABELS]


def _stages(report: BenchReport) -> StagesView:
    stage_series = report.series.stage_ms
    names = list(report.stages)
    names += [name for name in stage_series if name not in report.stages]
    # Queue wait is not a processing stage: always last, so it reads as "and also".
    names = [n for n in names if n != QUEUE_WAIT] + [n for n in names if n == QUEUE_WAIT]
    rows = []
    for name in names:
        summary = report.stages.get(name)
        rows.append(
            StageRowView(
                name=stage_label(name),
                p50=fmt_ms(summary.p50_ms if summary else None),
                p95=fmt_ms(summary.p95_ms if summary else None),
                n=fmt_int(summary.n if summary else len(stage_series.get(name, []))),
            )
        )
    drawn = {
        stage_label(name): [v for v in stage_series.get(name, []) if finite(v) is not None]
        for name in names
    }
    return StagesView(rows=rows, chart=stage_boxes({k: v for k, v in drawn.items() if v}))


def _flow(report: BenchReport) -> FlowView:
    series = report.series
    windows = [(w.t_s, w.per_min) for w in series.throughput_windows]
    queue = [(float(p.t_s), float(p.in_flight)) for p in series.timeline]
    last = series.timeline[-1] if series.timeline else None
    baseline = report.baseline.images_per_s if report.baseline is not None else None
    return FlowView(
        throughput=fmt_rate(report.throughput_per_min),
        baseline=fmt_rate(baseline * 60.0 if baseline is not None else None),
        efficiency=fmt_pct(report.efficiency),
        stable=fmt_yes_no(report.stable),
        sent=fmt_int(last.sent if last else None),
        completed=fmt_int(last.completed if last else None),
        max_in_flight=fmt_int(max(p.in_flight for p in series.timeline) if last else None),
        throughput_chart=throughput_chart(windows, finite(report.throughput_per_min)),
        queue_chart=queue_chart(queue),
    )


def _cost(report: BenchReport) -> CostView:
    lines = [
        CostLine(
            name=item.name,
            quantity=fmt_num(item.quantity) + (f" {item.unit}" if item.unit else ""),
            unit_price=fmt_usd(item.unit_price_usd) + (f" / {item.unit}" if item.unit else ""),
            usd=fmt_usd(item.usd),
            note=item.note,
        )
        for item in report.cost_items
    ]
    return CostView(
        lines=lines,
        total=fmt_usd(report.cost.total_usd),
        per_image=fmt_usd(report.cost_per_image_usd),
        pricing_date=report.cost.pricing_as_of or NOT_MEASURED,
        assumptions=[a for a in report.cost.assumptions if a],
    )


def manifest_rows(manifest: object) -> Rows:
    """A nested JSON object as ``(dotted.key, text)`` rows; empty entries read "not set"."""
    rows: Rows = []

    def walk(prefix: str, value: object) -> None:
        if isinstance(value, dict) and value:
            for k, v in value.items():
                walk(f"{prefix}.{k}" if prefix else str(k), v)
        elif isinstance(value, bool):
            rows.append((prefix, "true" if value else "false"))
        elif isinstance(value, list | tuple):
            rows.append((prefix, " ".join(str(v) for v in value) if value else NOT_SET))
        elif isinstance(value, dict) or value is None or value == "":
            rows.append((prefix, NOT_SET))
        else:
            rows.append((prefix, str(value)))

    if isinstance(manifest, dict) and manifest:
        walk("", manifest)
    return rows
