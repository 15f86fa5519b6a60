"""The four objective tiles: a figure of the ``dashboard_objectives`` query per window, and
how fast that window burns the objective's error budget.

The objectives are the benchmark's (:data:`radstream.bench.slo.DEFAULT_TARGETS`): p95 under
5 s, at least 10 images a minute, under $0.002 an image, and over 99 % success. Burn is the
rate at which a window spends the budget the objective allows, so 1.0 means "exactly at the
objective" and anything above 1 means the window misses it:

- success rate over 99 %: the budget is the 1 % of executions allowed to fail; burn is the
  failed share divided by that 1 %.
- p95 under 5 s: the budget is the 5 % of executions allowed to be slower than 5 s; burn is
  the share slower than 5 s divided by 5 % (the query counts them: ``slow_share``).
- throughput and cost have no share to spend; burn is how far the figure is from the limit,
  in the direction that misses it: 10/min divided by the throughput, and the cost per image
  divided by $0.002.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol, TypedDict

from radstream.bench.slo import DEFAULT_TARGETS, Target
from radstream.lake.duckdb_runner import QueryResult

OBJECTIVES_QUERY = "dashboard_objectives"


class NamedQueryRunner(Protocol):
    """What runs a query of ``athena_queries.sql`` by name (the local DuckDB runner)."""

    def run_named(self, name: str, params: dict[str, str] | None = None) -> QueryResult:
        """Run the named query with these parameters."""
        ...


class WindowFigure(TypedDict):
    """An objective's figure over one window, its budget burn, and the query it came from."""

    value: float | None
    burn: float | None
    executions: int
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
    """An objective of the tiles, and the column of ``dashboard_objectives`` that measures it."""

    target: Target
    label: str
    column: str


OBJECTIVES: tuple[Objective, ...] = (
    Objective(DEFAULT_TARGETS["p95_ms"], "p95 latency", "p95_ms"),
    Objective(DEFAULT_TARGETS["throughput_per_min"], "Throughput", "throughput_per_min"),
    Objective(DEFAULT_TARGETS["cost_per_image_usd"], "Cost per image", "cost_per_image_usd"),
    Objective(DEFAULT_TARGETS["success_rate"], "Success rate", "success_rate"),
)

P95_BUDGET = 0.05
"""A p95 objective lets 5 % of executions be slower than its limit."""


def _number(value: object) -> float | None:
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


def burn(objective: Objective, record: dict[str, object]) -> float | None:
    """How fast the window of ``record`` (a ``dashboard_objectives`` row) burns the budget."""
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


def objective_tiles(
    runner: NamedQueryRunner, windows: dict[str, dict[str, str]], variant: str
) -> list[ObjectiveTile]:
    """The tiles, with ``dashboard_objectives`` run once per window (name → parameters)."""
    p95_limit = DEFAULT_TARGETS["p95_ms"].limit
    per_window: dict[str, tuple[dict[str, str], dict[str, object]]] = {}
    for name, window_params in windows.items():
        params = {**window_params, "variant": variant, "slow_ms": f"{p95_limit:g}"}
        records = runner.run_named(OBJECTIVES_QUERY, params).records()
        per_window[name] = (params, records[0] if records else {})
    tiles: list[ObjectiveTile] = []
    for objective in OBJECTIVES:
        figures: dict[str, WindowFigure] = {}
        for name, (params, record) in per_window.items():
            executions = _number(record.get("executions"))
            figures[name] = WindowFigure(
                value=_number(record.get(objective.column)),
                burn=burn(objective, record),
                executions=int(executions or 0),
                params=params,
            )
        tiles.append(
            ObjectiveTile(
                name=objective.target.name,
                label=objective.label,
                op=objective.target.op,
                limit=objective.target.limit,
                query=OBJECTIVES_QUERY,
                windows=figures,
            )
        )
    return tiles
