"""The dashboard's figures: named queries of ``athena_queries.sql``, run where the lake is.

Nothing here defines a metric, and no SQL is written here. Each figure names one query of
the file and the parameters it runs with (a window of finish times, a variant, a bucket
size), and carries the query's columns and rows as they came back; the page only draws them.
The same queries run locally on DuckDB, or on a stack through Athena: whatever runs a named
query (:class:`~radstream.dashboard.objectives.NamedQueryRunner`) will do. The objective tiles
add the error-budget burn, which compares a query's figure with the objective's limit (see
:mod:`.objectives`). The engine panel is not from the lake: it is the engine's own count of
executions by state (:mod:`.engine`).
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from contextlib import AbstractContextManager
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import TypedDict

from radstream.dashboard.engine import EnginePanel
from radstream.dashboard.objectives import NamedQueryRunner, ObjectiveTile, objective_tiles
from radstream.lake.duckdb_runner import QueryResult

JsonScalar = str | int | float | bool | None

QuerySource = Callable[[], AbstractContextManager[NamedQueryRunner]]
"""Opens a runner of named queries for one refresh (a fresh DuckDB over the lake's files as
they are now, or the stack's Athena runner)."""

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

BUCKETS_S: dict[str, int] = {
    "15m": 60,
    "1h": 60,
    "6h": 60,
    "24h": 300,
    "7d": 3600,
    "30d": 10800,
    "all": 86400,
}
"""The time charts' bucket for each range (the queries' ``bucket_s``): a few hundred points
at most, so a month stays as quick to draw as an hour."""

DEFAULT_RANGE = "24h"
DAY_S = 86400

BURN_WINDOWS: dict[str, timedelta] = {"1h": timedelta(hours=1), "24h": timedelta(days=1)}
"""The windows each objective tile shows its figure and budget burn over."""

# An execution belongs to the window its last stage ended in, but its rows sit in the dt
# partition of their own start: the partition range reaches back this far before the window,
# so an execution that started before midnight and finished after it is not cut short.
PARTITION_MARGIN = timedelta(hours=1)
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


@dataclass(frozen=True)
class FigureSpec:
    """One chart: the named query it draws, its title, and how its parameters are chosen."""

    key: str
    query: str
    title: str
    bucketed: bool = False
    """Takes the range's bucket size (a time chart)."""
    by_variant: bool = False
    """One row per variant (the A/B panel): no variant filter, every variant side by side."""
    fixed: tuple[tuple[str, str], ...] = ()
    """Parameters that do not follow the filters (a daily bucket, the whole window)."""


WHOLE_WINDOW = (("bucket_s", "0"),)

FIGURES: tuple[FigureSpec, ...] = (
    FigureSpec(
        "latency",
        "execution_latency_percentiles",
        "End-to-end latency of successful executions (ms)",
        bucketed=True,
    ),
    FigureSpec("throughput", "success_rate", "Executions finished", bucketed=True),
    FigureSpec("failures", "failures_by_code", "Failures by code", bucketed=True),
    FigureSpec("stages", "stage_latency", "Per-stage latency (ms)"),
    FigureSpec(
        "cost", "cost_per_image", "Cost per image by day (USD)", fixed=(("bucket_s", str(DAY_S)),)
    ),
    FigureSpec("batches", "batch_sizes", "Batch sizes formed at the model"),
    FigureSpec(
        "variant_latency",
        "execution_latency_percentiles",
        "A/B variants side by side: end-to-end latency of successful executions (ms)",
        by_variant=True,
        fixed=WHOLE_WINDOW,
    ),
    FigureSpec(
        "variant_success",
        "success_rate",
        "A/B variants: success rate",
        by_variant=True,
        fixed=WHOLE_WINDOW,
    ),
    FigureSpec(
        "variant_cost",
        "cost_per_image",
        "A/B variants: cost per image",
        by_variant=True,
        fixed=WHOLE_WINDOW,
    ),
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
    bucket_s: int
    window_s: list[float]
    objectives: list[ObjectiveTile]
    figures: dict[str, Figure]
    engine: EnginePanel | None


@dataclass(frozen=True)
class Window:
    """A window of finish times, [start, end), or from the beginning when ``start`` is None."""

    start: datetime | None
    end: datetime

    @classmethod
    def ending(cls, now: datetime, span: timedelta | None) -> Window:
        """The window of length ``span`` (None: unbounded) that ends at ``now``."""
        return cls(None if span is None else now - span, now)

    def params(self) -> dict[str, str]:
        """The query parameters of this window: a dt range, and its bounds."""
        first = date(1970, 1, 1) if self.start is None else (self.start - PARTITION_MARGIN).date()
        return {
            "start_date": first.isoformat(),
            "end_date": self.end.date().isoformat(),
            "from_ts": timestamp_param(self.start or EPOCH),
            # Whole seconds, and the end exclusive: +1 s keeps what ended in the current one.
            "to_ts": timestamp_param(self.end + timedelta(seconds=1)),
        }

    def seconds(self) -> list[float]:
        """[start, end] in epoch seconds (0 for no start): the page's time axis."""
        start = 0.0 if self.start is None else self.start.timestamp()
        return [float(int(start)), float(int(self.end.timestamp()) + 1)]


def timestamp_param(moment: datetime) -> str:
    """A window bound as the queries take it: UTC, whole seconds, the zone named in the text."""
    return moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


_TIMESTAMP_TEXT = re.compile(
    r"\d{4}-\d{2}-\d{2}[ T]\d{2}:\d{2}:\d{2}(\.\d+)?( UTC|[+-]\d{2}:\d{2}|Z)?"
)


def json_value(value: object) -> JsonScalar:
    """A query value as JSON: times as ISO 8601 (UTC), non-finite numbers as null.

    Athena returns every value as text, a timestamp as ``2026-03-04 10:05:00.000 UTC``
    (an emulator as Python writes it): such a text is read back as the time it is, so the
    page gets the same ISO form from both engines.
    """
    if isinstance(value, str) and _TIMESTAMP_TEXT.fullmatch(value):
        text = value.removesuffix(" UTC")
        parsed = datetime.fromisoformat(text)
        value = parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)
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


def figure_params(spec: FigureSpec, window: Window, variant: str, bucket_s: int) -> dict[str, str]:
    """The parameters ``spec``'s query runs with for this window, variant and bucket size."""
    params = window.params()
    if spec.by_variant:
        params["by_variant"] = "true"
    else:
        params["variant"] = variant
    if spec.bucketed:
        params["bucket_s"] = str(bucket_s)
    params.update(spec.fixed)
    return params


def collect(
    source: QuerySource,
    *,
    range_key: str = DEFAULT_RANGE,
    variant: str = "",
    now: datetime,
    engine: EnginePanel | None = None,
    parallel: int = 1,
) -> Dashboard:
    """Run every figure's query, and the objectives' over the burn windows, now.

    ``source`` opens a runner for this refresh alone (locally a fresh DuckDB: it lists the
    lake's files as they are, so a study that finished since the last refresh is in).
    ``engine`` is the engine panel, read by the caller (None where there is none).
    ``parallel`` figures' queries run at once: Athena answers each in seconds, and runs many
    side by side; DuckDB (one connection) takes them one at a time.
    """
    window = Window.ending(now, RANGES[range_key])
    bucket_s = BUCKETS_S[range_key]
    with source() as runner:

        def run(spec: FigureSpec) -> Figure:
            params = figure_params(spec, window, variant, bucket_s)
            result = runner.run_named(spec.query, params)
            return Figure(
                title=spec.title,
                query=spec.query,
                params=params,
                columns=result.columns,
                rows=json_rows(result),
            )

        if parallel > 1:
            with ThreadPoolExecutor(max_workers=parallel) as pool:
                drawn = list(pool.map(run, FIGURES))
        else:
            drawn = [run(spec) for spec in FIGURES]
        figures = {spec.key: figure for spec, figure in zip(FIGURES, drawn, strict=True)}
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
        bucket_s=bucket_s,
        window_s=window.seconds(),
        objectives=tiles,
        figures=figures,
        engine=engine,
    )
