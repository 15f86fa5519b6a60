"""Outcomes of uploads to a deployed stack, read from its public surface: the results bucket.

As locally, success is the result object and failure the failure object, never an
execution status. Outcomes are seen through
:class:`~radstream.aws.completions.S3CompletionWatcher`, created *before* the uploads, so
an outcome object left by an earlier upload of the same image does not count unless it is
rewritten. An outcome's time is when a LIST first saw it: latencies read here are upper
bounds, late by at most one poll interval.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterable
from dataclasses import replace

from radstream.aws.completions import S3CompletionWatcher
from radstream.aws.reconcile import explain_lost
from radstream.aws.s3_store import S3ObjectStore
from radstream.aws.session import StackRef
from radstream.errors import RadStreamError
from radstream.layout import Bucket, is_dicom_drop
from radstream.stages.completions import Completion, Outcome, outcome_key_of

STACK_BUCKETS: dict[str, str] = {
    Bucket.IMAGES: "ImagesBucketName",
    Bucket.RESULTS: "ResultsBucketName",
    Bucket.TELEMETRY: "TelemetryBucketName",
    Bucket.ARTIFACTS: "ArtifactsBucketName",
}


class StackObjectStore(S3ObjectStore):
    """The buckets of a deployed stack, which also knows the stack (to explain a lost
    study from its execution)."""

    def __init__(self, stack: StackRef, buckets: dict[str, str]) -> None:
        super().__init__(stack.target.client("s3"), buckets)
        self.stack = stack


def stack_store(stack: StackRef) -> StackObjectStore:
    """The stack's buckets as an object store, by role."""
    outputs = stack.outputs()
    return StackObjectStore(stack, {role: outputs[key] for role, key in STACK_BUCKETS.items()})


def wait_for_outcomes(
    watcher: S3CompletionWatcher,
    uploads: Iterable[tuple[str, float]],
    *,
    timeout_s: float,
    poll_s: float = 0.5,
    on_progress: Callable[[int, int], None] | None = None,
) -> list[Outcome]:
    """Poll until every upload ``(sidecar_key, uploaded_at)`` has an outcome, or timeout.

        ``watcher`` must have been created before the uploads. Uploads with no outcome by the
        deadline are ``lost``, with their execution's status and error as the code when the
    store knows its stack (:func:`stack_store`). A failure's code is read from its object.
    """
    pending = dict(uploads)
    seen: dict[str, Completion] = {}
    drops = any(is_dicom_drop(key) for key in pending)
    deadline = time.monotonic() + timeout_s
    while True:
        for completion in watcher.poll():
            if completion.sidecar_key not in pending and drops:
                completion = _drop_completion(watcher.store, completion)
            if completion.sidecar_key in pending:
                seen.setdefault(completion.sidecar_key, completion)
        if on_progress is not None:
            on_progress(len(seen), len(pending))
        if len(seen) == len(pending) or time.monotonic() > deadline:
            break
        time.sleep(poll_s)
    outcomes = [
        _outcome(watcher.store, key, created, seen.get(key)) for key, created in pending.items()
    ]
    return _explained(watcher.store, outcomes)


def _drop_completion(store: S3ObjectStore, completion: Completion) -> Completion:
    """``completion`` as the outcome of the upload its object names.

    A DICOM uploaded without a sidecar (``dicom/{folder}/{file}``) lands under its
    header's study, so the key alone cannot say which upload it was: the object's
    ``sidecar_key`` field does (one GET, and only while such uploads are awaited).
    """
    if completion.outcome_key is None:
        return completion
    try:
        body = json.loads(store.get(Bucket.RESULTS, completion.outcome_key))
    except (RadStreamError, ValueError):  # gone or unreadable: not this upload's outcome
        return completion
    upload = body.get("sidecar_key") if isinstance(body, dict) else None
    if not isinstance(upload, str) or not is_dicom_drop(upload):
        return completion
    return replace(completion, sidecar_key=upload)


def _explained(store: S3ObjectStore, outcomes: list[Outcome]) -> list[Outcome]:
    """Lost outcomes with their execution's status and error as the code (``lost: FAILED
    States.Runtime``), so a study that ended with no outcome object says why."""
    lost = [o for o in outcomes if o.status == "lost"]
    if not lost or not isinstance(store, StackObjectStore):
        return outcomes
    since = min((o.created_at for o in lost if o.created_at is not None), default=0.0)
    reasons = explain_lost(store.stack, [o.sidecar_key for o in lost], since=since)
    return [
        replace(o, error_code=f"lost: {reasons[o.sidecar_key]}")
        if o.status == "lost" and o.sidecar_key in reasons
        else o
        for o in outcomes
    ]


def _outcome(store: S3ObjectStore, key: str, created: float, seen: Completion | None) -> Outcome:
    if seen is None:
        return Outcome(key, "lost", None, created, None)
    when = seen.at
    if seen.kind == "result":
        return Outcome(key, "succeeded", None, created, when, seen.outcome_key)
    failure = seen.outcome_key or outcome_key_of(key, "failure")
    try:
        error = json.loads(store.get(Bucket.RESULTS, failure)).get("error", {})
        code = str(error.get("code")) if isinstance(error, dict) else None
    except ValueError:
        code = None
    return Outcome(key, "failed", code, created, when, failure)
