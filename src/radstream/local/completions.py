"""Completion notifications from the local engine: its own "object created" events.

Every result or failure object is written through the store, which records an event with
the time the object came to exist. Tailing that event log tells a watcher (the benchmark,
``upload --concurrency``) the moment each study finished, stamped by the engine. The tail is
read every few milliseconds, and the poll interval never enters a measurement, because the
time used is the event's own.
"""

from __future__ import annotations

import sqlite3

from radstream.layout import Bucket
from radstream.stages.completions import Completion, completion_of


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
            (self._cursor, str(Bucket.RESULTS)),
        ).fetchall()
        found = []
        for event_id, key, created_at in rows:
            self._cursor = event_id
            completion = completion_of(key, created_at)
            if completion is not None:
                found.append(completion)
        return found
