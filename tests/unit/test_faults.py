"""Faults in process: storage errors are typed and retried, never a worker death; telemetry
is kept while the lake is down; takeovers count real deaths; restarts are a rate.

These tests inject the fault where a real one cannot be made cheaply in a unit test (an
``OSError`` from ``os.replace``, a store wrapper that refuses writes); the real faults (a
read-only bind mount, a full tmpfs) are in tests/e2e/test_storage_faults.py.
"""

from __future__ import annotations

import errno
import json
import os
import threading
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from radstream.errors import StoreUnavailable
from radstream.lake.parquet_sink import ParquetSink, read_lake
from radstream.loadgen.study import make_study
from radstream.local.database import connect
from radstream.local.executor import Executor
from radstream.local.lease import LeaseKeeper
from radstream.local.pool import WorkerPool
from radstream.local.runner import ExecutionRunner
from radstream.local.store import FolderStore
from radstream.schema.telemetry import StageStatus, TelemetryRecord
from radstream.settings import Settings
from radstream.stages.ports import ObjectInfo
from support.clocks import FakeClock
from support.fakes import FixedLogitsModel, ListSink


class BrokenResults:
    """A folder store whose results bucket refuses every write while ``broken`` is set."""

    def __init__(self, store: FolderStore) -> None:
        self.store = store
        self.broken = True
        self.refused = 0

    def put(self, bucket: str, key: str, data: bytes) -> ObjectInfo:
        if self.broken and bucket == "results":
            self.refused += 1
            raise StoreUnavailable(f"cannot write {bucket}/{key}: Read-only file system")
        return self.store.put(bucket, key, data)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.store, name)


def _setup(tmp_path: Path) -> tuple[FakeClock, Executor, BrokenResults, ExecutionRunner]:
    clock = FakeClock()
    executor = Executor(connect(tmp_path / "engine.db"), lease_s=30.0, clock=clock)
    store = BrokenResults(FolderStore(tmp_path / "buckets", listener=executor))
    settings = Settings(
        data_dir=tmp_path / "data",
        engine={"lease_s": 30.0, "image_wait_s": 5.0, "retry_base_s": 0.2, "retry_max_s": 1.0},
    )
    runner = ExecutionRunner(
        store=store,
        executor=executor,
        model=FixedLogitsModel(),
        sink=ListSink(),
        settings=settings,
        worker_id="w1",
        rng=lambda: 0.5,
        clock=clock,
    )
    return clock, executor, store, runner


def _drive(executor: Executor, runner: ExecutionRunner, clock: FakeClock, steps: int) -> None:
    for _ in range(steps):
        claim = executor.claim("w1")
        if claim is not None:
            runner.run(claim)  # must not raise: a storage fault is the study's, not ours
        elif executor.idle():
            return
        else:
            clock.advance(1.0)


@pytest.mark.parametrize("valid", [True, False], ids=["result", "failure"])
def test_a_results_bucket_that_refuses_writes_delays_the_outcome_and_loses_nothing(
    tmp_path: Path, valid: bool
) -> None:
    clock, executor, store, runner = _setup(tmp_path)
    study = make_study("s", "png", np.random.default_rng(3))
    sidecar = study.sidecar if valid else b'{"study_id": "s"}'
    store.put("images", f"incoming/s/{study.image_name}", study.image)
    store.put("images", "incoming/s/s.json", sidecar)
    # Far more retries than max_stage_attempts (5): the outage is bounded by time, not count.
    _drive(executor, runner, clock, steps=40)
    assert store.refused > 10
    assert executor.counts() == {"pending": 1, "running": 0, "succeeded": 0, "failed": 0}
    store.broken = False
    _drive(executor, runner, clock, steps=40)
    [row] = executor.executions()
    assert row["state"] == ("succeeded" if valid else "failed")
    assert row["takeovers"] == 0
    if not valid:
        assert row["error_code"] == "SIDECAR_MISSING_FIELD"
        failure = json.loads(store.get("results", "failed/s/s.json"))
        assert failure["error"]["code"] == "SIDECAR_MISSING_FIELD"


def test_an_outage_beyond_the_budget_fails_the_study_store_unavailable(tmp_path: Path) -> None:
    clock, executor, store, runner = _setup(tmp_path)
    study = make_study("s", "png", np.random.default_rng(3))
    store.put("images", f"incoming/s/{study.image_name}", study.image)
    store.put("images", "incoming/s/s.json", study.sidecar)
    _drive(executor, runner, clock, steps=5)
    clock.advance(601.0)  # past engine.outage_budget_s
    _drive(executor, runner, clock, steps=5)
    # The failure cannot be written either: it waits, the worker lives on.
    assert executor.counts()["pending"] == 1
    store.broken = False
    _drive(executor, runner, clock, steps=20)
    [row] = executor.executions()
    assert (row["state"], row["error_code"]) == ("failed", "STORE_UNAVAILABLE")


def test_an_os_error_of_the_folder_store_is_store_unavailable(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = FolderStore(tmp_path / "buckets")

    def full(*_args: object) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "replace", full)
    with pytest.raises(StoreUnavailable) as caught:
        store.put("results", "results/s/a.json", b"{}")
    assert caught.value.code == "STORE_UNAVAILABLE" and caught.value.retryable
    assert caught.value.details["errno"] == "ENOSPC"
    # The partial temporary file of the failed put is gone.
    assert not list((tmp_path / "buckets" / "results" / ".tmp").iterdir())


def _records(n: int) -> list[TelemetryRecord]:
    base = {
        "execution_id": "e" * 32,
        "study_id": "s",
        "stage": "validate",
        "status": StageStatus.OK,
        "start_ts": 1_796_000_000.0,
        "end_ts": 1_796_000_001.0,
        "duration_ms": 1000.0,
        "attempt": 1,
        "worker_id": "w",
        "pipeline_version": "1",
    }
    return [TelemetryRecord.model_validate(base | {"study_id": f"s{i}"}) for i in range(n)]


def test_telemetry_is_kept_while_the_lake_is_unwritable_and_written_later(tmp_path: Path) -> None:
    clock = FakeClock()
    lake = tmp_path / "lake"
    lake.write_bytes(b"")  # a file where the lake folder should be: every write fails
    sink = ParquetSink(lake, writer_id="w", flush_rows=1, flush_s=0.0, clock=clock, max_buffered=5)
    sink.emit(_records(3))
    assert sink.files_written == 0 and sink.dropped == 0
    sink.emit(_records(4))  # 7 kept would be over the bound of 5: the 2 oldest go
    assert sink.dropped == 2
    lake.unlink()
    sink.maybe_flush()  # within the backoff: no attempt yet
    assert sink.files_written == 0
    clock.advance(60.0)
    sink.maybe_flush()
    assert read_lake(lake).num_rows == 5
    sink.close()
    assert sink.dropped == 2


def test_a_sink_closed_with_the_lake_down_counts_what_it_loses(tmp_path: Path) -> None:
    lake = tmp_path / "lake"
    lake.write_bytes(b"")
    sink = ParquetSink(lake, writer_id="w", flush_rows=100, flush_s=100.0)
    sink.emit(_records(3))
    sink.close()  # does not raise
    assert sink.dropped == 3


def test_a_lease_that_ran_out_while_its_owner_lives_is_no_death(tmp_path: Path) -> None:
    clock = FakeClock()
    executor = Executor(connect(tmp_path / "engine.db"), lease_s=10, max_takeovers=1, clock=clock)
    executor.register_worker("alive", os.getpid())  # this very process: alive
    executor.object_created(
        ObjectInfo(bucket="images", key="incoming/s/a.json", etag="e", size=2, modified=0.0)
    )
    assert executor.claim("alive") is not None
    clock.advance(11.0)  # it could not renew (a database outage), but it did not die
    claim = executor.claim("w2")
    assert claim is not None
    assert claim.takeovers == 0 and claim.stage == "validate"  # not abandoned at 1 of 1
    clock.advance(11.0)  # w2 is not registered: it counts as dead
    again = executor.claim("w3")
    assert again is not None and again.takeovers == 1
    assert again.stage == "record_failure"
    assert again.context.failure is not None
    assert again.context.failure.code == "EXECUTION_ABANDONED"


def test_the_lease_keeper_renews_until_stopped_or_lost() -> None:
    calls: list[int] = []
    done = threading.Event()

    def renew() -> bool:
        calls.append(1)
        if len(calls) == 3:
            done.set()
            return False
        return True

    with LeaseKeeper(renew, interval_s=0.01) as keeper:
        assert done.wait(10.0)
        for _ in range(1000):  # the flag is set just after renew returns
            if keeper.lost:
                break
            threading.Event().wait(0.01)
        assert keeper.lost
    assert len(calls) == 3  # no renewal after the lease was lost


class _DeadProcess:
    exitcode = -9

    def is_alive(self) -> bool:
        return False


class _LiveProcess:
    exitcode = None

    def is_alive(self) -> bool:
        return True


def test_worker_restarts_are_limited_per_minute_not_for_life(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    clock = FakeClock()
    pool = WorkerPool(Settings(), workers=2, max_restarts=3, clock=clock)
    spawned: list[str] = []

    def spawn() -> tuple[Any, str]:
        spawned.append(f"w{len(spawned)}")
        return _DeadProcess(), spawned[-1]  # each replacement dies at once

    monkeypatch.setattr(pool, "_spawn", spawn)
    pool.processes = [_DeadProcess(), _LiveProcess()]  # type: ignore[list-item]
    pool.worker_ids = ["a", "b"]
    for _ in range(10):
        pool.supervise()
    assert pool.restarts == 3  # the rate: 3 in this minute
    clock.advance(61.0)
    for _ in range(10):
        pool.supervise()
    assert pool.restarts == 6  # a new minute, 3 more: never given up for good


class SlowModel(FixedLogitsModel):
    """A model that takes ``seconds`` per call (a large image, a slow endpoint)."""

    def __init__(self, seconds: float) -> None:
        super().__init__()
        self.seconds = seconds

    def predict_logits(self, batch: Any) -> Any:
        threading.Event().wait(self.seconds)
        return super().predict_logits(batch)


def test_a_stage_longer_than_the_lease_is_not_taken_over(tmp_path: Path) -> None:
    db = tmp_path / "engine.db"
    executor, heartbeat, peer = (Executor(connect(db), lease_s=0.5) for _ in range(3))
    store = FolderStore(tmp_path / "buckets", listener=executor)
    study = make_study("s", "png", np.random.default_rng(3))
    store.put("images", f"incoming/s/{study.image_name}", study.image)
    store.put("images", "incoming/s/s.json", study.sidecar)
    runner = ExecutionRunner(
        store=store,
        executor=executor,
        model=SlowModel(2.0),  # four leases long
        sink=ListSink(),
        settings=Settings(data_dir=tmp_path / "data", engine={"lease_s": 0.5}),
        worker_id="w1",
        heartbeat=heartbeat,
    )
    executor.register_worker("w1", os.getpid())
    claim = executor.claim("w1")
    assert claim is not None
    stop = threading.Event()
    taken: list[object] = []

    def another_worker() -> None:
        while not stop.wait(0.05):
            found = peer.claim("w2")
            if found is not None:
                taken.append(found)

    thread = threading.Thread(target=another_worker)
    thread.start()
    try:
        runner.run(claim)
    finally:
        stop.set()
        thread.join()
    assert taken == []  # the lease kept renewing while infer ran
    [row] = executor.executions()
    assert (row["state"], row["takeovers"], row["claims"]) == ("succeeded", 0, 1)
