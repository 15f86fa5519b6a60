"""Completion notifications from the engine: its own "object created" events for outcomes.

Every result or failure object is written through the store, which records an event with
the time the object came to exist. Tailing that event log tells the benchmark the moment
each study finished, stamped by the engine. The tail is read every few milliseconds, and
the poll interval never enters a measurement, because the time used is the event's own.
"""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass

from radstream.stages.store import RESULTS_BUCKET

_KINDS = {"results": "result", "failed": "failure"}


@dataclass(frozen=True)
class Completion:
    """An outcome object for the upload whose sidecar key is ``sidecar_key``."""

    sidecar_key: str
    kind: str  # "result" or "failure"
    at: float  # epoch seconds, when the outcome object was created


def sidecar_key_for(outcome_key: str) -> str | None:
    """``results/{id}/{stem}.json`` or ``failed/{id}/{stem}.json`` → ``incoming/{id}/{stem}.json``."""
    parts = outcome_key.split("/")
    if len(parts) != 3 or parts[0] not in _KINDS:
        return None
    return f"incoming/{parts[1]}/{parts[2]}"


class CompletionWatcher:
    """Reads new outcome events from the engine database, in order, once each."""

    def __init__(self, conn: sqlite3.Connection, *, from_now: bool = True) -> None:
        self._conn = conn
        self._cursor = 0
        if from_now:
            row = conn.execute("SELECT COALESCE(MAX(id), 0) FROM events").fetchone()
            self._cursor = int(row[0])

    def poll(self) -> list[Completion]:
        """Outcome objects created since the last poll."""
        rows = self._conn.execute(
            "SELECT id, key, created_at FROM events WHERE id > ? AND bucket = ? ORDER BY id",
            (self._cursor, RESULTS_BUCKET),
        ).fetchall()
        found = []
        for event_id, key, created_at in rows:
            self._cursor = event_id
            sidecar = sidecar_key_for(key)
            if sidecar is not None:
                found.append(Completion(sidecar, _KINDS[key.split("/", 1)[0]], created_at))
        return found
