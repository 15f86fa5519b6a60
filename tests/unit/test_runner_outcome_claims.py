"""README claims about outcome objects, on the local runner over a real store and executor.

* The lease is renewed (fenced) right before an outcome object is written: a worker whose
  execution was taken over in the meantime writes no result and no failure.
* Results carry no patient field: a sidecar full of patient data leaves no trace of it in
  the result or failure object.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from radstream.layout import Bucket
from radstream.loadgen.study import make_study
from radstream.local.database import connect
from radstream.local.executor import Claim, Executor
from radstream.local.runner import ExecutionRunner
from radstream.local.store import FolderStore
from radstream.schema.sidecar import PATIENT_FIELDS
from radstream.settings import Settings
from radstream.stages.context import ExecutionContext
from support.clocks import FakeClock
from support.fakes import FixedLogitsModel, ListSink

LEASE_S = 30.0
PATIENT = {
    "patient_id": "PID-OKAPI-31337",
    "patient_name": "Rocinante^Sancho",
    "patient_birth_date": "1931-07-14",
    "patient_sex": "O",
    "patient_age": "093Y",
}


# Above Linux's PID_MAX_LIMIT (2**22): no process can have it, so the worker is "dead".
DEAD_PID = 2**22 + 1


class TakeoverAfterCheckpoint(Executor):
    """An executor on which a peer takes the execution over right after a checkpoint
    to ``at_stage`` succeeds, before the checkpointing worker goes on (its process was
    reported dead, so the lease is expired at once: no time passes)."""

    at_stage = "store"
    taken_over: Claim | None = None

    def checkpoint(
        self, claim: Claim, worker_id: str, next_stage: str, context: ExecutionContext
    ) -> bool:
        done = super().checkpoint(claim, worker_id, next_stage, context)
        if done and next_stage == self.at_stage and self.taken_over is None:
            assert self.reap_dead_workers() == 1
            self.taken_over = self.claim("w2")
            assert self.taken_over is not None and self.taken_over.stage == self.at_stage
        return done


class TakeoverOnRead(FolderStore):
    """A store on which a peer takes the execution over while ``w1`` reads a sidecar."""

    executor: Executor | None = None
    taken_over: Claim | None = None

    def get(self, bucket: str, key: str) -> bytes:
        data = super().get(bucket, key)
        if key.endswith(".json") and self.executor is not None and self.taken_over is None:
            assert self.executor.reap_dead_workers() == 1
            self.taken_over = self.executor.claim("w2")
            assert self.taken_over is not None
        return data


def _runner(
    store: FolderStore, executor: Executor, clock: FakeClock, tmp_path: Path, worker: str
) -> ExecutionRunner:
    settings = Settings(
        data_dir=tmp_path / "data",
        engine={"lease_s": LEASE_S, "image_wait_s": 5.0, "retry_base_s": 0.2},
    )
    return ExecutionRunner(
        store=store,
        executor=executor,
        model=FixedLogitsModel(),
        sink=ListSink(),
        settings=settings,
        worker_id=worker,
        rng=lambda: 0.5,
        clock=clock,
    )


def _upload(store: FolderStore, study_id: str, *, sidecar_study: str | None = None) -> None:
    study = make_study(study_id, "png", np.random.default_rng(3), width=96, height=96)
    fields = json.loads(study.sidecar) | PATIENT
    if sidecar_study is not None:
        fields["study_id"] = sidecar_study
    store.put(Bucket.IMAGES, f"incoming/{study_id}/{study.image_name}", study.image)
    store.put(Bucket.IMAGES, f"incoming/{study_id}/{study_id}.json", json.dumps(fields).encode())


def _outcomes(store: FolderStore) -> list[str]:
    return sorted(store.list(Bucket.RESULTS, ""))


def test_a_worker_taken_over_before_store_writes_no_result(tmp_path: Path) -> None:
    clock = FakeClock()
    executor = TakeoverAfterCheckpoint(connect(tmp_path / "e.db"), lease_s=LEASE_S, clock=clock)
    store = FolderStore(tmp_path / "buckets", listener=executor)
    executor.register_worker("w1", DEAD_PID)
    _upload(store, "lease-ok")
    claim = executor.claim("w1")
    assert claim is not None

    # No time passes between the checkpoint to store and the store stage: only the
    # forced renewal before an outcome is written can see that the lease is gone.
    _runner(store, executor, clock, tmp_path, "w1").run(claim)
    assert executor.taken_over is not None
    assert _outcomes(store) == []  # w1 wrote nothing
    [row] = executor.executions()
    assert row["state"] == "running" and row["lease_owner"] == "w2"

    _runner(store, executor, clock, tmp_path, "w2").run(executor.taken_over)
    [row] = executor.executions()
    assert row["state"] == "succeeded"
    assert _outcomes(store) == ["results/lease-ok/lease-ok.json"]


def test_a_worker_taken_over_before_record_failure_writes_no_failure(tmp_path: Path) -> None:
    clock = FakeClock()
    executor = Executor(connect(tmp_path / "e.db"), lease_s=LEASE_S, clock=clock)
    store = TakeoverOnRead(tmp_path / "buckets", listener=executor)
    executor.register_worker("w1", DEAD_PID)
    # The sidecar names another study than its folder: validate fails for good, and the
    # next stage is record_failure, with no checkpoint in between.
    _upload(store, "lease-bad", sidecar_study="other")
    claim = executor.claim("w1")
    assert claim is not None
    store.executor = executor

    _runner(store, executor, clock, tmp_path, "w1").run(claim)
    assert store.taken_over is not None
    assert _outcomes(store) == []  # the failure is the new owner's to write
    [row] = executor.executions()
    assert row["state"] == "running" and row["lease_owner"] == "w2"

    store.executor = None
    _runner(store, executor, clock, tmp_path, "w2").run(store.taken_over)
    [row] = executor.executions()
    assert row["state"] == "failed" and row["error_code"] == "STUDY_ID_MISMATCH"
    assert _outcomes(store) == ["failed/lease-bad/lease-bad.json"]


def test_results_and_failures_carry_no_patient_field(tmp_path: Path) -> None:
    clock = FakeClock()
    executor = Executor(connect(tmp_path / "e.db"), lease_s=LEASE_S, clock=clock)
    store = FolderStore(tmp_path / "buckets", listener=executor)
    _upload(store, "pat-ok")
    _upload(store, "pat-bad", sidecar_study="other")
    runner = _runner(store, executor, clock, tmp_path, "w1")
    while (claim := executor.claim("w1")) is not None:
        runner.run(claim)

    keys = _outcomes(store)
    assert keys == ["failed/pat-bad/pat-bad.json", "results/pat-ok/pat-ok.json"]
    assert set(PATIENT) == PATIENT_FIELDS  # every field the code calls a patient's
    for key in keys:
        text = store.get(Bucket.RESULTS, key).decode()
        document = json.loads(text)
        assert "probabilities" in document or "error" in document, key
        for field, value in PATIENT.items():
            assert field not in text, (key, field)
            assert json.dumps(value) not in text, (key, field)  # as a JSON string
        # Nor a near copy: the distinctive parts of the name and id.
        for fragment in ("OKAPI", "31337", "Rocinante", "Sancho", "1931"):
            assert fragment not in text, (key, fragment)
