"""The dashboard's figures: named queries of ``athena_queries.sql``, run over the local lake.

Nothing here defines a metric. Each figure names one query of the file and the parameters it
ran with (a window of finish times and a variant), and carries the query's columns and rows
as they came back; the page only draws them. The objective tiles add the error-budget burn,
which compares a query's figure with the objective's limit (see :mod:`.objectives`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import TypedDict

from radstream.dashboard.objectives import ObjectiveTile, objective_tiles
from radstream.lake.duckdb_runner import LocalQueryRunner, QueryResult

JsonScalar = str | int | float | bool | None

RANGES: dict[str, timedelta | None] = {
    "15m": timedelta(minutes=15),
    "1h": timedelta(hours=1),
    "6h": timedelta(hours=6),
    "24h": timedelta(days=1),
    "7d": timedelta(days=7),
    "30d": timedelta(days=30),
    "all": None,
}
"""The time ranges the page offers: how far back from now the window starts."""

DEFAULT_RANGE = "24h"

BURN_WINDOWS: dict[str, timedelta] = {"1h": timedelta(hours=1), "24h": timedelta(days=1)}
"""The windows each objective tile shows its figure and budget burn over."""

# An execution belongs to the window its last stage ended in, but its rows sit in the dt
# partition of their own start: the partition range reaches back this far before the window,
# so an execution that started before midnight and finished after it is not cut short.
PARTITION_MARGIN = timedelta(hours=1)
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


@dataclass(frozen=True)
class FigureSpec:
    """One chart: the named query it draws, and its title."""

    key: str
    query: str
    title: str
    windowed: bool = True  # takes from_ts/to_ts (the daily cost takes days only)
    by_variant: bool = True  # takes the variant filter (the A/B comparison shows them all)


FIGURES: tuple[FigureSpec, ...] = (
    FigureSpec("latency", "dashboard_latency_per_minute", "End-to-end latency per minute (ms)"),
    FigureSpec("throughput", "dashboard_throughput_per_minute", "Executions finished per minute"),
    FigureSpec("failures", "dashboard_failures_per_minute", "Failures by code per minute"),
    FigureSpec("stages", "dashboard_stage_latency", "Per-stage latency (ms)"),
    FigureSpec(
        "cost", "dashboard_cost_per_image_daily", "Cost per image by day (USD)", windowed=False
    ),
    FigureSpec("batches", "dashboard_batch_sizes", "Batch sizes formed at the model"),
    FigureSpec("variants", "dashboard_variants", "A/B variants side by side", by_variant=False),
)


class Figure(TypedDict):
    """One figure as the page receives it: the query, its parameters and its result."""

    title: str
    query: str
    params: dict[str, str]
    columns: list[str]
    rows: list[list[JsonScalar]]


class Dashboard(TypedDict):
    """Everything one refresh of the page shows."""

    generated_at: str
    range: str
    variant: str
    params: dict[str, str]
    window_s: list[float]
    objectives: list[ObjectiveTile]
    figures: dict[str, Figure]


@dataclass(frozen=True)
class Window:
    """A window of finish times, [start, end), or from the beginning when ``start`` is None."""

    start: datetime | None
    end: datetime

    @classmethod
    def ending(cls, now: datetime, span: timedelta | None) -> Window:
        """The window of length ``span`` (None: unbounded) that ends at ``now``."""
        return cls(None if span is None else now - span, now)

    def params(self, *, windowed: bool = True) -> dict[str, str]:
        """The query parameters of this window: a dt range, and its bounds when windowed."""
        first = date(1970, 1, 1) if self.start is None else (self.start - PARTITION_MARGIN).date()
        params = {"start_date": first.isoformat(), "end_date": self.end.date().isoformat()}
        if windowed:
            params["from_ts"] = timestamp_param(self.start or EPOCH)
            # Whole seconds, and the end exclusive: +1 s keeps what ended in the current one.
            params["to_ts"] = timestamp_param(self.end + timedelta(seconds=1))
        return params

    def seconds(self) -> list[float]:
        """[start, end] in epoch seconds (0 for no start): the page's time axis."""
        start = 0.0 if self.start is None else self.start.timestamp()
        return [float(int(start)), float(int(self.end.timestamp()) + 1)]


def timestamp_param(moment: datetime) -> str:
    """A window bound as the queries take it: UTC, whole seconds, the zone named in the text."""
    return moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def json_value(value: object) -> JsonScalar:
    """A query value as JSON: times as ISO 8601 (UTC), non-finite numbers as null."""
    if isinstance(value, datetime):
        aware = value if value.tzinfo else value.replace(tzinfo=UTC)
        return aware.astimezone(UTC).isoformat()
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, Decimal):
        value = float(value)
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if value is None or isinstance(value, str | int | float | bool):
        return value
    return str(value)


def json_rows(result: QueryResult) -> list[list[JsonScalar]]:
    """A query's rows, each value as :func:`json_value` writes it."""
    return [[json_value(v) for v in row] for row in result.rows]


def figure_params(spec: FigureSpec, window: Window, variant: str) -> dict[str, str]:
    """The parameters ``spec``'s query runs with for this window and variant."""
    params = window.params(windowed=spec.windowed)
    if spec.by_variant:
        params["variant"] = variant
    return params


def collect(
    lake_dir: Path, *, range_key: str = DEFAULT_RANGE, variant: str = "", now: datetime
) -> Dashboard:
    """Run every figure's query, and the objectives' over the burn windows, on the lake now.

    A fresh runner each time: it lists the lake's files as they are, so a study that
    finished since the last refresh is in.
    """
    span = RANGES[range_key]
    window = Window.ending(now, span)
    with LocalQueryRunner(lake_dir, threads=1) as runner:
        figures: dict[str, Figure] = {}
        for spec in FIGURES:
            params = figure_params(spec, window, variant)
            result = runner.run_named(spec.query, params)
            figures[spec.key] = Figure(
                title=spec.title,
                query=spec.query,
                params=params,
                columns=result.columns,
                rows=json_rows(result),
            )
        tiles = objective_tiles(
            runner,
            {name: Window.ending(now, length).params() for name, length in BURN_WINDOWS.items()},
            variant,
        )
    return Dashboard(
        generated_at=now.astimezone(UTC).isoformat(),
        range=range_key,
        variant=variant,
        params=window.params(),
        window_s=window.seconds(),
        objectives=tiles,
        figures=figures,
    )
