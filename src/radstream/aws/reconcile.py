"""Reconciliation on a deployed stack: studies that ended with no outcome object.

Every study ends in a result or a failure object, unless something below RadStream
failed: ``RecordFailure`` itself could not write (a role denied, a package that does not
import), an EXPRESS execution hit its five minutes, EventBridge never started the
execution. Nothing then says so, so this report looks from both ends:

* uploads (sidecars under ``incoming/``, DICOM files under ``dicom/``) with neither a
  result nor a failure object, each with the latest execution that ended FAILED,
  TIMED_OUT or ABORTED for it, and its error;
* executions that ended FAILED, TIMED_OUT or ABORTED for a study with no outcome object.

A sidecar's outcome is named after it; a DICOM file's is named after its header's study,
so the outcome objects no sidecar names are read for their ``sidecar_key`` (one GET each,
only while DICOM uploads are in the bucket).

``requeue`` starts each lost study again the way an upload does: the upload is copied
onto itself, which S3 reports as a new "Object Created" event with a new sequencer, so the
upload rule starts a fresh execution (a new claim) and the old one's claim does not stop it.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from radstream.aws.reconcile_drops import superseded_drops
from radstream.aws.session import StackRef
from radstream.errors import StackNotFound
from radstream.layout import (
    DICOM_DROP,
    FAILED,
    INCOMING,
    RESULTS,
    is_dicom_drop,
    is_sidecar,
    sidecar_key_for,
)

FAILED_STATUSES: tuple[str, ...] = ("FAILED", "TIMED_OUT", "ABORTED")
"""Execution statuses that should have left a failure object."""
MAX_EXECUTIONS = 1000
"""Executions read per status (the latest): the report looks at recent history."""
REQUEUE_METADATA = "radstream-requeued-at"
_CLOCK_SLACK_S = 5.0  # this machine's clock against Step Functions'


@dataclass(frozen=True)
class EndedExecution:
    """An execution that ended without success, and why Step Functions says it did."""

    arn: str
    key: str
    """The upload (sidecar or DICOM file) it ran for."""
    status: str
    error: str | None
    cause: str | None
    stopped_at: float | None


@dataclass(frozen=True)
class LostStudy:
    """An upload with no outcome object, and its latest ended execution if any."""

    key: str
    age_s: float
    execution: EndedExecution | None


@dataclass(frozen=True)
class StackReconciliation:
    """What :func:`reconcile_stack` found."""

    lost: list[LostStudy]
    """Uploads older than the threshold with neither result nor failure object."""
    unrecorded: list[EndedExecution]
    """Executions that ended FAILED, TIMED_OUT or ABORTED for a study with no outcome."""
    executions_listed: bool = True
    """False for an EXPRESS state machine, whose executions Step Functions does not list
    (their errors are in the state machine's log group)."""


def reconcile_stack(
    stack: StackRef, *, older_than_s: float = 60.0, now: float | None = None
) -> StackReconciliation:
    """Find the stack's studies with no outcome object (see the module doc).

    Raises :class:`~radstream.errors.StackNotFound` when ``stack`` is not a RadStream stack.
    """
    outputs = stack.outputs()
    try:
        images, results = outputs["ImagesBucketName"], outputs["ResultsBucketName"]
        machine = outputs["StateMachineArn"]
    except KeyError as exc:
        raise StackNotFound(f"stack {stack.name!r} has no {exc.args[0]} output") from None
    s3 = stack.target.client("s3")
    current = time.time() if now is None else now
    uploads = {
        key: modified
        for prefix in (INCOMING, DICOM_DROP)
        for key, modified in _objects(s3, images, prefix)
        if is_sidecar(key) or is_dicom_drop(key)
    }
    outcomes = _uploads_with_outcomes(s3, results, uploads)
    outcomes |= superseded_drops(s3, images, results, uploads, outcomes)  # DICOM drops: see there
    try:
        ended, listed = _ended_executions(stack.target.client("stepfunctions"), machine), True
    except ClientError as exc:
        if "not supported" not in str(exc).lower() and "express" not in str(exc).lower():
            raise
        ended, listed = [], False  # EXPRESS: ListExecutions refuses
    latest: dict[str, EndedExecution] = {}
    for execution in ended:  # newest first: keep the first seen per sidecar
        latest.setdefault(execution.key, execution)
    lost = [
        LostStudy(key=key, age_s=round(current - modified, 1), execution=latest.get(key))
        for key, modified in uploads.items()
        if key not in outcomes and current - modified >= older_than_s
    ]
    unrecorded = [e for e in ended if e.key not in outcomes]
    return StackReconciliation(lost=lost, unrecorded=unrecorded, executions_listed=listed)


def requeue(stack: StackRef, keys: list[str], now: float | None = None) -> int:
    """Start each upload's study again (copy it onto itself: a new upload event); return
    how many were requeued. An upload deleted since the report is skipped."""
    images = stack.outputs()["ImagesBucketName"]
    s3 = stack.target.client("s3")
    stamp = f"{time.time() if now is None else now:.3f}"
    count = 0
    for key in dict.fromkeys(keys):
        try:
            s3.copy_object(
                Bucket=images,
                Key=key,
                CopySource={"Bucket": images, "Key": key},
                # A copy onto itself must change something: the requeue time.
                MetadataDirective="REPLACE",
                Metadata={REQUEUE_METADATA: stamp},
                ContentType="application/dicom" if is_dicom_drop(key) else "application/json",
            )
        except ClientError as exc:
            if str(exc.response.get("Error", {}).get("Code")) in ("NoSuchKey", "404"):
                continue
            raise
        count += 1
    return count


def explain_lost(stack: StackRef, keys: list[str], *, since: float) -> dict[str, str]:
    """Why each sidecar in ``keys`` has no outcome, from its latest execution started
    since ``since`` (epoch seconds): ``"FAILED States.Runtime"``, ``"RUNNING"``, or
    ``"no execution started"``. Best effort: empty when Step Functions cannot be asked."""
    wanted = set(keys)
    found: dict[str, str] = {}
    try:
        machine = stack.outputs()["StateMachineArn"]
        sfn = stack.target.client("stepfunctions")
        pages = sfn.get_paginator("list_executions").paginate(
            stateMachineArn=machine, PaginationConfig={"MaxItems": MAX_EXECUTIONS}
        )
        for page in pages:
            for item in page.get("executions", []):  # newest first
                started = item.get("startDate")
                if started is not None and started.timestamp() < since - _CLOCK_SLACK_S:
                    continue
                status = str(item.get("status", ""))
                execution = _describe(sfn, str(item["executionArn"]), status)
                if execution is None or execution.key not in wanted or execution.key in found:
                    continue
                found[execution.key] = " ".join(p for p in (status, execution.error) if p)
    except (ClientError, BotoCoreError, KeyError, StackNotFound):
        return {}
    return {key: found.get(key, "no execution started") for key in keys}


def _uploads_with_outcomes(s3: Any, results: str, uploads: dict[str, float]) -> set[str]:
    """The uploads among ``uploads`` that have a result or a failure object."""
    drops = any(is_dicom_drop(key) for key in uploads)
    found: set[str] = set()
    for prefix in (RESULTS, FAILED):
        for key, _ in _objects(s3, results, prefix):
            sidecar = sidecar_key_for(key)
            if sidecar is None:
                continue
            # Every outcome counts for the sidecar it is named after, whether or not that
            # sidecar is still in the bucket (an ended execution is judged by it too).
            found.add(sidecar)
            if drops and sidecar not in uploads:
                upload = _upload_named_in(s3, results, key)
                if upload is not None:
                    found.add(upload)
    return found


def _upload_named_in(s3: Any, bucket: str, key: str) -> str | None:
    """The DICOM upload an outcome object names in its ``sidecar_key``, if it does."""
    try:
        body: object = json.loads(s3.get_object(Bucket=bucket, Key=key)["Body"].read())
    except (ClientError, ValueError):  # gone since the listing, or not ours
        return None
    upload = body.get("sidecar_key") if isinstance(body, dict) else None
    return upload if isinstance(upload, str) and is_dicom_drop(upload) else None


def _objects(s3: Any, bucket: str, prefix: str) -> Iterator[tuple[str, float]]:
    """(key, last modified) of every object under ``prefix``."""
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
        for item in page.get("Contents", []):
            yield str(item["Key"]), float(item["LastModified"].timestamp())


def _ended_executions(sfn: Any, machine: str) -> list[EndedExecution]:
    """The latest executions that ended FAILED, TIMED_OUT or ABORTED, newest first."""
    found: list[EndedExecution] = []
    for status in FAILED_STATUSES:
        pages = sfn.get_paginator("list_executions").paginate(
            stateMachineArn=machine,
            statusFilter=status,
            PaginationConfig={"MaxItems": MAX_EXECUTIONS},
        )
        for page in pages:
            for item in page.get("executions", []):
                execution = _describe(sfn, str(item["executionArn"]), status)
                if execution is not None:
                    found.append(execution)
    found.sort(key=lambda e: e.stopped_at or 0.0, reverse=True)
    return found


def _describe(sfn: Any, arn: str, status: str) -> EndedExecution | None:
    """The execution's upload (from its input) and error; None for one not started by an
    upload (an input without a sidecar or DICOM key)."""
    reply = sfn.describe_execution(executionArn=arn)
    try:
        started: object = json.loads(str(reply.get("input", "{}")))
    except ValueError:
        return None
    key = started.get("key") if isinstance(started, dict) else None
    if not isinstance(key, str) or not (is_sidecar(key) or is_dicom_drop(key)):
        return None
    stopped = reply.get("stopDate")
    return EndedExecution(
        arn=arn,
        key=key,
        status=status,
        error=_text(reply.get("error")),
        cause=_text(reply.get("cause")),
        stopped_at=stopped.timestamp() if stopped is not None else None,
    )


def _text(value: object) -> str | None:
    # A cause can be a whole stack trace: enough of it to recognise the error.
    return None if value is None else str(value)[:500]
