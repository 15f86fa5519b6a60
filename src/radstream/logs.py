"""Structured logs: JSON lines (or text) carrying execution id, stage, attempt and code.

``configure`` is called once by each entry point (``serve``, ``run``, ``model serve``, a
Lambda container). Code that logs inside an execution wraps it in :func:`log_context`, and
every record logged inside carries those fields, in whichever process or thread it runs.

No patient field ever reaches a log: RadStream logs ids, stages and codes, never sidecar or
header values, and :class:`_PatientFieldFilter` drops any ``extra`` whose name is a patient
field, so a careless ``extra={"patient_id": …}`` is dropped, not written.
"""

from __future__ import annotations

import contextvars
import json
import logging
import os
import sys
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from types import MappingProxyType
from typing import IO, Any, Literal

LogFormat = Literal["json", "text"]

LOG_LEVEL_ENV = "RADSTREAM_LOG_LEVEL"
LOG_FORMAT_ENV = "RADSTREAM_LOG_FORMAT"
"""Read by :func:`configure_from_env` in Lambda containers (set them in the function's
environment). Local worker processes copy their parent's setup instead."""

CONTEXT_FIELDS: tuple[str, ...] = ("execution_id", "stage", "attempt", "code", "worker_id")
"""Fields a record carries from the surrounding :func:`log_context`."""

PATIENT_FIELDS: frozenset[str] = frozenset(
    {
        "patient_id",
        "patient_name",
        "patientid",
        "patientname",
        "patient_birth_date",
        "patientbirthdate",
        "birth_date",
        "patient_sex",
        "patient_age",
        "patient_address",
        "other_patient_ids",
        "accession_number",
        "referring_physician_name",
        "institution_name",
    }
)
"""Names never written to a log, whatever a caller passes in ``extra``."""

_context: contextvars.ContextVar[Mapping[str, Any]] = contextvars.ContextVar(
    "radstream_log_context", default=MappingProxyType({})
)
# Attributes every LogRecord has; anything else on a record came from ``extra``.
_RESERVED = frozenset(vars(logging.makeLogRecord({}))) | {"message", "asctime"}


@contextmanager
def log_context(**fields: Any) -> Iterator[None]:
    """Attach ``fields`` (execution id, stage, attempt, code) to every record logged inside."""
    token = _context.set({**_context.get(), **{k: v for k, v in fields.items() if v is not None}})
    try:
        yield
    finally:
        _context.reset(token)


def current_context() -> Mapping[str, Any]:
    """The fields of the innermost :func:`log_context`."""
    return _context.get()


class _ContextFilter(logging.Filter):
    """Copies the context fields onto each record, and drops patient fields."""

    def filter(self, record: logging.LogRecord) -> bool:
        for key, value in _context.get().items():
            if not hasattr(record, key):
                setattr(record, key, value)
        for key in [k for k in vars(record) if k.lower() in PATIENT_FIELDS]:
            delattr(record, key)
        return True


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message, context fields, traceback."""

    def format(self, record: logging.LogRecord) -> str:
        """The record as one line of JSON."""
        doc: dict[str, Any] = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        for key, value in vars(record).items():
            if key not in _RESERVED and not key.startswith("_"):
                doc[key] = value
        if record.exc_info:
            doc["traceback"] = self.formatException(record.exc_info)
        return json.dumps(doc, default=str)


class TextFormatter(logging.Formatter):
    """``time level logger [execution stage attempt code] message`` for a terminal."""

    def format(self, record: logging.LogRecord) -> str:
        """The record as one line of text (plus its traceback, if any)."""
        fields = " ".join(
            f"{key}={getattr(record, key)}" for key in CONTEXT_FIELDS if hasattr(record, key)
        )
        stamp = time.strftime("%H:%M:%S", time.localtime(record.created))
        line = f"{stamp} {record.levelname:<7} {record.name}: {record.getMessage()}"
        if fields:
            line += f" [{fields}]"
        if record.exc_info:
            line += "\n" + self.formatException(record.exc_info)
        return line


def configure(level: str = "INFO", fmt: LogFormat = "json", stream: IO[str] | None = None) -> None:
    """Send RadStream's logs to ``stream`` (stderr) as JSON lines or text, at ``level``.

    Idempotent: a second call replaces the handler the first installed.
    """
    logger = logging.getLogger("radstream")
    for handler in [h for h in logger.handlers if getattr(h, "_radstream", False)]:
        logger.removeHandler(handler)
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(JsonFormatter() if fmt == "json" else TextFormatter())
    handler.addFilter(_ContextFilter())
    handler._radstream = True  # type: ignore[attr-defined]
    logger.addHandler(handler)
    logger.setLevel(level.upper())
    logger.propagate = False


def configure_from_env(default_format: LogFormat = "json") -> None:
    """:func:`configure` from ``RADSTREAM_LOG_LEVEL`` and ``RADSTREAM_LOG_FORMAT``.

    Called once per Lambda container.
    """
    fmt = os.environ.get(LOG_FORMAT_ENV, default_format)
    configure(
        os.environ.get(LOG_LEVEL_ENV, "INFO"),
        "text" if fmt == "text" else "json",
    )


def get_logger(name: str) -> logging.Logger:
    """A logger under ``radstream`` (pass ``__name__``)."""
    return logging.getLogger(name if name.startswith("radstream") else f"radstream.{name}")
