"""The ``radstream`` command (Typer + Rich). Thin: each command calls one public function.

One module per command group; each registers its commands on the apps of
:mod:`radstream.cli.app` when imported. The console script is ``radstream.cli:app``;
``python -m radstream.cli`` runs the same.
"""

from __future__ import annotations

import importlib

from radstream.cli.app import app

__all__ = ["COMMAND_MODULES", "app", "main"]

COMMAND_MODULES = (
    "pipeline",
    "upload",
    "results",
    "config",
    "schema",
    "model",
    "bench",
    "lake",
    "aws",
    "dicom",
    "ab",
    "dashboard",
)
"""The command groups, in the order ``--help`` lists them (registration order)."""

for _module in COMMAND_MODULES:
    importlib.import_module(f"radstream.cli.{_module}")


def main() -> None:
    """Console-script entry point."""
    app()
