"""The CLI's one error handler: every error that reaches a command becomes one message.

A :class:`~radstream.errors.RadStreamError` prints ``error CODE: message`` and its hint and
exits with status 2; invalid settings (a pydantic ``ValidationError`` of ``Settings``) and
missing AWS credentials or an unreachable AWS endpoint print the same way. Anything else is
a bug: ``INTERNAL_ERROR`` with a one-line message, status 3. ``--debug`` prints the full
traceback before the message. Click's own exceptions (usage errors, ``typer.Exit``) pass
through untouched, so their exit statuses are Click's.

The handler sits in the root group's ``invoke``, not around ``app()``, so that it also
applies when tests call the app through ``typer.testing.CliRunner``.
"""

from __future__ import annotations

import sys
import tomllib
import traceback
from dataclasses import dataclass
from typing import Any

import typer
from pydantic import ValidationError
from typer.core import TyperGroup

from radstream.errors import ConfigInvalid, RadStreamError
from radstream.logs import LogFormat, get_logger
from radstream.settings import config_file

EXIT_ERROR = 2
"""A RadStream error (bad input, bad settings, a missing stack): the user can fix it."""
EXIT_INTERNAL = 3
"""An unexpected exception: a bug in RadStream."""

INTERNAL_HINT = (
    "This is a bug in RadStream; run the command again with --debug and report the traceback."
)

log = get_logger(__name__)


@dataclass
class CliState:
    """The global options, kept on the root Click context (``ctx.obj``)."""

    debug: bool = False
    log_level: str = "INFO"
    log_format: LogFormat = "json"


@dataclass(frozen=True)
class Problem:
    """What the user reads about an error: one line of code and message, one of hint."""

    code: str
    message: str
    hint: str
    exit_code: int


def problem_of(exc: Exception) -> Problem:
    """The message for ``exc``; anything not known here is an ``INTERNAL_ERROR``."""
    if isinstance(exc, RadStreamError):
        # An error raised where its class's advice does not apply (QueryFailed, whose hint
        # speaks of Athena, from a local query) carries a better one in its details.
        hint = exc.details.get("hint")
        return Problem(
            exc.code, exc.message, hint if isinstance(hint, str) else exc.hint, EXIT_ERROR
        )
    if isinstance(exc, ValidationError) and exc.title == "Settings":
        return Problem(ConfigInvalid.code, _settings_message(exc), ConfigInvalid.hint, EXIT_ERROR)
    if isinstance(exc, tomllib.TOMLDecodeError):
        # Its message ends with "(at line 3, column 11)".
        return Problem(
            ConfigInvalid.code,
            f"the settings file {config_file()} is not valid TOML: {exc}",
            ConfigInvalid.hint,
            EXIT_ERROR,
        )
    aws = _aws_problem(exc)
    if aws is not None:
        return aws
    first_line = (str(exc).splitlines() or [""])[0]
    return Problem(
        "INTERNAL_ERROR",
        f"unexpected {type(exc).__name__}: {first_line}",
        INTERNAL_HINT,
        EXIT_INTERNAL,
    )


def _settings_message(exc: ValidationError) -> str:
    """``invalid settings: engine.workers: Input should be … (got 'many') at
    radstream.toml:3``, or ``unknown key worker (did you mean engine.workers?)``, one per error.
    """
    from radstream.settings import did_you_mean, where_set

    parts = []
    for error in exc.errors():
        loc = error["loc"]
        key = ".".join(str(p) for p in loc) or "settings"
        if error["type"] == "extra_forbidden":
            guess = did_you_mean(loc)
            text = f"unknown key {key}" + (f" (did you mean {guess}?)" if guess else "")
        else:
            text = f"{key}: {error['msg']} (got {_shown(error.get('input'))})"
        origin = where_set(loc) if loc else None
        parts.append(text + (f" at {origin}" if origin else ""))
    return "invalid settings: " + "; ".join(parts)


def _shown(value: object) -> str:
    """A rejected value, truncated: a settings file can hold a long string."""
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "…"


def _aws_problem(exc: Exception) -> Problem | None:
    # Only when botocore is already loaded: a command that never talked to AWS cannot have
    # raised its errors, and importing it here would slow every error down.
    boto = sys.modules.get("botocore.exceptions")
    if boto is None:
        return None
    if isinstance(exc, boto.NoCredentialsError):
        return Problem(
            ConfigInvalid.code,
            "no AWS credentials found",
            "Configure credentials (aws configure, AWS_PROFILE, or AWS_ACCESS_KEY_ID and "
            "AWS_SECRET_ACCESS_KEY); for an emulator (--endpoint-url) any values do.",
            EXIT_ERROR,
        )
    if isinstance(exc, boto.EndpointConnectionError):
        return Problem(
            ConfigInvalid.code,
            f"cannot reach AWS: {exc}",
            "Check --region and --endpoint-url (aws.region, aws.endpoint_url) and the network.",
            EXIT_ERROR,
        )
    return None


def report(exc: Exception, *, debug: bool) -> int:
    """Print ``exc`` to stderr as one message (after its traceback with ``debug``);
    return the exit status."""
    problem = problem_of(exc)
    if debug:
        typer.echo("".join(traceback.format_exception(exc)).rstrip(), err=True)
    elif problem.exit_code == EXIT_INTERNAL:
        # On the commands that log, --log-level DEBUG shows it without --debug.
        log.debug("unexpected error", exc_info=exc)
    typer.echo(f"error {problem.code}: {problem.message}\n  → {problem.hint}", err=True)
    return problem.exit_code


def _click_exception() -> type[Exception]:
    # Typer vendors Click and exports BadParameter but not its base, ClickException (usage
    # errors): find it by name rather than import a private module of Typer's.
    for cls in typer.BadParameter.__mro__:
        if cls.__name__ == "ClickException" and issubclass(cls, Exception):
            return cls
    return typer.BadParameter


_PASS_THROUGH: tuple[type[Exception], ...] = (
    _click_exception(),
    typer.Exit,
    typer.Abort,
    typer.TyperException,
)
"""Click's and Typer's own control flow: usage errors, exits, aborts. Click reports these."""


class RadStreamGroup(TyperGroup):
    """The root command group: runs a command, and turns what it raises into a message."""

    # ``ctx`` is Click's Context, which Typer vendors in a private module: typed loosely.
    def invoke(self, ctx: Any) -> Any:
        """Run the command; report a non-Click exception and exit with its status."""
        try:
            return super().invoke(ctx)
        except _PASS_THROUGH:
            raise
        except Exception as exc:
            state = ctx.obj if isinstance(ctx.obj, CliState) else CliState()
            raise typer.Exit(report(exc, debug=state.debug)) from None
