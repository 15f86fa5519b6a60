"""`radstream reconcile --stack`: studies that ended with no outcome object, found from
both ends (sidecars and ended executions), and requeued as a new upload event."""

from __future__ import annotations

import io
import json
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pydicom
import pytest
from botocore.exceptions import ClientError
from pydicom.data import get_testdata_file

from radstream.aws.completions import S3CompletionWatcher
from radstream.aws.outcomes import stack_store, wait_for_outcomes
from radstream.aws.reconcile import explain_lost, reconcile_stack, requeue
from radstream.aws.reconcile_drops import HEADER_BYTES
from radstream.aws.session import AwsTarget, StackRef

NOW = 1_800_000_000.0
OUTPUTS = {
    "ImagesBucketName": "images",
    "ResultsBucketName": "results",
    "TelemetryBucketName": "telemetry",
    "ArtifactsBucketName": "artifacts",
    "StateMachineArn": "arn:aws:states:eu-west-1:1:stateMachine:rs",
}


class _Paginator:
    def __init__(self, pages: list[dict[str, Any]]) -> None:
        self.pages = pages

    def paginate(self, **_: Any) -> list[dict[str, Any]]:
        return self.pages


@dataclass
class _Account:
    """Objects (bucket → key → age in seconds) and executions of one fake stack."""

    objects: dict[str, dict[str, float]]
    executions: list[dict[str, Any]]
    copies: list[dict[str, Any]] = field(default_factory=list)
    bodies: dict[str, bytes] = field(default_factory=dict)
    """Outcome objects' contents, by key (read for a DICOM upload's ``sidecar_key``)."""
    reads: list[str] = field(default_factory=list)
    ranges: dict[str, str] = field(default_factory=dict)
    """The Range of each ranged GET, by key (a DICOM upload's header is read so)."""
    express: bool = False
    """An EXPRESS state machine: ListExecutions refuses."""


class _S3:
    def __init__(self, account: _Account) -> None:
        self.account = account

    def get_paginator(self, name: str) -> Any:
        assert name == "list_objects_v2"
        account = self.account

        class Listing:
            def paginate(self, **kwargs: str) -> list[dict[str, Any]]:
                contents = [
                    {"Key": k, "LastModified": datetime.fromtimestamp(NOW - age, UTC)}
                    for k, age in account.objects.get(kwargs["Bucket"], {}).items()
                    if k.startswith(kwargs["Prefix"])
                ]
                return [{"Contents": contents}]

        return Listing()

    def get_object(self, **kwargs: str) -> dict[str, Any]:
        self.account.reads.append(kwargs["Key"])
        body = self.account.bodies.get(kwargs["Key"], b"{}")
        if "Range" in kwargs:
            self.account.ranges[kwargs["Key"]] = kwargs["Range"]
            first, last = kwargs["Range"].removeprefix("bytes=").split("-")
            body = body[int(first) : int(last) + 1]
        return {"Body": io.BytesIO(body)}

    def head_object(self, **kwargs: str) -> dict[str, Any]:
        age = self.account.objects.get(kwargs["Bucket"], {}).get(kwargs["Key"])
        if age is None:
            raise ClientError({"Error": {"Code": "404", "Message": "Not Found"}}, "HeadObject")
        return {"LastModified": datetime.fromtimestamp(NOW - age, UTC)}

    def copy_object(self, **kwargs: Any) -> dict[str, Any]:
        if kwargs["Key"] not in self.account.objects[kwargs["Bucket"]]:
            raise ClientError({"Error": {"Code": "NoSuchKey", "Message": "gone"}}, "CopyObject")
        self.account.copies.append(kwargs)
        return {}


class _Sfn:
    def __init__(self, account: _Account) -> None:
        self.account = account

    def get_paginator(self, name: str) -> Any:
        assert name == "list_executions"
        account = self.account

        class Listing:
            def paginate(self, **kwargs: Any) -> list[dict[str, Any]]:
                if account.express:
                    raise ClientError(
                        {"Error": {"Code": "ValidationException",
                                   "Message": "This operation is not supported by EXPRESS"}},
                        "ListExecutions",
                    )  # fmt: skip
                wanted = kwargs.get("statusFilter")
                return [
                    {
                        "executions": [
                            {
                                "executionArn": e["arn"],
                                "status": e["status"],
                                "startDate": datetime.fromtimestamp(e["stopped"] - 10, UTC),
                            }
                            for e in sorted(account.executions, key=lambda e: -e["stopped"])
                            if wanted is None or e["status"] == wanted
                        ]
                    }
                ]

        return Listing()

    def describe_execution(self, **kwargs: str) -> dict[str, Any]:
        [e] = [e for e in self.account.executions if e["arn"] == kwargs["executionArn"]]
        return {
            "input": json.dumps({"bucket": "images", "key": e["key"]}),
            "status": e["status"],
            "error": e.get("error"),
            "cause": e.get("cause"),
            "stopDate": datetime.fromtimestamp(e["stopped"], UTC),
        }


class _Cfn:
    def describe_stacks(self, **_: Any) -> dict[str, Any]:
        outputs = [{"OutputKey": k, "OutputValue": v} for k, v in OUTPUTS.items()]
        return {"Stacks": [{"StackStatus": "CREATE_COMPLETE", "Outputs": outputs}]}


@dataclass(frozen=True)
class _Target(AwsTarget):
    account: _Account | None = None

    def client(self, service: str, *, fast: bool = False) -> Any:
        assert self.account is not None
        return {"s3": _S3, "stepfunctions": _Sfn}.get(service, lambda _: _Cfn())(self.account)


def _stack(account: _Account) -> StackRef:
    return StackRef("rs", _Target(region="eu-west-1", account=account))


def _account() -> _Account:
    return _Account(
        objects={
            "images": {
                "incoming/s1/a.json": 600.0,  # a result: fine
                "incoming/s1/a.png": 600.0,
                "incoming/s2/b.json": 600.0,  # RecordFailure could not write: lost
                "incoming/s3/c.json": 600.0,  # never started: lost, no execution
                "incoming/s4/d.json": 5.0,  # too recent to judge
                "incoming/s5/e.json": 600.0,  # failed and recorded
            },
            "results": {
                "results/s1/a.json": 500.0,
                "failed/s5/e.json": 500.0,
            },
        },
        executions=[
            {"arn": "x-old", "key": "incoming/s2/b.json", "status": "FAILED", "stopped": NOW - 550,
             "error": "States.Runtime", "cause": "older"},
            {"arn": "x-b", "key": "incoming/s2/b.json", "status": "TIMED_OUT", "stopped": NOW - 400,
             "error": "States.Timeout", "cause": "the execution ran past 5 minutes"},
            {"arn": "x-e", "key": "incoming/s5/e.json", "status": "FAILED", "stopped": NOW - 500,
             "error": "RadStream.StudyFailed", "cause": "see failed/"},
        ],
    )  # fmt: skip


def test_studies_with_no_outcome_are_found_with_their_latest_ended_execution() -> None:
    found = reconcile_stack(_stack(_account()), older_than_s=60, now=NOW)
    lost = {s.key: s for s in found.lost}
    assert set(lost) == {"incoming/s2/b.json", "incoming/s3/c.json"}
    latest = lost["incoming/s2/b.json"].execution
    assert latest is not None
    assert (latest.arn, latest.status, latest.error) == ("x-b", "TIMED_OUT", "States.Timeout")
    assert lost["incoming/s3/c.json"].execution is None  # EventBridge never started one
    assert lost["incoming/s3/c.json"].age_s == 600.0
    # Ended executions whose study has no outcome; the recorded failure (s5) is not one.
    assert {e.arn for e in found.unrecorded} == {"x-b", "x-old"}


def test_requeue_copies_each_sidecar_onto_itself_as_a_new_upload() -> None:
    account = _account()
    stack = _stack(account)
    found = reconcile_stack(stack, older_than_s=60, now=NOW)
    keys = [s.key for s in found.lost] + ["incoming/s9/gone.json"]  # deleted since
    assert requeue(stack, keys, now=NOW) == 2
    for copy in account.copies:
        assert copy["CopySource"] == {"Bucket": "images", "Key": copy["Key"]}
        assert copy["MetadataDirective"] == "REPLACE"  # a copy onto itself must change
    assert {c["Key"] for c in account.copies} == {"incoming/s2/b.json", "incoming/s3/c.json"}


def test_a_lost_upload_is_explained_by_its_latest_execution() -> None:
    stack = _stack(_account())
    keys = ["incoming/s2/b.json", "incoming/s3/c.json"]
    assert explain_lost(stack, keys, since=NOW - 3600) == {
        "incoming/s2/b.json": "TIMED_OUT States.Timeout",
        "incoming/s3/c.json": "no execution started",
    }
    # Executions that started before the upload are not its own.
    assert explain_lost(stack, keys, since=NOW)["incoming/s2/b.json"] == "no execution started"


def test_upload_reports_a_lost_study_with_its_execution_status_and_error() -> None:
    stack = _stack(_account())
    store = stack_store(stack)
    watcher = S3CompletionWatcher(store, min_interval_s=0.0)
    outcomes = wait_for_outcomes(
        watcher, [("incoming/s2/b.json", NOW - 3600)], timeout_s=0.0, poll_s=0.0
    )
    assert [(o.status, o.error_code) for o in outcomes] == [
        ("lost", "lost: TIMED_OUT States.Timeout")
    ]


def _with_dicom_uploads(account: _Account) -> _Account:
    """Two DICOM files uploaded alone: one has its result (under its header's study), one
    was lost after its execution failed."""
    account.objects["images"] |= {"dicom/pacs/x.dcm": 600.0, "dicom/pacs/y.dcm": 600.0}
    account.objects["results"]["results/1.2.3/9.8.7.json"] = 500.0
    account.bodies["results/1.2.3/9.8.7.json"] = json.dumps(
        {"sidecar_key": "dicom/pacs/x.dcm"}
    ).encode()
    account.executions.append(
        {"arn": "x-y", "key": "dicom/pacs/y.dcm", "status": "FAILED", "stopped": NOW - 450,
         "error": "States.Runtime", "cause": "RecordFailure could not write"}
    )  # fmt: skip
    return account


def test_a_dicom_upload_without_a_sidecar_is_matched_by_its_outcome_and_requeued() -> None:
    account = _with_dicom_uploads(_account())
    stack = _stack(account)
    found = reconcile_stack(stack, older_than_s=60, now=NOW)
    lost = {s.key: s for s in found.lost}
    assert set(lost) == {"incoming/s2/b.json", "incoming/s3/c.json", "dicom/pacs/y.dcm"}
    execution = lost["dicom/pacs/y.dcm"].execution
    assert execution is not None and execution.arn == "x-y"
    assert "x-y" in {e.arn for e in found.unrecorded}
    # Only the outcome that no sidecar names was read, and the header of the one DICOM
    # upload that no outcome names (it is not DICOM here: it stays lost).
    assert account.reads == ["results/1.2.3/9.8.7.json", "dicom/pacs/y.dcm"]
    assert requeue(stack, ["dicom/pacs/y.dcm"], now=NOW) == 1
    assert account.copies[-1]["ContentType"] == "application/dicom"


def test_a_recorded_failure_stays_recorded_after_its_sidecar_is_deleted() -> None:
    account = _account()
    del account.objects["images"]["incoming/s5/e.json"]  # an erasure policy, say
    found = reconcile_stack(_stack(account), older_than_s=60, now=NOW)
    assert "x-e" not in {e.arn for e in found.unrecorded}


def test_without_dicom_uploads_no_outcome_object_is_read() -> None:
    account = _account()
    reconcile_stack(_stack(account), older_than_s=60, now=NOW)
    assert account.reads == []


def test_an_express_machine_whose_executions_cannot_be_listed_still_reports_lost_studies() -> None:
    account = _account()
    account.express = True
    found = reconcile_stack(_stack(account), older_than_s=60, now=NOW)
    assert not found.executions_listed
    assert {s.key for s in found.lost} == {"incoming/s2/b.json", "incoming/s3/c.json"}
    assert all(s.execution is None for s in found.lost)
    assert found.unrecorded == []


def _instance_uploaded_twice(account: _Account, outcome_prefix: str) -> None:
    """One DICOM instance uploaded as two drops (900 s and 700 s ago), its outcome written
    by the later upload's run (650 s ago), then a third time (300 s ago), whose run was
    lost."""
    chest = Path(str(get_testdata_file("RG1_UNCR.dcm", download=False))).read_bytes()
    header = pydicom.dcmread(io.BytesIO(chest), stop_before_pixels=True)
    study = str(header.StudyInstanceUID).replace(".", "-")
    stem = str(header.SOPInstanceUID).replace(".", "-")
    drops = {"dicom/pacs/first": 900.0, "dicom/other/again.dcm": 700.0, "dicom/pacs/late": 300.0}
    account.objects["images"] |= drops
    account.bodies |= dict.fromkeys(drops, chest)
    outcome = f"{outcome_prefix}{study}/{stem}.json"
    account.objects["results"][outcome] = 650.0
    account.bodies[outcome] = json.dumps({"sidecar_key": "dicom/other/again.dcm"}).encode()


@pytest.mark.parametrize("outcome_prefix", ["results/", "failed/"])
def test_an_instance_uploaded_twice_is_not_lost_but_a_later_upload_without_a_run_is(
    outcome_prefix: str,
) -> None:
    # Two drops of one instance share one outcome object; the later run names itself in
    # it. The earlier upload is superseded, not lost: requeued, it would take the object
    # back, and the next reconcile would report the other one.
    account = _account()
    _instance_uploaded_twice(account, outcome_prefix)
    stack = _stack(account)
    found = reconcile_stack(stack, older_than_s=60, now=NOW)
    lost = {s.key for s in found.lost}
    assert lost == {"incoming/s2/b.json", "incoming/s3/c.json", "dicom/pacs/late"}
    # Headers read: only the drops no outcome names, and only their first bytes.
    assert account.ranges == dict.fromkeys(
        ["dicom/pacs/first", "dicom/pacs/late"], f"bytes=0-{HEADER_BYTES - 1}"
    )
    requeue(stack, [s.key for s in found.lost], now=NOW)
    assert "dicom/pacs/first" not in {c["Key"] for c in account.copies}


def test_a_drop_whose_header_cannot_be_read_from_its_first_bytes_stays_lost() -> None:
    account = _account()
    _instance_uploaded_twice(account, "results/")
    account.bodies["dicom/pacs/first"] = b"not a DICOM file"
    found = reconcile_stack(_stack(account), older_than_s=60, now=NOW)
    assert "dicom/pacs/first" in {s.key for s in found.lost}
