"""Run Athena SQL locally: DuckDB over the Parquet lake, as table ``radstream.telemetry``."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa

# One QueryFailed for both engines: error codes must be unique (see radstream.errors).
from radstream.errors import QueryFailed
from radstream.lake.columns import PARTITION_KEYS, arrow_schema
from radstream.lake.dialect import athena_to_duckdb
from radstream.lake.files import visible_files
from radstream.lake.queries import get_query

DATABASE = "radstream"
_RETRIES = 3
TABLE = "telemetry"
LOCAL_HINT = (
    "The query ran locally, in DuckDB over the Parquet lake under the data directory, as "
    "table telemetry (or radstream.telemetry); `radstream lake glue-schema` lists its "
    "columns. Check the names in the message, and --data-dir."
)
"""QueryFailed's own hint speaks of Athena; a local failure carries this one in its details
(``details["hint"]``), which the CLI prints instead."""


@dataclass(frozen=True)
class QueryResult:
    """Column names and rows of a query."""

    columns: list[str]
    rows: list[tuple[Any, ...]]

    def records(self) -> list[dict[str, Any]]:
        """Rows as dicts."""
        return [dict(zip(self.columns, row, strict=True)) for row in self.rows]


class LocalQueryRunner:
    """DuckDB in process, with the lake mounted as ``radstream.telemetry``."""

    def __init__(self, lake_dir: Path, *, threads: int | None = None) -> None:
        self._lake_dir = lake_dir
        self._conn = duckdb.connect(":memory:")
        if threads:
            self._conn.execute(f"SET threads = {int(threads)}")
        self._conn.execute(f"CREATE SCHEMA {DATABASE}")
        # Athena resolves a bare ``telemetry`` through the workgroup's default database;
        # here the search path does the same, so both engines run the query as typed.
        self._conn.execute(f"SET search_path = '{DATABASE},main'")
        self._mount()

    def _mount(self) -> None:
        self._conn.execute(f"DROP VIEW IF EXISTS {DATABASE}.{TABLE}")
        files = [str(p) for p in visible_files(self._lake_dir)]
        if files:
            # union_by_name: files written before a column was added still read (as NULL).
            # Partition values stay strings, as in the Glue table.
            # A view cannot take bound parameters, so the paths are quoted literals.
            listing = ", ".join("'" + f.replace("'", "''") + "'" for f in files)
            self._conn.execute(
                f"CREATE VIEW {DATABASE}.{TABLE} AS SELECT * FROM read_parquet([{listing}], "
                "hive_partitioning = true, union_by_name = true, "
                "hive_types = {'dt': VARCHAR, 'hour': VARCHAR})"
            )
        else:
            empty = arrow_schema().empty_table()
            for key in PARTITION_KEYS:
                empty = empty.append_column(key, pa.array([], type=pa.string()))
            self._conn.register("_empty_lake", empty)  # replaces an earlier registration
            self._conn.execute(f"CREATE VIEW {DATABASE}.{TABLE} AS SELECT * FROM _empty_lake")

    def run_sql(self, athena_sql: str, params: dict[str, str] | None = None) -> QueryResult:
        """Translate Athena SQL to DuckDB and run it with bound parameters."""
        sql = athena_to_duckdb(athena_sql)
        for attempt in range(_RETRIES):
            try:
                cursor = self._conn.execute(sql, params or None)
                break
            except duckdb.IOException as exc:
                # A compaction finished meanwhile and removed files we had listed.
                if attempt == _RETRIES - 1:
                    raise QueryFailed(f"query failed: {exc}", hint=LOCAL_HINT) from None
                self._mount()
            except duckdb.Error as exc:
                raise QueryFailed(f"query failed: {exc}", hint=LOCAL_HINT) from None
        columns = [d[0] for d in cursor.description or []]
        return QueryResult(columns=columns, rows=cursor.fetchall())

    def run_named(self, name: str, params: dict[str, str] | None = None) -> QueryResult:
        """Run a query of ``athena_queries.sql`` by name."""
        query = get_query(name)
        return self.run_sql(query.sql, query.bind(params or {}))

    def close(self) -> None:
        """Close the DuckDB connection."""
        self._conn.close()

    def __enter__(self) -> LocalQueryRunner:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
