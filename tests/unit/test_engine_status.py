"""``engine_snapshot``: the engine database read from outside, compared with the executor's
own counts, on a real SQLite file that a real executor and folder store wrote."""

from __future__ import annotations

from pathlib import Path

from radstream.local.database import connect
from radstream.local.executor import Executor
from radstream.local.status import engine_snapshot
from radstream.local.store import FolderStore


class Clock:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def test_no_database_no_snapshot_and_none_created(tmp_path: Path) -> None:
    assert engine_snapshot(tmp_path / "engine.db") is None
    assert not (tmp_path / "engine.db").exists()


def test_the_snapshot_agrees_with_the_executor(tmp_path: Path) -> None:
    clock = Clock(1000.0)
    executor = Executor(connect(tmp_path / "engine.db"), clock=clock)
    store = FolderStore(tmp_path / "buckets", listener=executor)
    for n in range(4):
        clock.now += 1
        store.put("images", f"incoming/s{n}/a.json", b"{}")
    first = executor.claim("w1")  # routes all four, runs the oldest
    assert first is not None
    assert executor.finish(first, "w1", succeeded=False, outcome_key="x", error_code="E")
    second = executor.claim("w1")
    assert second is not None  # left running
    clock.now += 1
    store.put("images", "incoming/late/a.json", b"{}")  # recorded, not routed yet

    snapshot = engine_snapshot(tmp_path / "engine.db", now=1010.0)
    assert snapshot is not None
    assert snapshot.by_state == executor.counts()
    assert snapshot.by_state == {"pending": 2, "running": 1, "succeeded": 0, "failed": 1}
    assert snapshot.queue_depth == 2
    assert snapshot.unrouted_events == 1
    # The oldest pending upload is the third, put at 1003.
    assert snapshot.oldest_pending_age_s == 1010.0 - 1003.0
    assert snapshot.taken_at == 1010.0

    while (claim := executor.claim("w1")) is not None:
        executor.finish(claim, "w1", succeeded=True, outcome_key="y")
    done = engine_snapshot(tmp_path / "engine.db")
    assert done is not None and done.oldest_pending_age_s is None and done.queue_depth == 0
    assert done.by_state == executor.counts()
