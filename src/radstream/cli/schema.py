"""``schema``: print a contract's JSON Schema."""

from __future__ import annotations

import json
import sys
from typing import Annotated

import typer

from radstream.cli.app import DataDir, app


@app.command()
def schema(
    name: Annotated[str, typer.Argument(help="sidecar | result | failure | telemetry")],
    data_dir: DataDir = None,
) -> None:
    """Print a contract's JSON Schema."""
    from radstream.schema import SCHEMAS

    model = SCHEMAS.get(name)
    if model is None:
        raise typer.BadParameter(f"choose one of {', '.join(SCHEMAS)}")
    sys.stdout.write(json.dumps(model.model_json_schema(), indent=2) + "\n")
