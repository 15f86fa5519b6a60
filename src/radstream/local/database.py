"""The engine's SQLite database: events, executions and workers, in WAL mode.

One file, ``{data_dir}/engine.db``, shared by every process of an installation. WAL lets
readers run beside the single writer. By default ``synchronous=NORMAL`` keeps commits cheap
while a killed *process* still loses nothing committed; SQLite's documentation says a power
loss can then roll back the last commits. With ``engine.fsync = true`` the connection runs
``synchronous=FULL``: the WAL is synced at every commit, so a committed event or outcome
survives a power loss too (as the objects do, see :mod:`radstream.local.store`).
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

SCHEMA_VERSION = 1

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (
    key   TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
-- Every put into the store, in order: the durable "object created" event log.
CREATE TABLE IF NOT EXISTS events (
    id         INTEGER PRIMARY KEY AUTOINCREMENT,
    bucket     TEXT NOT NULL,
    key        TEXT NOT NULL,
    etag       TEXT NOT NULL,
    size       INTEGER NOT NULL,
    created_at REAL NOT NULL
);
-- A re-put sidecar's router looks up the puts of the image beside it.
CREATE INDEX IF NOT EXISTS events_key ON events (bucket, key);
-- How far the router has read the event log.
CREATE TABLE IF NOT EXISTS router (
    id      INTEGER PRIMARY KEY CHECK (id = 1),
    last_id INTEGER NOT NULL
);
INSERT OR IGNORE INTO router (id, last_id) VALUES (1, 0);
CREATE TABLE IF NOT EXISTS executions (
    id            TEXT PRIMARY KEY,
    -- sha256(bucket, key, etag): the same upload always has this trigger id, so a duplicate
    -- event is a no-op. The first execution's id equals it; a re-run (the sidecar put again
    -- after a failure) gets its own id and the same trigger.
    trigger_id    TEXT NOT NULL,
    bucket        TEXT NOT NULL,
    key           TEXT NOT NULL,
    etag          TEXT NOT NULL,
    state         TEXT NOT NULL CHECK (state IN ('pending', 'running', 'succeeded', 'failed')),
    stage         TEXT NOT NULL,      -- the next stage to run
    context       TEXT NOT NULL,      -- JSON checkpoint carried between stages
    stage_attempt INTEGER NOT NULL DEFAULT 0,
    claims        INTEGER NOT NULL DEFAULT 0,
    takeovers     INTEGER NOT NULL DEFAULT 0,
    lease_owner   TEXT,
    lease_expires REAL,
    not_before    REAL NOT NULL,
    created_at    REAL NOT NULL,      -- when the triggering object was created
    ready_at      REAL NOT NULL,      -- when it last became runnable (for queue wait)
    started_at    REAL,
    finished_at   REAL,
    error_code    TEXT,
    outcome_key   TEXT
);
CREATE INDEX IF NOT EXISTS executions_runnable ON executions (state, not_before);
-- Claims pick the oldest runnable execution: partial indexes keep that cheap however many
-- finished executions the table holds.
CREATE INDEX IF NOT EXISTS executions_pending ON executions (created_at) WHERE state = 'pending';
CREATE INDEX IF NOT EXISTS executions_running ON executions (created_at) WHERE state = 'running';
CREATE INDEX IF NOT EXISTS executions_finished ON executions (finished_at);
CREATE INDEX IF NOT EXISTS executions_trigger ON executions (trigger_id, created_at);
CREATE TABLE IF NOT EXISTS workers (
    id         TEXT PRIMARY KEY,
    pid        INTEGER NOT NULL,
    started_at REAL NOT NULL,
    stopped_at REAL
);
"""


def connect(path: Path, *, timeout_s: float = 30.0, fsync: bool = False) -> sqlite3.Connection:
    """Open (and create if needed) the engine database with the settings every process uses.

    ``fsync`` (``engine.fsync``) makes every commit durable against power loss
    (``synchronous=FULL``); without it commits survive a killed process only.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    conn = sqlite3.connect(path, timeout=timeout_s, isolation_level=None, check_same_thread=False)
    conn.row_factory = sqlite3.Row
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute(f"PRAGMA synchronous={'FULL' if fsync else 'NORMAL'}")
    conn.execute(f"PRAGMA busy_timeout={int(timeout_s * 1000)}")
    conn.execute("PRAGMA foreign_keys=ON")
    conn.executescript(_SCHEMA)
    conn.execute(
        "INSERT OR IGNORE INTO meta (key, value) VALUES ('schema_version', ?)",
        (str(SCHEMA_VERSION),),
    )
    return conn
