"""A read-only look at the engine database: executions by state, the queue, the oldest wait.

For tools that watch a running engine from another process (``radstream dashboard``). It
opens ``engine.db`` read-only and never creates it: a data directory where no engine ever
ran has no snapshot.
"""

from __future__ import annotations

import sqlite3
import time
from contextlib import closing
from dataclasses import dataclass
from pathlib import Path

from radstream.local.executor import Executor


@dataclass(frozen=True)
class EngineSnapshot:
    """The executions of the engine database at one moment."""

    taken_at: float
    """Epoch seconds."""
    by_state: dict[str, int]
    """Executions by state (pending, running, succeeded, failed), every state present."""
    unrouted_events: int
    """Uploads recorded but not yet turned into executions by the router."""
    oldest_pending_age_s: float | None
    """How long the oldest pending execution's upload has waited (None: nothing pending)."""

    @property
    def queue_depth(self) -> int:
        """Executions waiting for a worker: pending ones."""
        return self.by_state.get("pending", 0)


def engine_snapshot(
    db_path: Path, *, now: float | None = None, timeout_s: float = 5.0
) -> EngineSnapshot | None:
    """The engine's executions as ``db_path`` holds them now; None when there is no database.

    Read-only: it takes no write lock, so a busy engine is not slowed, and it does not
    create the file.
    """
    if not db_path.exists():
        return None
    uri = f"{db_path.resolve().as_uri()}?mode=ro"
    with closing(sqlite3.connect(uri, uri=True, timeout=timeout_s)) as conn:
        conn.row_factory = sqlite3.Row
        # One read transaction: the counts and the oldest wait are of the same moment.
        conn.execute("BEGIN")
        executor = Executor(conn)
        by_state = executor.counts()
        oldest = executor.oldest_pending_created_at()
        unrouted = conn.execute(
            "SELECT COUNT(*) FROM events WHERE id > (SELECT last_id FROM router WHERE id = 1)"
        ).fetchone()[0]
        conn.execute("COMMIT")
    taken = time.time() if now is None else now
    return EngineSnapshot(
        taken_at=taken,
        by_state=by_state,
        unrouted_events=int(unrouted),
        oldest_pending_age_s=None if oldest is None else max(0.0, taken - oldest),
    )
