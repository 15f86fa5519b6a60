"""The four objective tiles: each a figure of a named query per window, and how fast that
window burns the objective's error budget.

Each objective reads the one named query that defines its figure, over the whole window
(``bucket_s=0``): the p95 and the share slower than 5 s from ``execution_latency_percentiles``
(its successful executions: a study refused at validation ends in milliseconds and would
pull the p95 down), the success rate and the throughput from ``success_rate``, the cost per
image from ``cost_per_image``.

The objectives are the benchmark's (:data:`radstream.bench.slo.DEFAULT_TARGETS`): p95 under
5 s, at least 10 images a minute, under $0.002 an image, and over 99 % success. Burn is the
rate at which a window spends the budget the objective allows, so 1.0 means "exactly at the
objective" and anything above 1 means the window misses it:

- success rate over 99 %: the budget is the 1 % of executions allowed to fail; burn is the
  failed share divided by that 1 %.
- p95 under 5 s: the budget is the 5 % of executions allowed to be slower than 5 s; burn is
  the share slower than 5 s divided by 5 % (the query counts them: ``slow_share``, with
  ``slow_ms`` the objective's limit).
- throughput and cost have no share to spend; burn is how far the figure is from the limit,
  in the direction that misses it: 10/min divided by the throughput, and the cost per image
  divided by $0.002.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol, TypedDict

from radstream.bench.slo import DEFAULT_TARGETS, Target
from radstream.lake.duckdb_runner import QueryResult


class NamedQueryRunner(Protocol):
    """What runs a query of ``athena_queries.sql`` by name: the local DuckDB runner, or the
    Athena runner of a stack."""

    def run_named(self, name: str, params: dict[str, str] | None = None) -> QueryResult:
        """Run the named query with these parameters."""
        ...


class WindowFigure(TypedDict):
    """An objective's figure over one window, its budget burn, and the query it came from."""

    value: float | None
    burn: float | None
    executions: int
    """How many executions (for cost: successful images) the figure is over."""
    params: dict[str, str]


class ObjectiveTile(TypedDict):
    """One tile: the objective, and its figure and burn over each burn window."""

    name: str
    label: str
    op: str
    limit: float
    query: str
    windows: dict[str, WindowFigure]


@dataclass(frozen=True)
class Objective:
    """An objective of the tiles, and the named query and column that measure it."""

    target: Target
    label: str
    query: str
    column: str
    count_column: str
    """The column that says how many executions the figure is over."""
    extra: tuple[tuple[str, str], ...] = ()
    """Parameters besides the window and the variant."""
    row: tuple[str, str] | None = None
    """``(column, value)`` of the row to read, where the query returns several."""

    def params(self, window_params: dict[str, str], variant: str) -> dict[str, str]:
        """The query's parameters over one window: the whole window as one bucket."""
        return {**window_params, "variant": variant, "bucket_s": "0", **dict(self.extra)}


_P95_LIMIT = DEFAULT_TARGETS["p95_ms"].limit

OBJECTIVES: tuple[Objective, ...] = (
    Objective(
        DEFAULT_TARGETS["p95_ms"],
        "p95 latency",
        "execution_latency_percentiles",
        "p95_ms",
        "n",
        extra=(("slow_ms", f"{_P95_LIMIT:g}"),),
        row=("outcome", "succeeded"),
    ),
    Objective(
        DEFAULT_TARGETS["throughput_per_min"],
        "Throughput",
        "success_rate",
        "throughput_per_min",
        "finished",
    ),
    Objective(
        DEFAULT_TARGETS["cost_per_image_usd"],
        "Cost per image",
        "cost_per_image",
        "cost_per_image_usd",
        "images",
    ),
    Objective(
        DEFAULT_TARGETS["success_rate"], "Success rate", "success_rate", "success_rate", "finished"
    ),
)

P95_BUDGET = 0.05
"""A p95 objective lets 5 % of executions be slower than its limit."""


def _number(value: object) -> float | None:
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


def burn(objective: Objective, record: dict[str, object]) -> float | None:
    """How fast the window of ``record`` (the objective's query row) burns the budget."""
    name, limit = objective.target.name, objective.target.limit
    if name == "success_rate":
        rate = _number(record.get("success_rate"))
        return None if rate is None else (1.0 - rate) / (1.0 - limit)
    if name == "p95_ms":
        slow = _number(record.get("slow_share"))
        return None if slow is None else slow / P95_BUDGET
    value = _number(record.get(objective.column))
    if value is None:
        return None
    if name == "throughput_per_min":
        return limit / value if value > 0 else None
    return value / limit  # cost per image


def pick_row(objective: Objective, result: QueryResult) -> dict[str, object]:
    """The row of ``result`` that holds the objective's figure ({} when there is none)."""
    for record in result.records():
        if objective.row is None or record.get(objective.row[0]) == objective.row[1]:
            return record
    return {}


def objective_tiles(
    runner: NamedQueryRunner, windows: dict[str, dict[str, str]], variant: str
) -> list[ObjectiveTile]:
    """The tiles, each objective's query run once per window (name → window parameters).

    Two tiles that read the same query with the same parameters share one run.
    """
    ran: dict[tuple[str, tuple[tuple[str, str], ...]], QueryResult] = {}
    tiles: list[ObjectiveTile] = []
    for objective in OBJECTIVES:
        figures: dict[str, WindowFigure] = {}
        for name, window_params in windows.items():
            params = objective.params(window_params, variant)
            key = (objective.query, tuple(sorted(params.items())))
            if key not in ran:
                ran[key] = runner.run_named(objective.query, params)
            record = pick_row(objective, ran[key])
            figures[name] = WindowFigure(
                value=_number(record.get(objective.column)),
                burn=burn(objective, record),
                executions=int(_number(record.get(objective.count_column)) or 0),
                params=params,
            )
        tiles.append(
            ObjectiveTile(
                name=objective.target.name,
                label=objective.label,
                op=objective.target.op,
                limit=objective.target.limit,
                query=objective.query,
                windows=figures,
            )
        )
    return tiles
