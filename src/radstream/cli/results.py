"""``radstream results list|show|export``: the predictions, read from the outcome objects."""

from __future__ import annotations

from datetime import date
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from radstream.cli.app import (
    AwsEndpointOpt,
    DataDir,
    RegionOpt,
    app,
    console,
    existing_data_dir,
    out,
    settings_for,
    stack_ref,
)
from radstream.cli.problems import ResultsNotFound

if TYPE_CHECKING:
    from radstream.local.results import ResultOutcome, ResultRow
    from radstream.stages.ports import ObjectStore

results_app = typer.Typer(
    help="See the predictions: list outcomes, show a study, export a table.",
    no_args_is_help=True,
)
app.add_typer(results_app, name="results")

StackOpt = Annotated[
    str | None, typer.Option(help="Read the results of this deployed AWS stack instead")
]


class ListFormat(StrEnum):
    """``results list --format``."""

    table = "table"
    csv = "csv"
    json = "json"


class ExportFormat(StrEnum):
    """``results export --format``."""

    csv = "csv"
    parquet = "parquet"


class OutcomeChoice(StrEnum):
    """``--outcome``."""

    succeeded = "succeeded"
    failed = "failed"


def _store(
    data_dir: Path | None, stack: str | None, region: str | None, endpoint_url: str | None
) -> ObjectStore:
    """The local store (which must exist: reading never creates a data directory), or the
    buckets of a deployed stack."""
    settings = settings_for(data_dir)
    if stack is not None:
        from radstream.aws.outcomes import stack_store

        return stack_store(stack_ref(settings, stack, region, endpoint_url))
    from radstream.local.store import FolderStore

    root = existing_data_dir(settings)
    return FolderStore(root / "buckets")


def _untrained_note(rows: list[ResultRow]) -> None:
    from radstream.local.results import UNTRAINED_NOTE

    if any(r.untrained for r in rows):
        console.print(f"[yellow]note[/yellow]: {UNTRAINED_NOTE}")


@results_app.command("list")
def list_cmd(
    study: Annotated[str | None, typer.Option(help="Only this study")] = None,
    outcome: Annotated[OutcomeChoice | None, typer.Option(help="succeeded or failed")] = None,
    since: Annotated[str | None, typer.Option(help="From this UTC date (YYYY-MM-DD)")] = None,
    until: Annotated[str | None, typer.Option(help="Up to this UTC date, inclusive")] = None,
    fmt: Annotated[ListFormat, typer.Option("--format", help="table, csv or json")] = (
        ListFormat.table
    ),
    stack: StackOpt = None,
    region: RegionOpt = None,
    endpoint_url: AwsEndpointOpt = None,
    data_dir: DataDir = None,
) -> None:
    """One line per image: study, image, outcome, top findings or error code, time."""
    from radstream.local.results import ResultFilter, list_results, to_csv, to_json

    chosen: ResultOutcome | None = None
    if outcome is OutcomeChoice.succeeded:
        chosen = "succeeded"
    elif outcome is OutcomeChoice.failed:
        chosen = "failed"
    where = ResultFilter(
        study=study, outcome=chosen, since=_date(since, "--since"), until=_date(until, "--until")
    )
    rows = list_results(_store(data_dir, stack, region, endpoint_url), where)
    if fmt is ListFormat.json:
        out.print_json(to_json(rows))
        return
    if fmt is ListFormat.csv:
        typer.echo(to_csv(rows), nl=False)
        return
    table = Table("study", "image", "outcome", "top findings / error", "time")
    for row in rows:
        colour = "green" if row.outcome == "succeeded" else "yellow"
        table.add_row(
            escape(row.study_id),
            escape(row.image_id),
            f"[{colour}]{row.outcome}[/]",
            escape(row.summary()),
            row.time,
        )
    # Piped or captured, Rich would wrap at 80 columns: keep one line per image instead.
    (out if out.is_terminal else Console(width=250, soft_wrap=True)).print(table)
    console.print(f"{len(rows)} outcome(s)")
    _untrained_note(rows)


@results_app.command()
def show(
    study: Annotated[str, typer.Argument(help="The study id")],
    stack: StackOpt = None,
    region: RegionOpt = None,
    endpoint_url: AwsEndpointOpt = None,
    data_dir: DataDir = None,
) -> None:
    """Every image of a study: its probabilities as a table, or its failure and hint."""
    from radstream.local.results import ResultFilter, list_results

    rows = list_results(_store(data_dir, stack, region, endpoint_url), ResultFilter(study=study))
    if not rows:
        raise ResultsNotFound(f"no result or failure for study {study!r}")
    for row in rows:
        out.print(f"[bold]{escape(row.study_id)} / {escape(row.image_id)}[/bold]  {row.time}")
        if row.outcome == "failed":
            out.print(f"  [yellow]failed[/yellow] {row.error_code}: {escape(row.message or '')}")
            out.print(f"  → {escape(row.hint or '')}")
            continue
        table = Table("label", "probability", title=escape(row.model or ""))
        for label, value in row.probabilities.items():
            table.add_row(label, "—" if value is None else f"{value:.3f}")
        out.print(table)
    _untrained_note(rows)


@results_app.command()
def export(
    fmt: Annotated[ExportFormat, typer.Option("--format", help="csv or parquet")] = (
        ExportFormat.csv
    ),
    output: Annotated[
        Path | None, typer.Option("--output", "-o", help="File to write [csv: stdout]")
    ] = None,
    stack: StackOpt = None,
    region: RegionOpt = None,
    endpoint_url: AwsEndpointOpt = None,
    data_dir: DataDir = None,
) -> None:
    """One row per image with every label's probability (empty for failures)."""
    from radstream.local.results import list_results, to_csv, write_parquet

    rows = list_results(_store(data_dir, stack, region, endpoint_url))
    if fmt is ExportFormat.parquet:
        if output is None:
            raise typer.BadParameter("--format parquet needs --output FILE")
        write_parquet(rows, output)
    elif output is None:
        typer.echo(to_csv(rows), nl=False)
    else:
        output.write_text(to_csv(rows))
    if output is not None:
        console.print(f"wrote {len(rows)} row(s) to {escape(str(output))}")
    _untrained_note(rows)


def _date(value: str | None, option: str) -> date | None:
    if value is None:
        return None
    try:
        return date.fromisoformat(value)
    except ValueError:
        raise typer.BadParameter(f"{option} {value!r}: expected YYYY-MM-DD") from None
