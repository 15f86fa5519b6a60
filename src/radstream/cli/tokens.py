"""The bearer token a server requires, from a file, a flag or the environment."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import typer


def read_token(
    token: str | None,
    token_file: Path | None,
    environ: Mapping[str, str] | None = None,
    names: Sequence[str] = (),
) -> str | None:
    """From ``--token-file``, ``--token`` or the first of the environment ``names``, in that
    order; None for no authentication.

    The file's surrounding whitespace (a trailing newline) is dropped: a token on the
    command line shows in ``ps``, a file does not. Raises typer.BadParameter when both
    options are given or the file is unreadable or empty.
    """
    if token is not None and token_file is not None:
        raise typer.BadParameter("give --token-file or --token, not both")
    if token_file is not None:
        try:
            text = token_file.read_text(encoding="utf-8").strip()
        except (OSError, UnicodeDecodeError) as exc:
            raise typer.BadParameter(f"cannot read --token-file {token_file}: {exc}") from None
        if not text:
            raise typer.BadParameter(f"--token-file {token_file} is empty")
        return text
    if token:
        return token
    for name in names:
        value = (environ or {}).get(name, "").strip()
        if value:
            return value
    return None
