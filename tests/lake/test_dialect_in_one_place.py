"""README: "the one place where its translation is changed is lake/dialect.py
(approx_percentile becomes the exact quantile_cont, so local figures equal NumPy's)".

The older check looked for a function name in the translated text. Here: (1) no other
module translates SQL with sqlglot (an AST scan of every source file), and (2) on DuckDB
the translated query returns NumPy's linear percentile exactly, on data where sqlglot's own
translation (APPROX_QUANTILE) does not, so the fix is shown to be needed and to work.
"""

from __future__ import annotations

import ast
from pathlib import Path

import duckdb
import numpy as np
import sqlglot

import radstream
from radstream.lake.dialect import athena_to_duckdb

SRC = Path(radstream.__file__).resolve().parent
HOME = SRC / "lake" / "dialect.py"
# Calls that turn a parsed tree (or text) into another dialect's SQL, or rewrite a tree.
TRANSLATING = {"transpile", "transform"}


def _translations(path: Path) -> list[str]:
    """``name:line`` of every translating call in ``path``: sqlglot.transpile, .transform,
    and .sql(dialect=...) / .sql("duckdb")."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if not isinstance(node, ast.Call) or not isinstance(node.func, ast.Attribute | ast.Name):
            continue
        name = node.func.attr if isinstance(node.func, ast.Attribute) else node.func.id
        dialect_sql = name == "sql" and (
            node.args or any(k.arg in ("dialect", "write") for k in node.keywords)
        )
        if name in TRANSLATING or dialect_sql:
            found.append(f"{name}:{node.lineno}")
    return found


def test_only_dialect_py_translates_sql() -> None:
    elsewhere = {
        str(path.relative_to(SRC)): calls
        for path in sorted(SRC.rglob("*.py"))
        if path != HOME and (calls := _translations(path))
    }
    assert elsewhere == {}
    assert _translations(HOME)  # the scan does see a translation where there is one


def test_translated_percentiles_equal_numpys_where_sqlglots_do_not() -> None:
    values = np.random.default_rng(1).lognormal(3.0, 1.0, 5000)
    conn = duckdb.connect(":memory:")
    conn.execute("CREATE TABLE t (x DOUBLE)")
    conn.executemany("INSERT INTO t VALUES (?)", [[float(v)] for v in values])
    athena = "SELECT approx_percentile(x, 0.95) AS p FROM t"
    plain = sqlglot.transpile(athena, read="athena", write="duckdb")[0]
    expected = float(np.percentile(values, 95))
    [(ours,)] = conn.execute(athena_to_duckdb(athena)).fetchall()
    [(theirs,)] = conn.execute(plain).fetchall()
    assert ours == expected  # exact, not approximately
    assert theirs != expected  # without the fix the figures would differ from NumPy's
