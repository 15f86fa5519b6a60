"""The Typer app, its command groups, global options, and what every command shares.

The command modules (``pipeline``, ``upload``, ``model``, ``bench``, ``lake``, ``aws``,
``schema``) register their commands on the apps defined here; ``radstream.cli`` imports
them all, so ``radstream.cli:app`` is the whole command.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Console
from rich.markup import escape
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
)

from radstream.cli.handler import CliState, RadStreamGroup
from radstream.cli.problems import DataDirMissing
from radstream.logs import LogFormat, configure
from radstream.settings import Settings, load_settings

if TYPE_CHECKING:
    from radstream.aws.session import StackRef
    from radstream.local.engine import LocalEngine

app = typer.Typer(
    cls=RadStreamGroup,
    help=(
        "RadStream: chest X-ray inference pipeline (embedded engine).\n\n"
        "Exit status: 0 done; 1 the run's verdict is bad (lost studies, an SLO breach, a "
        "worker that failed); 2 a usage or RadStream error (its code and hint are printed); "
        "3 an internal error (run again with --debug for the traceback)."
    ),
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
model_app = typer.Typer(help="Build and inspect model files.", no_args_is_help=True)
app.add_typer(model_app, name="model")
aws_app = typer.Typer(
    help="AWS backend: template, package, deploy, status, destroy.", no_args_is_help=True
)
app.add_typer(aws_app, name="aws")
lake_app = typer.Typer(
    help="Telemetry lake: Glue schema, compaction, pruning.", no_args_is_help=True
)
app.add_typer(lake_app, name="lake")

console = Console(stderr=True, soft_wrap=True)
"""Progress, notes and warnings (stderr)."""
out = Console(soft_wrap=True)
"""Results (stdout)."""


LOGGING_COMMANDS = frozenset({"run", "serve", "demo", "model"})
"""The commands whose work logs (worker pools, the model server): the global options set
up logging for these only, so that commands run in-process (tests) leave the logging of
the caller alone; the others print their results and report errors themselves."""


class LogFormatChoice(StrEnum):
    """``--log-format``."""

    json = "json"
    text = "text"


@app.callback()
def global_options(
    ctx: typer.Context,
    debug: Annotated[
        bool, typer.Option("--debug", help="On an error, show the full traceback")
    ] = False,
    log_level: Annotated[
        str,
        typer.Option(
            "--log-level",
            help="Logs of run, serve, demo and model: DEBUG, INFO, WARNING or ERROR",
        ),
    ] = "INFO",
    log_format: Annotated[
        LogFormatChoice | None,
        typer.Option(
            "--log-format",
            help="Logs as JSON lines or text; by default text on a terminal, json otherwise",
        ),
    ] = None,
) -> None:
    """RadStream: chest X-ray inference pipeline (embedded engine)."""
    level = log_level.upper()
    if level not in ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"):
        raise typer.BadParameter(f"--log-level {log_level!r}: DEBUG, INFO, WARNING or ERROR")
    fmt: LogFormat
    if log_format is None:
        fmt = "text" if sys.stderr.isatty() else "json"
    else:
        fmt = "json" if log_format is LogFormatChoice.json else "text"
    ctx.obj = CliState(debug=debug, log_level=level, log_format=fmt)
    if ctx.invoked_subcommand in LOGGING_COMMANDS:
        # Worker processes copy this setup when the pool spawns them.
        configure(level, fmt)


DataDir = Annotated[
    Path | None,
    typer.Option(
        "--data-dir", help="Data directory [default: ./.radstream, or RADSTREAM_DATA_DIR]"
    ),
]
ModelPath = Annotated[
    Path | None,
    typer.Option("--model", help="Your ONNX model [default: the stand-in, built on first use]"),
]
RegionOpt = Annotated[str | None, typer.Option(help="AWS region [aws.region]")]
AwsEndpointOpt = Annotated[
    str | None,
    typer.Option(help="Send every AWS call here, e.g. an emulator [aws.endpoint_url]"),
]
JsonOpt = Annotated[bool, typer.Option("--json", help="One JSON object on stdout")]


def settings_for(
    data_dir: Path | None,
    model: Path | None = None,
    *,
    workers: int | None = None,
    image_wait_s: float | None = None,
) -> Settings:
    """The settings, with the command's flags on top (a flag left unset changes nothing)."""
    settings = load_settings(data_dir=data_dir)
    if model is not None:
        settings = settings.model_copy(
            update={"model": settings.model.model_copy(update={"path": model})}
        )
    engine = settings.engine
    if workers is not None:
        engine = engine.model_copy(update={"workers": workers})
    if image_wait_s is not None:
        engine = engine.model_copy(update={"image_wait_s": image_wait_s})
    return settings.model_copy(update={"engine": engine})


def stack_ref(
    settings: Settings, name: str, region: str | None, endpoint_url: str | None
) -> StackRef:
    """The deployed stack ``name``, reached through the flags, else the settings."""
    from radstream.aws.session import AwsTarget, StackRef

    target = AwsTarget(
        region=region or settings.aws.region, endpoint_url=endpoint_url or settings.aws.endpoint_url
    )
    return StackRef(name=name, target=target)


def progress_bar() -> Progress:
    """The progress display of long commands (stderr, so stdout stays parseable)."""
    return Progress(
        TextColumn("{task.description:<9}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=console,
        transient=False,
    )


def phase_progress(bar: Progress) -> Callable[[str, int, int], None]:
    """A ``progress(phase, done, total)`` callback that shows one bar per phase."""
    tasks: dict[str, TaskID] = {}

    def progress(phase: str, done: int, total: int) -> None:
        if phase not in tasks:
            tasks[phase] = bar.add_task(phase, total=total)
        bar.update(tasks[phase], completed=done)

    return progress


def open_engine(settings: Settings) -> LocalEngine:
    """Open the local engine, saying so on stderr when this creates its data directory."""
    from radstream.local.engine import LocalEngine

    if not settings.db_path.is_file():
        console.print(f"creating data directory {escape(str(settings.data_dir.resolve()))}")
    return LocalEngine.open(settings)


def existing_data_dir(settings: Settings) -> Path:
    """The data directory, which must already hold an engine: commands that only read never
    create an empty one (that would show zeros for a directory the user did not mean)."""
    if not settings.db_path.is_file():
        raise DataDirMissing(
            f"no RadStream data directory at {settings.data_dir.resolve()}",
            data_dir=str(settings.data_dir),
        )
    return settings.data_dir


def own_data_dir(settings: Settings, flag: Path | None, name: str) -> Settings:
    """Settings whose data directory is ``{data_dir}/{name}`` unless ``--data-dir`` was given.

    ``demo`` and ``bench`` write synthetic studies: in their own directory these never enter
    the operational store, results, status or lake, and one ``rm -r`` removes them. The
    stand-in model stays cached once, in the main data directory's ``models/``.
    """
    if flag is not None:
        return settings
    model = settings.model
    if model.path is None and not model.endpoint:
        from radstream.model.loading import resolve_model_path

        model = model.model_copy(update={"path": resolve_model_path(settings)})
    return settings.model_copy(update={"data_dir": settings.data_dir / name, "model": model})
