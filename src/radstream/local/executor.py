"""Durable local executor: the embedded stand-in for Step Functions.

State lives in SQLite (see :mod:`radstream.local.database`). The life of an execution:

1. A put into the store appends an event (:meth:`Executor.object_created`).
2. The router turns events that match the trigger rule (images bucket, ``incoming/``,
   ``.json``) into executions. The trigger id is derived from bucket, key and ETag, so a
   duplicate event, or the same study uploaded twice, changes nothing, while a re-upload
   with new content is a new execution. Putting the same sidecar again after its
   execution finished starts a re-run when the user changed something: after a failure
   always (a retry request: the user fixed the image), after a success only if the image
   beside it was replaced by different content since that execution started. An identical
   re-upload of both stays a no-op; a re-put while the execution is still pending or
   running is a no-op too (put the sidecar again once the outcome is there).
3. A worker claims a runnable execution under a lease, runs stages, and checkpoints after
   the stages the pipeline definition marks. Every write is fenced by the lease, so a
   worker whose lease was taken over cannot overwrite the new owner's progress.
4. A killed worker's lease is reclaimed when it expires, or at once when its process is
   found dead. At the ``max_takeovers``-th death the execution fails with
   ``EXECUTION_ABANDONED`` (the next worker records the failure instead of running the
   stage again) rather than crashing workers forever. Only deaths count: a lease that ran
   out while its owner is still alive (it could not reach the database for a whole lease)
   is taken over without counting, since the study did not kill anything.
5. Every execution ends ``succeeded`` or ``failed``.
"""

from __future__ import annotations

import hashlib
import json
import os
import sqlite3
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from radstream.errors import ExecutionAbandoned
from radstream.layout import DICOM_DROPS, SIDECAR_SUFFIX, UPLOADS
from radstream.pipeline.definition import PIPELINE, Pipeline
from radstream.stages.context import ExecutionContext, StageError
from radstream.stages.ports import ObjectInfo

STATES = ("pending", "running", "succeeded", "failed")


def execution_id(bucket: str, key: str, etag: str) -> str:
    """Deterministic trigger id of one version of one sidecar object (and the id of its
    first execution)."""
    return hashlib.sha256(f"{bucket}\n{key}\n{etag}".encode()).hexdigest()[:32]


def rerun_id(trigger_id: str, event_id: int) -> str:
    """Id of a re-run of ``trigger_id``, started by event ``event_id``."""
    return hashlib.sha256(f"{trigger_id}\n{event_id}".encode()).hexdigest()[:32]


def matches_trigger(bucket: str, key: str) -> bool:
    """The trigger rule: a sidecar created under ``incoming/`` in the images bucket, or a
    DICOM file created under ``dicom/`` (an upload without a sidecar)."""
    # Any depth under incoming/: a misplaced sidecar still runs, and fails with a code.
    # Images under incoming/ never trigger: their sidecar does, written last.
    if UPLOADS.contains(bucket, key):
        return key.lower().endswith(SIDECAR_SUFFIX)
    return DICOM_DROPS.contains(bucket, key)


@dataclass(frozen=True)
class Claim:
    """An execution leased to one worker."""

    execution_id: str
    bucket: str
    key: str
    etag: str
    stage: str
    context: ExecutionContext
    """The checkpointed context, with the execution's id, sidecar key and arrival set."""
    stage_attempt: int
    claims: int
    takeovers: int
    created_at: float
    queue_wait_s: float | None


class Executor:
    """Leases, checkpoints and terminal states over the engine database."""

    def __init__(
        self,
        conn: sqlite3.Connection,
        *,
        lease_s: float = 30.0,
        max_takeovers: int = 3,
        pipeline: Pipeline = PIPELINE,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._conn = conn
        self._lease_s = lease_s
        self._max_takeovers = max_takeovers
        self._pipeline = pipeline
        self._clock = clock

    @contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        # IMMEDIATE takes the write lock up front, so two workers cannot both read a
        # runnable row and then both claim it.
        self._conn.execute("BEGIN IMMEDIATE")
        try:
            yield self._conn
        except BaseException:
            self._conn.execute("ROLLBACK")
            raise
        self._conn.execute("COMMIT")

    # --- events and routing ---------------------------------------------------------

    def object_created(self, info: ObjectInfo) -> None:
        """Append a durable "object created" event (the store's listener hook)."""
        self._conn.execute(
            "INSERT INTO events (bucket, key, etag, size, created_at) VALUES (?, ?, ?, ?, ?)",
            (info.bucket, info.key, info.etag, info.size, self._clock()),
        )

    def _route(self, conn: sqlite3.Connection) -> int:
        last = conn.execute("SELECT last_id FROM router WHERE id = 1").fetchone()[0]
        rows = conn.execute(
            "SELECT id, bucket, key, etag, created_at FROM events WHERE id > ? ORDER BY id",
            (last,),
        ).fetchall()
        started = 0
        for row in rows:
            if matches_trigger(row["bucket"], row["key"]):
                started += self._start(conn, row)
        if rows:
            conn.execute("UPDATE router SET last_id = ? WHERE id = 1", (rows[-1]["id"],))
        return started

    def _start(self, conn: sqlite3.Connection, event: sqlite3.Row) -> int:
        trigger = execution_id(event["bucket"], event["key"], event["etag"])
        latest = conn.execute(
            "SELECT state, started_at, finished_at FROM executions WHERE trigger_id = ? "
            "ORDER BY created_at DESC LIMIT 1",
            (trigger,),
        ).fetchone()
        if latest is None:
            new_id = trigger
        elif (
            latest["state"] in ("pending", "running")
            or latest["finished_at"] >= (event["created_at"])
        ):
            return 0  # a duplicate event, or the same upload while it runs
        elif latest["state"] == "failed" or self._image_changed(conn, event, latest):
            new_id = rerun_id(trigger, event["id"])
        else:
            return 0  # the same sidecar and the same image as a success: nothing to redo
        conn.execute(
            "INSERT INTO executions (id, trigger_id, bucket, key, etag, state, stage, "
            "context, not_before, created_at, ready_at) "
            "VALUES (?, ?, ?, ?, ?, 'pending', ?, '{}', ?, ?, ?)",
            (
                new_id,
                trigger,
                event["bucket"],
                event["key"],
                event["etag"],
                self._pipeline.start,
                event["created_at"],
                event["created_at"],
                event["created_at"],
            ),
        )
        return 1

    @staticmethod
    def _image_changed(conn: sqlite3.Connection, event: sqlite3.Row, previous: sqlite3.Row) -> bool:
        """Whether the image beside the sidecar of ``event`` differs from the one the
        ``previous`` execution of the same sidecar read.

        The image is any ``{stem}.{ext}`` next to the sidecar (as ``validate`` finds it).
        The one the previous execution read is the latest put before it started, or, if
        none had arrived yet (the sidecar came first), the first put after.
        """
        base = event["key"][: -len(SIDECAR_SUFFIX)]
        # Keys that start with "{base}." sort between "{base}." and "{base}/" ('/' follows
        # '.' in ASCII), so the (bucket, key) index answers this without a scan.
        rows = conn.execute(
            "SELECT id, key, etag, created_at FROM events WHERE bucket = ? AND key >= ? "
            "AND key < ? AND id < ? ORDER BY id",
            (event["bucket"], base + ".", base + "/", event["id"]),
        ).fetchall()
        images = [
            (r["created_at"], r["key"], r["etag"])
            for r in rows
            if r["key"].rsplit(".", 1)[0] == base and not r["key"].lower().endswith(SIDECAR_SUFFIX)
        ]
        if not images:
            return False
        started = previous["started_at"] if previous["started_at"] is not None else 0.0
        before = [(key, etag) for at, key, etag in images if at <= started]
        read = before[-1] if before else (images[0][1], images[0][2])
        now = (images[-1][1], images[-1][2])
        return now != read

    def route(self) -> int:
        """Turn new events into executions; returns how many executions were started."""
        with self._write() as conn:
            return self._route(conn)

    # --- claiming -------------------------------------------------------------------

    def _has_work(self, now: float) -> bool:
        # A read-only probe, so idle workers do not queue for the write lock.
        row = self._conn.execute(
            "SELECT (SELECT last_id FROM router WHERE id = 1) < "
            "(SELECT COALESCE(MAX(id), 0) FROM events) "
            "OR EXISTS (SELECT 1 FROM executions WHERE state = 'pending' AND not_before <= ?) "
            "OR EXISTS (SELECT 1 FROM executions WHERE state = 'running' AND lease_expires < ?)",
            (now, now),
        ).fetchone()
        return bool(row[0])

    def claim(self, worker_id: str) -> Claim | None:
        """Lease the oldest runnable execution to ``worker_id``, or return None."""
        now = self._clock()
        if not self._has_work(now):
            return None
        with self._write() as conn:
            self._route(conn)
            # Oldest first, whether pending or abandoned by a dead worker, so that
            # takeovers are not starved by a steady stream of new uploads. Two queries,
            # each on its partial index, rather than one OR that scans the table.
            candidates = [
                conn.execute(
                    "SELECT * FROM executions WHERE state = 'pending' AND not_before <= ? "
                    "ORDER BY created_at LIMIT 1",
                    (now,),
                ).fetchone(),
                conn.execute(
                    "SELECT * FROM executions WHERE state = 'running' AND lease_expires < ? "
                    "ORDER BY created_at LIMIT 1",
                    (now,),
                ).fetchone(),
            ]
            found = [r for r in candidates if r is not None]
            if not found:
                return None
            row = min(found, key=lambda r: r["created_at"])
            takeover = row["state"] == "running"
            died = takeover and self._owner_died(conn, row["lease_owner"])
            takeovers = row["takeovers"] + (1 if died else 0)
            stage = row["stage"]
            context = ExecutionContext.from_json(
                json.loads(row["context"]),
                execution_id=row["id"],
                key=row["key"],
                arrived_at=row["created_at"],
            )
            if died and takeovers >= self._max_takeovers:
                # Workers keep dying on this one: stop trying, record why.
                stage = self._pipeline.failure_stage
                abandoned = ExecutionAbandoned(
                    f"{takeovers} workers died while running this execution",
                    takeovers=takeovers,
                )
                failure = StageError.model_validate(abandoned.to_dict() | {"stage": row["stage"]})
                context = context.model_copy(update={"failure": failure})
            claims = row["claims"] + 1
            conn.execute(
                "UPDATE executions SET state = 'running', stage = ?, context = ?, claims = ?, "
                "takeovers = ?, lease_owner = ?, lease_expires = ?, "
                "started_at = COALESCE(started_at, ?) WHERE id = ?",
                (
                    stage,
                    json.dumps(context.to_json()),
                    claims,
                    takeovers,
                    worker_id,
                    now + self._lease_s,
                    now,
                    row["id"],
                ),
            )
        return Claim(
            execution_id=row["id"],
            bucket=row["bucket"],
            key=row["key"],
            etag=row["etag"],
            stage=stage,
            context=context,
            stage_attempt=row["stage_attempt"],
            claims=claims,
            takeovers=takeovers,
            created_at=row["created_at"],
            # A takeover's wait is mostly the dead worker's time, not queueing: not reported.
            queue_wait_s=None if takeover else max(0.0, now - row["ready_at"]),
        )

    @staticmethod
    def _owner_died(conn: sqlite3.Connection, owner: str | None) -> bool:
        """Whether the worker that held a lease is gone (not merely late to renew it)."""
        if owner is None:
            return True
        row = conn.execute("SELECT pid, stopped_at FROM workers WHERE id = ?", (owner,)).fetchone()
        if row is None or row["stopped_at"] is not None:
            return True
        return not _pid_alive(row["pid"])

    # --- progress -------------------------------------------------------------------

    def _fenced_update(
        self, claim: Claim, worker_id: str, sets: str, args: tuple[object, ...]
    ) -> bool:
        with self._write() as conn:
            cur = conn.execute(
                f"UPDATE executions SET {sets} "
                "WHERE id = ? AND lease_owner = ? AND claims = ? AND state = 'running'",
                (*args, claim.execution_id, worker_id, claim.claims),
            )
            return cur.rowcount == 1

    def checkpoint(
        self, claim: Claim, worker_id: str, next_stage: str, context: ExecutionContext
    ) -> bool:
        """Persist progress and renew the lease. False if the lease was lost (stop work)."""
        return self._fenced_update(
            claim,
            worker_id,
            "stage = ?, context = ?, stage_attempt = 0, lease_expires = ?",
            (next_stage, json.dumps(context.to_json()), self._clock() + self._lease_s),
        )

    def renew(self, claim: Claim, worker_id: str) -> bool:
        """Extend the lease. False if it was lost (stop work: another worker owns it)."""
        return self._fenced_update(
            claim, worker_id, "lease_expires = ?", (self._clock() + self._lease_s,)
        )

    @property
    def lease_s(self) -> float:
        """Length of a lease in seconds."""
        return self._lease_s

    def retry_later(
        self,
        claim: Claim,
        worker_id: str,
        stage: str,
        stage_attempt: int,
        delay_s: float,
        context: ExecutionContext,
    ) -> bool:
        """Give the execution back, runnable again after ``delay_s``, at ``stage``."""
        not_before = self._clock() + delay_s
        return self._fenced_update(
            claim,
            worker_id,
            "state = 'pending', stage = ?, stage_attempt = ?, context = ?, lease_owner = NULL, "
            "lease_expires = NULL, not_before = ?, ready_at = ?",
            (stage, stage_attempt, json.dumps(context.to_json()), not_before, not_before),
        )

    def finish(
        self,
        claim: Claim,
        worker_id: str,
        *,
        succeeded: bool,
        outcome_key: str,
        error_code: str | None = None,
    ) -> bool:
        """Move the execution to its terminal state."""
        return self._fenced_update(
            claim,
            worker_id,
            "state = ?, outcome_key = ?, error_code = ?, finished_at = ?, lease_owner = NULL, "
            "lease_expires = NULL",
            ("succeeded" if succeeded else "failed", outcome_key, error_code, self._clock()),
        )

    # --- workers --------------------------------------------------------------------

    def register_worker(self, worker_id: str, pid: int) -> None:
        """Record a live worker, so its leases can be reclaimed at once if it dies."""
        with self._write() as conn:
            conn.execute(
                "INSERT OR REPLACE INTO workers (id, pid, started_at) VALUES (?, ?, ?)",
                (worker_id, pid, self._clock()),
            )

    def unregister_worker(self, worker_id: str) -> None:
        """Mark a worker stopped (clean shutdown)."""
        with self._write() as conn:
            conn.execute(
                "UPDATE workers SET stopped_at = ? WHERE id = ?", (self._clock(), worker_id)
            )

    def registered_workers(self, worker_ids: list[str]) -> int:
        """How many of ``worker_ids`` have registered and not stopped."""
        marks = ",".join("?" * len(worker_ids))
        row = self._conn.execute(
            f"SELECT COUNT(*) FROM workers WHERE stopped_at IS NULL AND id IN ({marks})",
            worker_ids,
        ).fetchone()
        return int(row[0])

    def live_workers(self, worker_ids: list[str] | None = None) -> int:
        """Registered, not stopped, and whose process still exists on this machine; only
        those of ``worker_ids`` when given."""
        rows = self._conn.execute("SELECT id, pid FROM workers WHERE stopped_at IS NULL").fetchall()
        wanted = None if worker_ids is None else set(worker_ids)
        return sum(_pid_alive(r["pid"]) for r in rows if wanted is None or r["id"] in wanted)

    def reap_dead_workers(self) -> int:
        """Expire leases held by worker processes that no longer exist on this machine."""
        rows = self._conn.execute(
            "SELECT DISTINCT w.id, w.pid FROM executions e JOIN workers w "
            "ON e.lease_owner = w.id WHERE e.state = 'running'"
        ).fetchall()
        dead = [r["id"] for r in rows if not _pid_alive(r["pid"])]
        if not dead:
            return 0
        with self._write() as conn:
            marks = ",".join("?" * len(dead))
            cur = conn.execute(
                f"UPDATE executions SET lease_expires = 0 WHERE state = 'running' "
                f"AND lease_owner IN ({marks})",
                dead,
            )
            return cur.rowcount

    # --- inspection -----------------------------------------------------------------

    def counts(self) -> dict[str, int]:
        """Executions by state, every state present (zero where none)."""
        found = dict(
            self._conn.execute("SELECT state, COUNT(*) FROM executions GROUP BY state").fetchall()
        )
        return {state: int(found.get(state, 0)) for state in STATES}

    def oldest_pending_created_at(self) -> float | None:
        """When the oldest pending execution was created (epoch s); None when none waits."""
        # The partial index on pending executions answers this without a scan.
        row = self._conn.execute(
            "SELECT MIN(created_at) FROM executions WHERE state = 'pending'"
        ).fetchone()
        return None if row[0] is None else float(row[0])

    _LATEST = (
        "SELECT {columns} FROM executions e WHERE e.trigger_id IN ({marks}) AND e.created_at = "
        "(SELECT MAX(created_at) FROM executions WHERE trigger_id = e.trigger_id)"
    )

    def latest(self, trigger_ids: list[str]) -> dict[str, sqlite3.Row]:
        """The newest execution of each trigger id that has one."""
        found: dict[str, sqlite3.Row] = {}
        for chunk in _chunks(trigger_ids):
            sql = self._LATEST.format(columns="*", marks=",".join("?" * len(chunk)))
            for row in self._conn.execute(sql, chunk):
                found[row["trigger_id"]] = row
        return found

    def terminal_count(self, trigger_ids: list[str]) -> int:
        """How many of ``trigger_ids`` have a latest execution in a terminal state."""
        done = 0
        for chunk in _chunks(trigger_ids):
            sql = self._LATEST.format(columns="COUNT(*)", marks=",".join("?" * len(chunk)))
            done += self._conn.execute(
                sql + " AND e.state IN ('succeeded', 'failed')", chunk
            ).fetchone()[0]
        return int(done)

    def idle(self) -> bool:
        """True when nothing is pending, running or waiting to be routed."""
        row = self._conn.execute(
            "SELECT (SELECT last_id FROM router WHERE id = 1) >= "
            "(SELECT COALESCE(MAX(id), 0) FROM events) "
            "AND NOT EXISTS (SELECT 1 FROM executions WHERE state IN ('pending', 'running'))"
        ).fetchone()
        return bool(row[0])

    def executions(self) -> list[sqlite3.Row]:
        """Every execution row (for status, demo statistics and tests)."""
        return self._conn.execute("SELECT * FROM executions ORDER BY created_at").fetchall()


def _chunks(items: list[str], size: int = 500) -> Iterator[list[str]]:
    # SQLite caps the number of bound parameters per statement.
    for start in range(0, len(items), size):
        yield items[start : start + size]


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A zombie (killed but not yet reaped by its parent) still answers kill(0).
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii") as fh:
            return fh.read().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return True
