"""Durable executor on a real SQLite file: routing, dedup, leases, fencing, takeovers."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from radstream.local.database import connect
from radstream.local.executor import Executor, execution_id
from radstream.stages.context import ExecutionContext
from radstream.stages.ports import ObjectInfo


class Clock:
    def __init__(self) -> None:
        self.now = 1_000.0

    def __call__(self) -> float:
        return self.now


def _event(key: str, etag: str = "e1", bucket: str = "images") -> ObjectInfo:
    return ObjectInfo(bucket=bucket, key=key, etag=etag, size=1, modified=0.0)


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def executor(tmp_path: Path, clock: Clock) -> Executor:
    return Executor(connect(tmp_path / "engine.db"), lease_s=10, max_takeovers=2, clock=clock)


def test_only_sidecars_under_incoming_start_executions(executor: Executor) -> None:
    executor.object_created(_event("incoming/s/a.png"))
    executor.object_created(_event("incoming/s/a.json"))
    executor.object_created(_event("incoming/s/B.JSON"))
    executor.object_created(_event("elsewhere/s/a.json"))
    executor.object_created(_event("incoming/s/a.json", bucket="results"))
    assert executor.route() == 2
    assert executor.counts() == {"pending": 2, "running": 0, "succeeded": 0, "failed": 0}


def test_duplicate_event_is_a_no_op_but_new_content_is_new(executor: Executor) -> None:
    executor.object_created(_event("incoming/s/a.json"))
    executor.object_created(_event("incoming/s/a.json"))
    assert executor.route() == 1
    executor.object_created(_event("incoming/s/a.json", etag="e2"))
    assert executor.route() == 1
    assert executor.counts()["pending"] == 2


def test_claim_checkpoint_finish(executor: Executor) -> None:
    executor.object_created(_event("incoming/s/a.json"))
    claim = executor.claim("w1")
    assert claim is not None
    assert claim.execution_id == execution_id("images", "incoming/s/a.json", "e1")
    assert claim.stage == "validate" and claim.claims == 1
    assert executor.claim("w2") is None  # leased
    assert claim.context.key == "incoming/s/a.json"
    assert claim.context.execution_id == claim.execution_id
    assert executor.checkpoint(claim, "w1", "prepare", ExecutionContext(study_id="s"))
    assert executor.finish(claim, "w1", succeeded=True, outcome_key="results/s/a.json")
    assert executor.counts()["succeeded"] == 1
    assert executor.idle()


def test_expired_lease_is_taken_over_and_old_owner_is_fenced(
    executor: Executor, clock: Clock
) -> None:
    executor.object_created(_event("incoming/s/a.json"))
    first = executor.claim("w1")
    assert first is not None
    assert executor.checkpoint(first, "w1", "prepare", ExecutionContext(study_id="s"))
    clock.now += 11  # w1 stops renewing: it died
    second = executor.claim("w2")
    assert second is not None
    assert second.stage == "prepare" and second.context.study_id == "s"
    assert second.takeovers == 1
    # The presumed-dead worker wakes up: its writes no longer land.
    assert not executor.checkpoint(first, "w1", "store", ExecutionContext())
    assert not executor.finish(first, "w1", succeeded=True, outcome_key="x")
    assert executor.finish(second, "w2", succeeded=True, outcome_key="y")


@pytest.mark.parametrize("max_takeovers", [1, 2, 3])
def test_the_execution_fails_at_exactly_max_takeovers_deaths(
    tmp_path: Path, clock: Clock, max_takeovers: int
) -> None:
    executor = Executor(
        connect(tmp_path / "engine.db"), lease_s=10, max_takeovers=max_takeovers, clock=clock
    )
    executor.object_created(_event("incoming/s/a.json"))
    deaths = 0
    while True:
        claim = executor.claim(f"w{deaths}")
        assert claim is not None
        assert claim.takeovers == deaths
        if claim.stage == "record_failure":
            break
        assert claim.stage == "validate"  # still trying: fewer deaths than the limit
        clock.now += 11  # the worker dies holding the lease
        deaths += 1
    assert deaths == max_takeovers  # "fails after engine.max_takeovers deaths", not one more
    assert claim.context.failure is not None
    assert claim.context.failure.code == "EXECUTION_ABANDONED"
    assert claim.context.failure.stage == "validate"
    assert claim.context.failure.details["takeovers"] == max_takeovers


def test_retry_later_waits_for_backoff(executor: Executor, clock: Clock) -> None:
    executor.object_created(_event("incoming/s/a.json"))
    claim = executor.claim("w1")
    assert claim is not None
    assert executor.retry_later(claim, "w1", "validate", 1, 2.0, claim.context)
    assert executor.claim("w1") is None
    assert not executor.idle()
    clock.now += 2.5
    again = executor.claim("w1")
    assert again is not None and again.stage_attempt == 1 and again.claims == 2


def test_dead_worker_process_releases_its_lease_at_once(executor: Executor) -> None:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    executor.register_worker("dead", proc.pid)
    assert executor.live_workers() == 0
    executor.register_worker("me", os.getpid())
    assert executor.live_workers() == 1
    executor.object_created(_event("incoming/s/a.json"))
    assert executor.claim("dead") is not None
    assert executor.claim("w2") is None
    assert executor.reap_dead_workers() == 1
    claim = executor.claim("w2")
    assert claim is not None and claim.takeovers == 1


def test_sidecar_put_again_after_failure_reruns_but_not_after_success(
    executor: Executor, clock: Clock
) -> None:
    executor.object_created(_event("incoming/s/a.json"))
    first = executor.claim("w")
    assert first is not None
    executor.finish(first, "w", succeeded=False, outcome_key="failed/s/a.json", error_code="X")
    clock.now += 1
    executor.object_created(_event("incoming/s/a.json"))  # the user fixed the image
    assert executor.route() == 1
    rerun = executor.claim("w")
    assert rerun is not None and rerun.execution_id != first.execution_id
    trigger = execution_id("images", "incoming/s/a.json", "e1")
    assert executor.latest([trigger])[trigger]["id"] == rerun.execution_id
    executor.finish(rerun, "w", succeeded=True, outcome_key="results/s/a.json")
    clock.now += 1
    executor.object_created(_event("incoming/s/a.json"))
    assert executor.route() == 0
    assert executor.terminal_count([trigger]) == 1


def _finish_latest(executor: Executor, *, succeeded: bool) -> str:
    claim = executor.claim("w")
    assert claim is not None
    executor.finish(claim, "w", succeeded=succeeded, outcome_key="x", error_code=None)
    return claim.execution_id


def test_a_changed_image_with_the_same_sidecar_reruns_after_success(
    executor: Executor, clock: Clock
) -> None:
    executor.object_created(_event("incoming/s/a.png", etag="img1"))
    executor.object_created(_event("incoming/s/a.json"))
    first = _finish_latest(executor, succeeded=True)
    clock.now += 1
    # The user replaces the image, then puts the same sidecar bytes again (same ETag).
    executor.object_created(_event("incoming/s/a.png", etag="img2"))
    executor.object_created(_event("incoming/s/a.json"))
    assert executor.route() == 1
    second = _finish_latest(executor, succeeded=True)
    assert second != first
    trigger = execution_id("images", "incoming/s/a.json", "e1")
    assert executor.latest([trigger])[trigger]["id"] == second


def test_an_identical_reupload_of_image_and_sidecar_after_success_is_a_no_op(
    executor: Executor, clock: Clock
) -> None:
    executor.object_created(_event("incoming/s/a.png", etag="img1"))
    executor.object_created(_event("incoming/s/a.json"))
    _finish_latest(executor, succeeded=True)
    clock.now += 1
    executor.object_created(_event("incoming/s/a.png", etag="img1"))
    executor.object_created(_event("incoming/s/a.json"))
    assert executor.route() == 0
    # Another study's image changing does not count either.
    executor.object_created(_event("incoming/s/ab.png", etag="other"))
    executor.object_created(_event("incoming/s/a.json"))
    assert executor.route() == 0


def test_an_image_that_arrived_after_its_sidecar_is_the_one_the_run_read(
    executor: Executor, clock: Clock
) -> None:
    executor.object_created(_event("incoming/s/a.json"))
    claim = executor.claim("w")  # validate starts before the image is there, waits
    assert claim is not None
    clock.now += 1
    executor.object_created(_event("incoming/s/a.png", etag="img1"))
    executor.finish(claim, "w", succeeded=True, outcome_key="x")
    clock.now += 1
    executor.object_created(_event("incoming/s/a.json"))  # same sidecar, same image
    assert executor.route() == 0


def test_a_reput_while_the_execution_runs_is_a_no_op(executor: Executor, clock: Clock) -> None:
    executor.object_created(_event("incoming/s/a.png", etag="img1"))
    executor.object_created(_event("incoming/s/a.json"))
    assert executor.claim("w") is not None
    clock.now += 1
    executor.object_created(_event("incoming/s/a.png", etag="img2"))
    executor.object_created(_event("incoming/s/a.json"))
    assert executor.route() == 0


def test_takeovers_are_not_starved_by_new_uploads(executor: Executor, clock: Clock) -> None:
    executor.object_created(_event("incoming/s/old.json"))
    stuck = executor.claim("dead")
    assert stuck is not None
    clock.now += 11
    executor.object_created(_event("incoming/s/new.json"))
    claim = executor.claim("w")
    assert claim is not None and claim.key == "incoming/s/old.json"
    assert claim.queue_wait_s is None  # a takeover's wait is not queueing


def test_retry_delay_never_overflows() -> None:
    from radstream.pipeline.definition import RetryPolicy

    policy = RetryPolicy(base_s=0.2, max_s=5.0)
    # Full jitter, as Step Functions' "JitterStrategy": "FULL": from 0 up to the ceiling.
    assert policy.delay(1, 0.0) == 0.0
    assert policy.delay(1, 0.5) == pytest.approx(0.1)
    assert policy.delay(100_000, 0.99) == pytest.approx(4.95)


def test_a_checkpoint_written_before_the_typed_context_still_loads(
    executor: Executor, tmp_path: Path
) -> None:
    executor.object_created(_event("incoming/s/a.json"))
    executor.route()
    # The dict an older runner checkpointed: the routed error under "error".
    old = {
        "study_id": "s",
        "expected_size": [None, 640],
        "stage_ms": {"validate": 1.5},
        "error": {
            "code": "IMAGE_TRUNCATED",
            "message": "m",
            "hint": "h",
            "retryable": False,
            "details": {},
            "stage": "prepare",
        },
    }
    conn = connect(tmp_path / "engine.db")
    conn.execute("UPDATE executions SET context = ?", (json.dumps(old),))
    claim = executor.claim("w")
    assert claim is not None
    context = claim.context
    assert context.study_id == "s" and context.expected_size == (None, 640)
    assert context.stage_ms == {"validate": 1.5}
    assert context.failure is not None and context.failure.code == "IMAGE_TRUNCATED"
    assert context.failure.stage == "prepare"


def test_keys_step_functions_adds_survive_a_round_trip() -> None:
    state = {"bucket": "rs-images", "etag": "abc", "sequencer": "0A1", "error": {"Error": "X"}}
    context = ExecutionContext.from_json(state, execution_id="e1")
    assert context.extra("sequencer") == "0A1"
    assert context.failure is None  # a Catch's {"Error", "Cause"} is not a routed error
    assert {k: context.to_json()[k] for k in state} == state
