"""Athena execution parameters, checked by real SQL parsers rather than by the tests' own
model of how Athena splices them.

Athena inserts each ``ExecutionParameters`` string into the query as SQL text. So every
string the runner sends must be, on its own, exactly one literal whose value is the
Python value it came from: DuckDB evaluates ``SELECT <literal>`` and must give back that
value with the type DuckDB binds it as locally, and sqlglot's Trino parser must see a
single literal projection. A value built to break out of its quotes must come back as the
same string, not as SQL.
"""

from __future__ import annotations

import duckdb
import pytest
import sqlglot
from sqlglot import exp

from radstream.aws.athena_runner import athena_literal, to_positional
from radstream.lake.queries import named_queries

TRICKY = [
    "plain",
    "it's",
    "x' OR '1'='1",
    "'; DROP TABLE radstream.telemetry; --",
    "-- not a comment",
    "/* nor this */",
    "back\\slash",
    "new\nline",
    "ünïcødé ✓",
    "''",
    "",
    "?",
    ":name",
]
VALUES: list[object] = [*TRICKY, 0, 7, -2, 2**40, 0.5, -1e-7, 1.25e300, True, False, None]
DUCK_TYPES = {str: "VARCHAR", bool: "BOOLEAN", float: "DOUBLE"}


def _duck_type(value: object) -> set[str]:
    if value is None:
        return {"NULL", '"NULL"'}
    if isinstance(value, int) and not isinstance(value, bool):
        return {"INTEGER", "BIGINT"}
    return {DUCK_TYPES[type(value)]}


@pytest.mark.parametrize("value", VALUES, ids=repr)
def test_each_literal_evaluates_to_its_value_on_duckdb(value: object) -> None:
    literal = athena_literal(value)  # type: ignore[arg-type]
    rows = duckdb.connect(":memory:").execute(f"SELECT {literal}, typeof({literal})").fetchall()
    assert len(rows) == 1 and len(rows[0]) == 2, literal  # one value: no SQL got out
    got, kind = rows[0]
    assert got == value and type(got) is type(value), (literal, got)
    assert kind in _duck_type(value), (literal, kind)


@pytest.mark.parametrize("value", VALUES, ids=repr)
def test_each_literal_is_one_literal_to_trino(value: object) -> None:
    literal = athena_literal(value)  # type: ignore[arg-type]
    tree = sqlglot.parse_one(f"SELECT {literal}", read="trino")
    [projection] = tree.expressions
    if isinstance(projection, exp.Neg):
        projection = projection.this
    assert isinstance(projection, exp.Literal | exp.Boolean | exp.Null), (literal, projection)


def test_every_named_query_sends_one_parameter_per_placeholder() -> None:
    queries = named_queries()
    assert queries
    for name, query in queries.items():
        text, values = to_positional(query.sql, query.bind({}))
        tokens = sqlglot.tokenize(text, read="athena")
        marks = [t for t in tokens if t.token_type == sqlglot.TokenType.PLACEHOLDER]
        assert len(marks) == len(values), name
        assert not [t for t in tokens if t.token_type == sqlglot.TokenType.COLON], name
        for literal in values:
            duckdb.connect(":memory:").execute(f"SELECT {literal}").fetchall()
