"""Errors only the CLI raises: about the user's data directory and what they asked to see."""

from __future__ import annotations

from radstream.errors import RadStreamError


class DataDirMissing(RadStreamError):
    """A command that only reads was pointed at a data directory that does not exist."""

    code = "DATA_DIR_MISSING"
    hint = (
        "Pass --data-dir (or set RADSTREAM_DATA_DIR, or data_dir in radstream.toml) to the "
        "directory your uploads went to; `radstream upload` or `radstream demo` creates one."
    )


class ResultsNotFound(RadStreamError):
    """No result or failure object matches what was asked for."""

    code = "RESULTS_NOT_FOUND"
    hint = "List the studies that have outcomes with `radstream results list`."
