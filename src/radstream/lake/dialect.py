"""Athena (Trino) SQL to DuckDB, with sqlglot; every fix to the translation lives here.

sqlglot does the translation. Where its output is wrong for our purpose, the fix goes into
:data:`_FIXES`, one function per difference, each with a test.
"""

from __future__ import annotations

from collections.abc import Callable

import sqlglot
from sqlglot import exp

from radstream.errors import RadStreamError


class QuerySyntaxError(RadStreamError):
    """SQL that is not valid Athena SQL."""

    code = "QUERY_SYNTAX"
    hint = "Queries are written in Athena (Trino) SQL; check the statement near the position given."


def _exact_percentiles(node: exp.Expression) -> exp.Expression:
    # Athena only has approx_percentile; sqlglot maps it to DuckDB's APPROX_QUANTILE, a
    # t-digest whose answers move with the data's order. Locally the exact QUANTILE_CONT
    # costs little and agrees with NumPy's default (linear) percentile, which the tests and
    # the benchmark use; on Athena the answer is within its documented approximation.
    if isinstance(node, exp.ApproxQuantile):
        return exp.Anonymous(this="quantile_cont", expressions=[node.this, node.args["quantile"]])
    return node


_FIXES: tuple[Callable[[exp.Expression], exp.Expression], ...] = (_exact_percentiles,)


def parse_athena(sql: str) -> exp.Expression:
    """Parse Athena SQL; raise ``QuerySyntaxError`` with the position on failure."""
    try:
        tree = sqlglot.parse_one(sql, read="athena", error_level=sqlglot.ErrorLevel.RAISE)
    except sqlglot.errors.ParseError as exc:
        raise QuerySyntaxError(f"not valid Athena SQL: {exc}") from None
    if not isinstance(tree, exp.Expression):
        raise QuerySyntaxError("not a single SQL statement")
    return tree


def athena_to_duckdb(sql: str) -> str:
    """DuckDB SQL that computes what ``sql`` computes on Athena (``:name`` → ``$name``)."""
    tree = parse_athena(sql)
    for fix in _FIXES:
        tree = tree.transform(fix)
    return tree.sql(dialect="duckdb")
