"""``radstream config show``: the effective settings and where each value came from."""

from __future__ import annotations

import typer

from radstream.cli.app import app

config_app = typer.Typer(help="Inspect the settings.", no_args_is_help=True)
app.add_typer(config_app, name="config")
