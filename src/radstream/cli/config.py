"""``radstream config show|reference``: the effective settings, where each came from, and
the configuration reference the README carries."""

from __future__ import annotations

import json
from dataclasses import asdict

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from radstream.cli.app import DataDir, JsonOpt, app, console, out, settings_for
from radstream.settings import Key, config_file, effective_settings, reference_markdown

config_app = typer.Typer(
    help="The settings: what is in effect and where it came from.", no_args_is_help=True
)
app.add_typer(config_app, name="config")


@config_app.command()
def show(as_json: JsonOpt = False, data_dir: DataDir = None) -> None:
    """Every setting's effective value and its source: default, file, environment or flag."""
    settings = settings_for(data_dir)
    flags: dict[Key, str] = {("data_dir",): "--data-dir"} if data_dir is not None else {}
    rows = effective_settings(settings, flags)
    if as_json:
        out.print_json(json.dumps([asdict(r) for r in rows]))
        return
    path = config_file()
    console.print(
        f"settings file {escape(str(path))}" + ("" if path.is_file() else " (none there)")
    )
    table = Table("key", "value", "from")
    for row in rows:
        origin = row.origin if not row.where else f"{row.origin} {row.where}"
        colour = "dim" if row.origin == "default" else "bold"
        table.add_row(row.key, escape(row.value), f"[{colour}]{escape(origin)}[/]")
    # Piped or captured, Rich would wrap at 80 columns: keep one line per setting instead.
    (out if out.is_terminal else Console(width=200, soft_wrap=True)).print(table)


@config_app.command()
def reference() -> None:
    """Print the configuration reference (Markdown), as the README carries it."""
    typer.echo(reference_markdown(), nl=False)
