"""Each metric has exactly one named query: no two queries of ``athena_queries.sql`` compute the
same figure.

A *metric* here is an output column that aggregates (anything but ``arbitrary``) and is not
a group key. Its *definition* is its expression with the columns it reads from a ``WITH``
step replaced by what that step computes (all the way down to the table), together with the
filters on the way that take no parameter (``status = 'ok'``, ``stage = 'infer'``, the
"finished" ``HAVING``). Filters that take a parameter (the window, the variant) and the
grouping are left out on purpose: a copy of a query with a window or a variant added, or
grouped another way, is a second definition of the same metric, and must be a parameter of
the first instead. That is what the dashboard's own ``dashboard_*`` copies were.
"""

from __future__ import annotations

from collections import defaultdict

import pytest
from sqlglot import exp

from radstream.lake.dialect import parse_athena
from radstream.lake.queries import NamedQuery, named_queries, parse_queries

_NOT_METRICS = (exp.AnyValue,)  # arbitrary(x): a label carried along, not a figure


def _conjuncts(node: exp.Expression | None) -> list[exp.Expression]:
    if node is None:
        return []
    if isinstance(node, exp.And):
        return _conjuncts(node.left) + _conjuncts(node.right)
    if isinstance(node, exp.Paren):
        return _conjuncts(node.this)
    return [node]


def _fixed_filters(select: exp.Select) -> list[str]:
    """The filters of one SELECT that take no parameter (WHERE and HAVING)."""
    found = []
    for clause in ("where", "having"):
        part = select.args.get(clause)
        for pred in _conjuncts(part.this if part is not None else None):
            if not any(True for _ in pred.find_all(exp.Placeholder)):
                found.append(pred.sql())
    return found


class Scope:
    """The ``WITH`` steps of one query, to follow a column back to what computes it."""

    def __init__(self, tree: exp.Expression) -> None:
        self.steps: dict[str, exp.Select] = {}
        for cte in tree.find_all(exp.CTE):
            assert isinstance(cte.this, exp.Select)
            self.steps[cte.alias] = cte.this

    def source(self, select: exp.Select) -> exp.Select | None:
        """The WITH step ``select`` reads from, or None for the table itself."""
        from_ = select.args.get("from_") or select.args.get("from")
        table = from_.this if from_ is not None else None
        if isinstance(table, exp.Table) and not table.db and table.name in self.steps:
            return self.steps[table.name]
        return None

    def resolve(self, name: str, select: exp.Select) -> tuple[exp.Expression, list[str]] | None:
        """What computes output column ``name`` of ``select``, inlined, and the filters met."""
        for projection in select.expressions:
            if isinstance(projection, exp.Star) or (
                isinstance(projection, exp.Column) and isinstance(projection.this, exp.Star)
            ):
                continue
            if projection.alias_or_name == name:
                return self.inline(projection.unalias(), select)
        source = self.source(select)
        if source is not None:  # through a ``SELECT step.*``
            return self.resolve(name, source)
        return None

    def inline(self, node: exp.Expression, select: exp.Select) -> tuple[exp.Expression, list[str]]:
        """``node`` (in ``select``) with each column of a WITH step replaced by its definition."""
        filters = _fixed_filters(select)
        source = self.source(select)
        if source is None:
            return node.copy(), filters

        def replace(sub: exp.Expression) -> exp.Expression:
            if isinstance(sub, exp.Column) and not isinstance(sub.this, exp.Star):
                found = self.resolve(sub.name, source)
                if found is not None:
                    filters.extend(found[1])
                    inner = found[0]
                    return inner if isinstance(inner, exp.Column) else exp.Paren(this=inner)
            return sub

        return node.copy().transform(replace), filters


def _group_keys(select: exp.Select) -> tuple[set[int], set[str]]:
    group = select.args.get("group")
    if group is None:
        return set(), set()
    ordinals = {int(g.name) for g in group.expressions if isinstance(g, exp.Literal)}
    return ordinals, {g.sql() for g in group.expressions}


def metric_definitions(query: NamedQuery) -> dict[str, str]:
    """Output column → the definition of the metric it holds (metrics only)."""
    tree = parse_athena(query.sql)
    assert isinstance(tree, exp.Select), query.name
    scope = Scope(tree)
    ordinals, keys = _group_keys(tree)
    found: dict[str, str] = {}
    for position, projection in enumerate(tree.expressions, start=1):
        bare = projection.unalias()
        if position in ordinals or bare.sql() in keys:
            continue  # a dimension
        resolved = scope.resolve(projection.alias_or_name, tree)
        assert resolved is not None, (query.name, projection.sql())
        expression, filters = resolved
        aggregates = [
            a for a in expression.find_all(exp.AggFunc) if not isinstance(a, _NOT_METRICS)
        ]
        if not aggregates and not any(True for _ in expression.find_all(exp.Subquery)):
            continue  # a key or a label, not a figure
        found[projection.alias_or_name] = (
            expression.sql() + " WHERE " + " AND ".join(sorted(set(filters)))
        )
    return found


def duplicates(queries: dict[str, NamedQuery]) -> dict[str, list[str]]:
    """Definitions computed by more than one query: definition → ``query.column`` each."""
    where: dict[str, list[str]] = defaultdict(list)
    for query in queries.values():
        for column, definition in metric_definitions(query).items():
            where[definition].append(f"{query.name}.{column}")
    return {d: places for d, places in where.items() if len({p.split(".")[0] for p in places}) > 1}


def test_no_two_named_queries_define_the_same_metric() -> None:
    assert duplicates(named_queries()) == {}


def test_every_named_query_defines_some_metric() -> None:
    for query in named_queries().values():
        assert metric_definitions(query), query.name


def test_the_latency_definition_follows_the_with_steps() -> None:
    definitions = metric_definitions(named_queries()["execution_latency_percentiles"])
    p95 = definitions["p95_ms"]
    # The percentile is of the end-to-end latency as the WITH step computes it, only over
    # finished executions: the definition carries both.
    assert "DATEDIFF(MAX(end_ts), MIN(start_ts)" in p95 and "queue_wait_ms" in p95
    assert "'record_failure'" in p95
    assert "bucket" not in definitions and "outcome" not in definitions  # dimensions


# A copy of stage_latency with a window and a variant added (as dashboard_stage_latency was),
# one grouped by minute instead, and one that measures something else.
_COPIES = """
-- name: stage_latency
-- description: d
SELECT stage, count(*) AS n, approx_percentile(duration_ms, 0.95) AS p95_ms
FROM radstream.telemetry WHERE dt BETWEEN :start_date AND :end_date AND status = 'ok'
GROUP BY stage;

-- name: windowed_copy
-- description: d
SELECT stage, approx_percentile(duration_ms, 0.95) AS p95
FROM radstream.telemetry
WHERE dt BETWEEN :start_date AND :end_date AND status = 'ok'
  AND end_ts >= CAST(:from_ts AS TIMESTAMP WITH TIME ZONE) AND (:variant = '' OR variant = :variant)
GROUP BY stage;

-- name: per_minute_copy
-- description: d
WITH ok AS (SELECT date_trunc('minute', end_ts) AS minute, duration_ms FROM radstream.telemetry
  WHERE status = 'ok' AND dt BETWEEN :start_date AND :end_date)
SELECT minute, approx_percentile(duration_ms, 0.95) AS p95_ms FROM ok GROUP BY 1;

-- name: another_metric
-- description: d
SELECT stage, approx_percentile(duration_ms, 0.95) AS p95_ms
FROM radstream.telemetry WHERE status = 'failed' GROUP BY stage;
"""


def test_the_check_finds_copies_with_filters_or_another_grouping() -> None:
    found = duplicates(parse_queries(_COPIES))
    assert list(found.values()) == [
        ["stage_latency.p95_ms", "windowed_copy.p95", "per_minute_copy.p95_ms"]
    ]


@pytest.mark.parametrize("name", sorted(named_queries()))
def test_each_query_reads_the_telemetry_table(name: str) -> None:
    tree = parse_athena(named_queries()[name].sql)
    assert "radstream.telemetry" in {t.sql() for t in tree.find_all(exp.Table)}


# Columns of the per-execution step that define what an execution's latency and outcome are.
_PER_EXECUTION_DEFINITIONS = ("succeeded", "e2e_ms")


def _per_execution(query: NamedQuery) -> exp.Select | None:
    tree = parse_athena(query.sql)
    for cte in tree.find_all(exp.CTE):
        if cte.alias == "per_execution":
            select = cte.this
            assert isinstance(select, exp.Select)
            return select
    return None


def test_every_per_execution_step_defines_latency_and_outcome_alike() -> None:
    """Queries that list executions before they aggregate (the slowest ones, the latency
    percentiles) each need the step in their own text (a named query stands alone), so the
    copies must stay the same: the same end-to-end latency, success flag and filters."""
    steps = {
        name: step
        for name, q in named_queries().items()
        if (step := _per_execution(q)) is not None
        and "e2e_ms" in {e.alias_or_name for e in step.expressions}
    }
    assert len(steps) >= 2, sorted(steps)
    shapes = set()
    for step in steps.values():
        columns = {e.alias_or_name: e.sql() for e in step.expressions}
        shapes.add(
            (
                tuple(columns[c] for c in _PER_EXECUTION_DEFINITIONS),
                step.args["where"].sql(),
                step.args["having"].sql(),
            )
        )
    assert len(shapes) == 1, shapes
