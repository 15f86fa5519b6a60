"""Outcomes of uploads to a deployed stack, read from its public surface: the results bucket.

As locally, success is the result object and failure the failure object, never an
execution status. Each poll lists ``results/`` and ``failed/`` (a LIST call per 1,000
keys, whatever the number of uploads in flight), and an outcome's time is when a poll first
saw it, so latencies read here are upper bounds, late by at most one poll interval.

An outcome object left by an earlier upload of the same image does not count: the caller
snapshots the outcome ETags before uploading (:func:`outcome_snapshot`), and only a new or
rewritten object (every outcome names its execution, so its ETag changes) is taken.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterable

from radstream.aws.s3_store import S3ObjectStore
from radstream.aws.session import StackRef
from radstream.bench.outcomes import Outcome
from radstream.stages.outcomes import sidecar_stem
from radstream.stages.store import RESULTS_BUCKET, failure_key, result_key
from radstream.stages.validate import study_folder

STACK_BUCKETS: dict[str, str] = {
    "images": "ImagesBucketName",
    "results": "ResultsBucketName",
    "telemetry": "TelemetryBucketName",
    "artifacts": "ArtifactsBucketName",
}


def stack_store(stack: StackRef) -> S3ObjectStore:
    """The stack's buckets as an object store, by role."""
    outputs = stack.outputs()
    return S3ObjectStore(
        stack.target.client("s3"), {role: outputs[key] for role, key in STACK_BUCKETS.items()}
    )


def outcome_keys(sidecar_key: str) -> tuple[str, str]:
    """Where the result and the failure of an upload land (``results/…``, ``failed/…``)."""
    folder, stem = study_folder(sidecar_key), sidecar_stem(sidecar_key)
    return result_key(folder, stem), failure_key(folder, stem)


def outcome_snapshot(store: S3ObjectStore) -> dict[str, str]:
    """Outcome key → ETag of every result and failure object now in the results bucket."""
    return {
        **store.etags(RESULTS_BUCKET, "results/"),
        **store.etags(RESULTS_BUCKET, "failed/"),
    }


def wait_for_outcomes(
    store: S3ObjectStore,
    uploads: Iterable[tuple[str, float]],
    *,
    timeout_s: float,
    poll_s: float = 0.5,
    before: dict[str, str] | None = None,
    on_progress: Callable[[int, int], None] | None = None,
) -> list[Outcome]:
    """Poll until every upload ``(sidecar_key, uploaded_at)`` has an outcome, or timeout.

    ``before`` is :func:`outcome_snapshot` taken before the uploads: objects unchanged
    since then are an earlier upload's outcome and are ignored. Uploads with no outcome by
    the deadline are ``lost``. A failure's code is read from its object.
    """
    pending = dict(uploads)
    stale = dict(before or {})
    total = len(pending)
    seen: dict[str, tuple[str, float]] = {}  # sidecar key -> (outcome key, first seen)
    deadline = time.monotonic() + timeout_s
    while True:
        present = {
            key: etag for key, etag in outcome_snapshot(store).items() if stale.get(key) != etag
        }
        now = time.time()
        for key in list(pending):
            if key in seen:
                continue
            ok, failed = outcome_keys(key)
            found = ok if ok in present else failed if failed in present else None
            if found is not None:
                seen[key] = (found, now)
        if on_progress is not None:
            on_progress(len(seen), total)
        if len(seen) == total or time.monotonic() > deadline:
            break
        time.sleep(poll_s)
    return [_outcome(store, key, created, seen.get(key)) for key, created in pending.items()]


def _outcome(
    store: S3ObjectStore, key: str, created: float, seen: tuple[str, float] | None
) -> Outcome:
    if seen is None:
        return Outcome(key, "lost", None, created, None)
    outcome_key, when = seen
    if outcome_key.startswith("results/"):
        return Outcome(key, "succeeded", None, created, when)
    try:
        error = json.loads(store.get(RESULTS_BUCKET, outcome_key)).get("error", {})
        code = str(error.get("code")) if isinstance(error, dict) else None
    except ValueError:
        code = None
    return Outcome(key, "failed", code, created, when)
