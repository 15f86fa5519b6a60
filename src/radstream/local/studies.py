"""Per-study counts: each uploaded sidecar counted once, by the state of its latest execution.

A study that failed twice and then succeeded (its sidecar uploaded again) is one success,
not two failures and a success; ``Executor.counts`` still counts every execution.
"""

from __future__ import annotations

import sqlite3

STUDY_STATES = ("pending", "running", "succeeded", "failed")

_LATEST_PER_KEY = """
SELECT e.state, COUNT(*) FROM executions e
WHERE NOT EXISTS (
    SELECT 1 FROM executions n
    WHERE n.bucket = e.bucket AND n.key = e.key
      AND (n.created_at > e.created_at OR (n.created_at = e.created_at AND n.rowid > e.rowid))
)
GROUP BY e.state
"""


def study_counts(conn: sqlite3.Connection) -> dict[str, int]:
    """Uploads (sidecar keys) by the state of their newest execution; every state present."""
    found = dict(conn.execute(_LATEST_PER_KEY).fetchall())
    return {state: int(found.get(state, 0)) for state in STUDY_STATES}
