"""A DICOM file uploaded to S3 without a sidecar becomes one study on a deployed stack.

Against the AWS API emulator (ministack, IAM enforced), a stack of its own: a real CR
chest radiograph (pydicom-data's ``RG1``) is PUT with boto3 alone under
``dicom/{folder}/{file}``; the stack's one EventBridge rule starts one execution for it,
``validate`` (with the imaging layer) derives the study from the header, and one result
lands under the header's study. A duplicate delivery of its event ends in
``DuplicateIgnored`` and changes nothing; a DICOM that arrives with its sidecar under
``incoming/`` is started by the sidecar only; ``radstream upload DIR --stack`` takes a
folder that mixes both kinds.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pydicom
import pytest
from pydicom.data import get_testdata_file
from typer.testing import CliRunner

from radstream.aws.asl import DUPLICATE_STATE
from radstream.aws.completions import S3CompletionWatcher
from radstream.aws.outcomes import stack_store, wait_for_outcomes
from radstream.aws.session import AwsTarget, StackRef
from radstream.cli import app
from radstream.layout import dicom_drop_key, result_key, sidecar_key, upload_key
from radstream.loadgen.synthetic import make_studies
from radstream.schema.dicom_sidecar import image_stem_from_header, study_id_from_header
from support.waiting import wait_until

pytestmark = pytest.mark.slow

STACK = "rsdcm"


def _dicom(name: str) -> Path:
    path = get_testdata_file(name, download=False)
    if path is None:
        pytest.fail(f"{name} is not installed: pydicom-data is a test dependency")
    return Path(str(path))


def _cli(*args: str, check: bool = True) -> Any:
    result = CliRunner().invoke(app, list(args))
    if check:
        assert result.exit_code == 0, f"{args}: {result.output}\n{result.exception!r}"
    return result


@pytest.fixture(scope="module")
def stack(
    emulator: Any, lambda_package: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[StackRef]:
    data_dir = tmp_path_factory.mktemp("data")
    _cli(
        "aws", "deploy", "--stack", STACK, "--endpoint-url", emulator.url,
        "--package", str(lambda_package), "--python-version", "3.11", "--memory-mb", "2048",
        "--data-dir", str(data_dir),
    )  # fmt: skip
    yield StackRef(STACK, AwsTarget(endpoint_url=emulator.url))
    _cli("aws", "destroy", "--stack", STACK, "--endpoint-url", emulator.url, check=False)


def _executions_for(stack: StackRef, key: str) -> list[dict[str, Any]]:
    """The stack's executions whose input (what the rule's transformer built) names ``key``."""
    sfn = stack.target.client("stepfunctions")
    machine = stack.outputs()["StateMachineArn"]
    found = []
    for execution in sfn.list_executions(stateMachineArn=machine)["executions"]:
        described = sfn.describe_execution(executionArn=execution["executionArn"])
        if json.loads(described["input"]).get("key") == key:
            found.append(described)
    return found


def _ended(stack: StackRef, arn: str) -> dict[str, Any]:
    sfn = stack.target.client("stepfunctions")
    wait_until(
        lambda: sfn.describe_execution(executionArn=arn)["status"] != "RUNNING",
        f"execution {arn} to end",
        timeout_s=120,
        interval_s=0.3,
    )
    described: dict[str, Any] = sfn.describe_execution(executionArn=arn)
    return described


def _entered(stack: StackRef, arn: str) -> list[str]:
    """The names of the states the execution entered, in order."""
    sfn = stack.target.client("stepfunctions")
    events = sfn.get_execution_history(executionArn=arn, maxResults=1000)["events"]
    return [
        e["stateEnteredEventDetails"]["name"] for e in events if "stateEnteredEventDetails" in e
    ]


def test_a_dicom_put_alone_gets_one_result_and_a_duplicate_delivery_changes_nothing(
    stack: StackRef,
) -> None:
    store = stack_store(stack)
    outputs = stack.outputs()
    images, results = outputs["ImagesBucketName"], outputs["ResultsBucketName"]
    s3 = stack.target.client("s3")
    watcher = S3CompletionWatcher(store, min_interval_s=0.0)
    path = _dicom("RG1_UNCR.dcm")
    # A PACS export: no extension, no sidecar, put with the plain SDK.
    key = dicom_drop_key("pacs", "IM0001")
    s3.put_object(Bucket=images, Key=key, Body=path.read_bytes())
    [outcome] = wait_for_outcomes(watcher, [(key, time.time())], timeout_s=240, poll_s=0.5)

    header = pydicom.dcmread(path, stop_before_pixels=True)
    study, stem = study_id_from_header(header), image_stem_from_header(header)
    assert study == str(header.StudyInstanceUID).replace(".", "-")
    assert (outcome.status, outcome.object_key) == ("succeeded", result_key(study, stem))
    result = json.loads(store.get("results", result_key(study, stem)))
    assert (result["study_id"], result["sidecar_key"], result["image_key"]) == (study, key, key)
    assert result["view"] == "PA" and len(result["probabilities"]) == 14
    # Exactly one execution for the file, and one outcome object in the study's folder.
    [first] = _executions_for(stack, key)
    assert _ended(stack, first["executionArn"])["status"] == "SUCCEEDED"
    assert store.list("results", f"results/{study}/") == [result_key(study, stem)]
    assert store.list("results", f"failed/{study}/") == []

    # A second delivery of the same event. EventBridge refuses PutEvents for an ``aws.*``
    # source from a client (NotAuthorizedForSourceException, the emulator as AWS), so where
    # it is refused the duplicate is what the rule would have started: an execution with
    # the very input its transformer built (same key, etag and sequencer).
    original = json.loads(first["input"])
    events = stack.target.client("events")
    detail = {
        "bucket": {"name": images},
        "object": {"key": key, "etag": original["etag"], "sequencer": original["sequencer"]},
    }
    put = events.put_events(
        Entries=[{"Source": "aws.s3", "DetailType": "Object Created", "Detail": json.dumps(detail)}]
    )
    sfn = stack.target.client("stepfunctions")
    if put["FailedEntryCount"]:
        assert put["Entries"][0]["ErrorCode"] == "NotAuthorizedForSourceException", put
        started = sfn.start_execution(
            stateMachineArn=outputs["StateMachineArn"], input=json.dumps(original)
        )
        duplicate = _ended(stack, started["executionArn"])
    else:  # an emulator that delivers it: the rule starts the second execution itself
        wait_until(
            lambda: len(_executions_for(stack, key)) == 2,
            "the redelivered event to start an execution",
            timeout_s=60,
            interval_s=0.5,
        )
        [duplicate] = [e for e in _executions_for(stack, key) if e["name"] != first["name"]]
        duplicate = _ended(stack, duplicate["executionArn"])
    assert duplicate["status"] == "SUCCEEDED"
    assert DUPLICATE_STATE in _entered(stack, duplicate["executionArn"])
    assert "Prepare" not in _entered(stack, duplicate["executionArn"])
    # Still one outcome, still the first execution's.
    assert store.list("results", f"results/{study}/") == [result_key(study, stem)]
    assert (
        json.loads(store.get("results", result_key(study, stem)))["execution_id"] == (first["name"])
    )
    assert store.list("results", f"failed/{study}/") == []
    assert s3.list_objects_v2(Bucket=results, Prefix="failed/pacs/").get("KeyCount", 0) == 0


def test_a_dicom_with_its_sidecar_is_started_by_the_sidecar_only(stack: StackRef) -> None:
    store = stack_store(stack)
    images = stack.outputs()["ImagesBucketName"]
    s3 = stack.target.client("s3")
    watcher = S3CompletionWatcher(store, min_interval_s=0.0)
    image, sidecar = upload_key("paired-1", "a.dcm"), sidecar_key("paired-1", "a")
    s3.put_object(Bucket=images, Key=image, Body=_dicom("RG1_UNCR.dcm").read_bytes())
    document = {"study_id": "paired-1", "view": "PA", "timestamp": "2024-01-01T00:00:00Z"}
    s3.put_object(Bucket=images, Key=sidecar, Body=json.dumps(document).encode())
    [outcome] = wait_for_outcomes(watcher, [(sidecar, time.time())], timeout_s=240)
    assert outcome.status == "succeeded", outcome
    assert len(_executions_for(stack, sidecar)) == 1
    assert _executions_for(stack, image) == []


def test_upload_takes_a_folder_that_mixes_dicom_drops_and_studies_with_sidecars(
    stack: StackRef, emulator: Any, tmp_path: Path
) -> None:
    (study,) = make_studies(
        1, 0, formats=["jpeg"], rng=np.random.default_rng(3), width=640, height=800
    )
    study = study.renamed("mixed-1")
    folder = tmp_path / "ward"
    folder.mkdir()
    (folder / study.image_name).write_bytes(study.image)
    (folder / f"{Path(study.image_name).stem}.json").write_bytes(study.sidecar)
    dicom = _dicom("RG1_UNCI.dcm")
    (folder / "IM0002").write_bytes(dicom.read_bytes())  # recognised by its preamble
    result = _cli(
        "upload", str(folder), "--stack", STACK, "--endpoint-url", emulator.url,
        "--timeout", "240",
    )  # fmt: skip
    drop = dicom_drop_key("ward", "IM0002")
    # (Rich wraps the lines at the runner's width: look for the keys, not whole lines.)
    assert "DICOM without a sidecar" in result.output and drop in result.output
    assert "uploaded 2 studies to stack" in result.output
    assert "lost" not in result.output, result.output
    header = pydicom.dcmread(dicom, stop_before_pixels=True)
    stored = stack_store(stack)
    landed = result_key(study_id_from_header(header), image_stem_from_header(header))
    assert json.loads(stored.get("results", landed))["sidecar_key"] == drop
    assert stored.list("results", "results/mixed-1/")
    assert len(_executions_for(stack, drop)) == 1
