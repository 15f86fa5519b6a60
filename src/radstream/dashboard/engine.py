"""The engine panel: executions by state and the queue, from the engine itself, not the lake.

The lake holds what finished; what waits or runs now only the engine knows. Locally that is
the engine database (:func:`radstream.local.status.engine_snapshot`, read-only); on a stack
it is Step Functions' own list of executions (:func:`radstream.aws.deploy.status`). The
panel shows those counts as the engine gives them, and locally keeps the queue depth seen at
each refresh since the dashboard started, for its chart.
"""

from __future__ import annotations

import sqlite3
import time
from collections import deque
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, TypedDict

from radstream.local.status import engine_snapshot

if TYPE_CHECKING:
    from radstream.aws.session import StackRef

HISTORY = 720
"""Refreshes of queue depth kept for the chart (an hour at the default 5 s)."""


class EnginePanel(TypedDict):
    """What the page's engine panel shows."""

    source: str
    """Where the counts come from, in words."""
    counts: dict[str, int]
    """Executions by state, in the engine's own names."""
    queue_depth: int | None
    """Executions waiting for a worker (None where the engine has no queue)."""
    oldest_pending_age_s: float | None
    unrouted_events: int | None
    history: list[list[float]]
    """``[epoch seconds, pending, running]`` at each refresh since the dashboard started."""
    note: str


EngineWatch = Callable[[], EnginePanel | None]
"""Reads the panel at a refresh (None: no engine to read)."""


class LocalEngineWatch:
    """The local engine's database, read at each refresh; keeps the queue's history."""

    def __init__(self, db_path: Path, *, clock: Callable[[], float] = time.time) -> None:
        self._db_path = db_path
        self._clock = clock
        self._history: deque[list[float]] = deque(maxlen=HISTORY)

    def __call__(self) -> EnginePanel | None:
        """The panel now, or None when no engine ever ran in this data directory."""
        try:
            snapshot = engine_snapshot(self._db_path, now=self._clock())
        except sqlite3.Error as exc:  # locked past the timeout, or damaged: say so, go on
            return unreadable(f"engine database {self._db_path}", str(exc))
        if snapshot is None:
            return None
        running = snapshot.by_state.get("running", 0)
        self._history.append([snapshot.taken_at, float(snapshot.queue_depth), float(running)])
        return EnginePanel(
            source=f"engine database {self._db_path}",
            counts=snapshot.by_state,
            queue_depth=snapshot.queue_depth,
            oldest_pending_age_s=snapshot.oldest_pending_age_s,
            unrouted_events=snapshot.unrouted_events,
            history=list(self._history),
            note="Executions by state in the engine database; queue depth is the pending ones.",
        )


class StackEngineWatch:
    """A stack's Step Functions executions by status (the latest 1,000), at each refresh."""

    def __init__(self, stack: StackRef) -> None:
        self._stack = stack

    def __call__(self) -> EnginePanel | None:
        """The panel now: ListExecutions counts by status."""
        from botocore.exceptions import BotoCoreError, ClientError

        from radstream.aws.deploy import status  # boto3 and the template only for a stack

        where = f"Step Functions executions of stack {self._stack.name}"
        try:
            counts = status(self._stack)["executions"]
        except (ClientError, BotoCoreError) as exc:
            return unreadable(where, str(exc))
        return EnginePanel(
            source=where,
            counts=dict(sorted(counts.items())),
            queue_depth=None,
            oldest_pending_age_s=None,
            unrouted_events=None,
            history=[],
            note=(
                "Executions by status among the latest 1,000 (ListExecutions). A stack has no "
                "queue: each upload starts its execution at once, so RUNNING is the work in "
                "flight."
            ),
        )


def unreadable(source: str, reason: str) -> EnginePanel:
    """The panel when the engine could not be asked this time (the next refresh tries again)."""
    return EnginePanel(
        source=source,
        counts={},
        queue_depth=None,
        oldest_pending_age_s=None,
        unrouted_events=None,
        history=[],
        note=f"Could not read the engine this time: {reason}",
    )
