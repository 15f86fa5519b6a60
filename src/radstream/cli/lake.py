"""The telemetry lake: ``query`` (DuckDB locally, Athena on a stack) and ``lake …``."""

from __future__ import annotations

import csv
import json
import sys
from collections.abc import Sequence
from datetime import timedelta
from enum import StrEnum
from typing import Annotated

import typer
from rich.markup import escape
from rich.table import Table

from radstream.cli.app import (
    AwsEndpointOpt,
    DataDir,
    RegionOpt,
    app,
    lake_app,
    out,
    settings_for,
    stack_ref,
)
from radstream.layout import TELEMETRY


class OutputFormat(StrEnum):
    """How query results are printed."""

    table = "table"
    csv = "csv"
    json = "json"


@app.command()
def query(
    name: Annotated[str | None, typer.Argument(help="A named query (see --list)")] = None,
    list_queries: Annotated[bool, typer.Option("--list", help="List the named queries")] = False,
    param: Annotated[
        list[str] | None, typer.Option("--param", help="name=value (repeatable)")
    ] = None,
    sql: Annotated[str | None, typer.Option("--sql", help="Ad-hoc Athena SQL")] = None,
    fmt: Annotated[OutputFormat, typer.Option("--format")] = OutputFormat.table,
    data_dir: DataDir = None,
    stack: Annotated[
        str | None, typer.Option("--stack", help="Run on Athena, in this deployed stack")
    ] = None,
    region: RegionOpt = None,
    endpoint_url: AwsEndpointOpt = None,
) -> None:
    """Run Athena SQL over the telemetry lake (DuckDB locally, or Athena with --stack)."""
    from radstream.lake.duckdb_runner import LocalQueryRunner
    from radstream.lake.queries import named_queries

    if list_queries:
        for q in named_queries().values():
            takes = ", ".join(f"{p}={q.defaults.get(p, '?')}" for p in q.params)
            out.print(
                f"[bold]{escape(q.name)}[/bold]  {escape(q.description)}  "
                f"[dim]({escape(takes)})[/dim]"
            )
        return
    if (name is None) == (sql is None):
        raise typer.BadParameter("give a query NAME, or --sql, or --list")
    params = dict(split_param(p) for p in param or [])
    settings = settings_for(data_dir)
    if stack:
        from radstream.aws.athena_runner import AthenaQueryRunner

        athena = AthenaQueryRunner.for_stack(stack_ref(settings, stack, region, endpoint_url))
        result = athena.run_named(name, params) if name else athena.run_sql(sql or "", params)
    else:
        with LocalQueryRunner(settings.lake_dir) as runner:
            result = runner.run_named(name, params) if name else runner.run_sql(sql or "", params)
    print_rows(result.columns, result.rows, fmt)


def split_param(text: str) -> tuple[str, str]:
    """``name=value`` → (name, value); a usage error otherwise."""
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise typer.BadParameter(f"--param {text!r}: expected name=value")
    return key, value


def print_rows(columns: list[str], rows: Sequence[Sequence[object]], fmt: OutputFormat) -> None:
    """Print a query's rows as a table, CSV, or a JSON list of objects."""
    if fmt is OutputFormat.json:
        records = [dict(zip(columns, r, strict=True)) for r in rows]
        sys.stdout.write(json.dumps(records, default=str) + "\n")
    elif fmt is OutputFormat.csv:
        writer = csv.writer(sys.stdout)
        writer.writerow(columns)
        writer.writerows(rows)
    else:
        table = Table(*columns)
        for row in rows:
            # 6 significant digits: latencies keep their ms, and costs of $0.00015 stay visible.
            table.add_row(*(f"{v:.6g}" if isinstance(v, float) else escape(str(v)) for v in row))
        out.print(table)


@lake_app.command("glue-schema")
def lake_glue_schema(
    fmt: Annotated[str, typer.Option("--format", help="json (Glue TableInput) or ddl")] = "json",
    location: Annotated[
        str, typer.Option(help="S3 prefix of the telemetry table")
    ] = f"s3://radstream-telemetry/{TELEMETRY}",
) -> None:
    """Print the Glue table of radstream.telemetry, derived from the telemetry model."""
    from radstream.lake.glue import DATABASE, create_table_ddl, table_input

    if fmt == "ddl":
        sys.stdout.write(create_table_ddl(location) + ";\n")
    elif fmt == "json":
        doc = {"DatabaseName": DATABASE, "TableInput": table_input(location)}
        sys.stdout.write(json.dumps(doc, indent=2) + "\n")
    else:
        raise typer.BadParameter("--format is json or ddl")


@lake_app.command("compact")
def lake_compact(data_dir: DataDir = None) -> None:
    """Merge each partition's small Parquet files into one, atomically."""
    from radstream.lake.compact import compact_lake

    report = compact_lake(settings_for(data_dir).lake_dir)
    out.print(
        f"{report.partitions} partitions: {report.files_before} files → {report.files_after}, "
        f"{report.rows} rows rewritten"
    )


def parse_days(text: str) -> timedelta:
    """``30d`` → 30 days; a usage error otherwise."""
    if not text.endswith("d") or not text[:-1].isdigit():
        raise typer.BadParameter("--older-than takes days, such as 30d")
    return timedelta(days=int(text[:-1]))


@lake_app.command("prune")
def lake_prune(
    older_than: Annotated[str, typer.Option(help="Age such as 30d")] = "30d",
    data_dir: DataDir = None,
) -> None:
    """Delete partitions older than the given number of days."""
    from radstream.lake.compact import prune

    removed = prune(settings_for(data_dir).lake_dir, older_than=parse_days(older_than))
    out.print(f"removed {len(removed)} day(s): {', '.join(removed) or '-'}")
