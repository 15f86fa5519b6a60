"""The whole AWS backend against a real AWS API emulator (ministack), no mocks.

Deploy the stack with `radstream aws deploy` (change set), upload 5 valid and 2 invalid
studies to S3, wait for 5 results and 2 failure objects, check that each study ran in
exactly one execution and a failure is a FAILED execution, that telemetry went through
Kinesis and Firehose into the lake and a named query answers on Athena, update the stack
through a change set, and destroy it, leaving nothing behind. On the way: a study whose
failure cannot be recorded is found by `reconcile --stack` and requeued, and a second
stack beside the first processes its own studies.

The Lambda code runs on ministack's own Python (3.11, like the package's target).
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import botocore.session
import numpy as np
import pytest
from botocore.exceptions import ClientError
from typer.testing import CliRunner

from radstream.aws.completions import S3CompletionWatcher
from radstream.aws.outcomes import stack_store, wait_for_outcomes
from radstream.aws.session import AwsTarget, StackRef
from radstream.cli import app
from radstream.loadgen.bad_inputs import BAD_KINDS
from radstream.loadgen.synthetic import make_studies
from radstream.loadgen.uploader import upload_generated
from support.emf_spec import spec_problems
from support.waiting import wait_until

pytestmark = pytest.mark.slow

STACK = "rse2e"
VALID, INVALID = 5, 2
ALARM_EMAIL = "ops@example.com"


@pytest.fixture(scope="module")
def package_dir(lambda_package: Path) -> Path:
    return lambda_package


@pytest.fixture(scope="module")
def deployed(
    emulator: Any, package_dir: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[StackRef, Path, str]]:
    data_dir = tmp_path_factory.mktemp("data")
    result = _cli(
        "aws", "deploy", "--stack", STACK, "--endpoint-url", emulator.url,
        "--package", str(package_dir), "--python-version", "3.11", "--memory-mb", "2048", "--data-dir", str(data_dir),
        "--alarm-email", ALARM_EMAIL,
    )  # fmt: skip
    stack = StackRef(STACK, AwsTarget(endpoint_url=emulator.url))
    yield stack, data_dir, result.output
    # Teardown only if the destroy test did not already run (or failed half-way).
    _cli("aws", "destroy", "--stack", STACK, "--endpoint-url", emulator.url, check=False)


def _cli(*args: str, check: bool = True) -> Any:
    result = CliRunner().invoke(app, list(args))
    if check:
        assert result.exit_code == 0, f"{args}: {result.output}\n{result.exception!r}"
    return result


def test_deploy_shows_the_change_set_and_outputs(deployed: tuple[StackRef, Path, str]) -> None:
    stack, _, output = deployed
    assert "Add" in output and "AWS::StepFunctions::StateMachine" in output
    outputs = stack.outputs()
    assert {"ImagesBucketName", "ResultsBucketName", "StateMachineArn"} <= outputs.keys()
    for key in ("ImagesBucketName", "StateMachineArn", "AthenaWorkGroup"):
        assert outputs[key] in output


@pytest.fixture(scope="module")
def processed(deployed: tuple[StackRef, Path, str]) -> dict[str, Any]:
    stack, _, _ = deployed
    store = stack_store(stack)
    studies = make_studies(
        VALID + INVALID, INVALID, formats=["png", "jpeg"], rng=np.random.default_rng(7),
        width=640, height=800,
    )  # fmt: skip
    watcher = S3CompletionWatcher(store, min_interval_s=0.0)
    uploads = []
    for study in studies:
        info = upload_generated(store, study)
        uploads.append((info.key, time.time()))
    outcomes = wait_for_outcomes(watcher, uploads, timeout_s=300, poll_s=0.5)
    return {"store": store, "studies": studies, "uploads": uploads, "outcomes": outcomes}


def test_five_results_and_two_failures_with_their_codes(processed: dict[str, Any]) -> None:
    outcomes = processed["outcomes"]
    by_status: dict[str, list[Any]] = {}
    for outcome in outcomes:
        by_status.setdefault(outcome.status, []).append(outcome)
    assert len(by_status.get("succeeded", [])) == VALID, outcomes
    assert len(by_status.get("failed", [])) == INVALID, outcomes
    expected_codes = {BAD_KINDS[k] for k in list(BAD_KINDS)[:INVALID]}
    assert {o.error_code for o in by_status["failed"]} == expected_codes
    store = processed["store"]
    for key in store.list("results", "results/"):
        result = json.loads(store.get("results", key))
        assert len(result["probabilities"]) == 14
        assert len(result["raw_outputs"]) == 18
        assert set(result["stage_ms"]) == {"validate", "prepare", "infer"}
        assert result["model"]["backend"] == "onnxruntime"


def test_each_study_ran_in_exactly_one_execution_and_failures_are_failed(
    deployed: tuple[StackRef, Path, str], processed: dict[str, Any]
) -> None:
    stack, _, _ = deployed
    sfn = stack.target.client("stepfunctions")
    machine = stack.outputs()["StateMachineArn"]
    executions = _executions(sfn, machine, expected=VALID + INVALID)
    # Images are uploaded too, but only sidecars start executions.
    assert len(executions) == VALID + INVALID
    statuses = sorted(e["status"] for e in executions)
    assert statuses == ["FAILED"] * INVALID + ["SUCCEEDED"] * VALID

    # A duplicate delivery of a sidecar's event starts a second execution: it must end
    # without touching the study (its result keeps the first execution's id).
    first = next(e for e in executions if e["status"] == "SUCCEEDED")
    original = json.loads(sfn.describe_execution(executionArn=first["executionArn"])["input"])
    result_key = (
        f"results/{original['key'].split('/')[1]}/{original['key'].split('/')[2][:-5]}.json"
    )
    store = processed["store"]
    before = json.loads(store.get("results", result_key))
    duplicate = sfn.start_execution(stateMachineArn=machine, input=json.dumps(original))
    described = _wait_execution(sfn, duplicate["executionArn"])
    assert described["status"] == "SUCCEEDED"
    assert json.loads(store.get("results", result_key)) == before
    assert before["execution_id"] == first["name"]


def _executions(sfn: Any, machine: str, expected: int) -> list[dict[str, Any]]:
    deadline = time.monotonic() + 60
    while True:
        executions = sfn.list_executions(stateMachineArn=machine)["executions"]
        done = [e for e in executions if e["status"] != "RUNNING"]
        if len(done) >= expected or time.monotonic() > deadline:
            return executions
        time.sleep(0.5)


def _wait_execution(sfn: Any, arn: str, timeout_s: float = 60) -> dict[str, Any]:
    """The execution's description, once it has ended (an ended execution does not change)."""

    def ended() -> bool:
        return bool(sfn.describe_execution(executionArn=arn)["status"] != "RUNNING")

    wait_until(ended, f"execution {arn} to end", timeout_s=timeout_s, interval_s=0.3)
    described: dict[str, Any] = sfn.describe_execution(executionArn=arn)
    return described


def test_telemetry_reaches_the_lake_and_a_named_query_answers_on_athena(
    deployed: tuple[StackRef, Path, str], processed: dict[str, Any], emulator: Any
) -> None:
    store = processed["store"]
    wait_until(
        lambda: bool(store.list("telemetry", "telemetry/")),
        "a telemetry object to arrive through Kinesis and Firehose",
        timeout_s=120,
        interval_s=1,
    )
    objects: list[str] = store.list("telemetry", "telemetry/")
    assert all("/dt=" in f"/{k}" and "/hour=" in k for k in objects), objects[:3]
    errors = store.list("telemetry", "telemetry-errors/")
    assert not errors, f"Firehose could not convert records: {errors[:3]}"

    result = _cli(
        "query", "failures_by_code", "--stack", STACK, "--endpoint-url", emulator.url,
        "--format", "json",
    )  # fmt: skip
    rows = json.loads(result.output)
    expected_codes = {BAD_KINDS[k] for k in list(BAD_KINDS)[:INVALID]}
    assert {row["error_code"] for row in rows} >= expected_codes, rows


def test_the_dashboard_alarms_and_alarm_topic_are_deployed(
    deployed: tuple[StackRef, Path, str],
) -> None:
    """What the emulator supports of the operations resources: the dashboard, the plain
    alarms and the e-mail topic. Its CloudFormation refuses alarms on metric math, so
    `deploy` leaves the rate alarms out there (tests/aws/test_deploy.py)."""
    stack, _, _ = deployed
    machine = stack.outputs()["StateMachineArn"]
    cloudwatch = stack.target.client("cloudwatch")
    body = cloudwatch.get_dashboard(DashboardName=f"{STACK}-radstream-dashboard")["DashboardBody"]
    assert "${" not in body and machine in body  # Fn::Sub resolved
    widgets = json.loads(body)["widgets"]
    assert any(line[1] == "EndToEndLatency" for w in widgets for line in w["properties"]["metrics"])
    alarms = [
        a
        for a in cloudwatch.describe_alarms()["MetricAlarms"]
        if a["AlarmName"].startswith(f"{STACK}-")
    ]
    names = " ".join(a["AlarmName"] for a in alarms)
    assert "LatencyObjectiveAlarm" in names and "InferThrottlesAlarm" in names, names
    assert "ExecutionsFailingAlarm" not in names and "InferErrorsAlarm" not in names
    [latency] = [a for a in alarms if "LatencyObjectiveAlarm" in a["AlarmName"]]
    assert latency["ExtendedStatistic"] == "p95" and latency["Threshold"] == 5000
    sns = stack.target.client("sns")
    [topic] = [
        t["TopicArn"]
        for t in sns.list_topics()["Topics"]
        if t["TopicArn"].endswith(f":{STACK}-alarms")
    ]
    assert all(a["AlarmActions"] == [topic] for a in alarms)
    subscriptions = sns.list_subscriptions_by_topic(TopicArn=topic)["Subscriptions"]
    assert [(s["Protocol"], s["Endpoint"]) for s in subscriptions] == [("email", ALARM_EMAIL)]


def test_the_handlers_write_their_latencies_in_emf_to_their_log_groups(
    deployed: tuple[StackRef, Path, str], processed: dict[str, Any]
) -> None:
    stack, _, _ = deployed
    logs = stack.target.client("logs")
    events = logs.filter_log_events(logGroupName=f"/aws/lambda/{STACK}-store")["events"]
    lines = [e["message"] for e in events if e["message"].startswith('{"_aws"')]
    assert len(lines) >= VALID, [e["message"][:120] for e in events[:20]]
    assert all(spec_problems(line) == [] for line in lines)
    documents = [json.loads(line) for line in lines]
    assert {(d["Stack"], d["Stage"]) for d in documents} == {(STACK, "store")}
    assert all(d["EndToEndLatency"] >= d["StageLatency"] for d in documents)


def test_the_upload_command_sends_files_to_the_stack_and_reports_outcomes(
    deployed: tuple[StackRef, Path, str], processed: dict[str, Any], emulator: Any, tmp_path: Path
) -> None:
    (study,) = make_studies(
        1, 0, formats=["jpeg"], rng=np.random.default_rng(11), width=640, height=800
    )
    study = study.renamed("cli-upload-1")
    (tmp_path / study.image_name).write_bytes(study.image)
    (tmp_path / f"{Path(study.image_name).stem}.json").write_bytes(study.sidecar)
    result = _cli(
        "upload", str(tmp_path), "--stack", STACK, "--endpoint-url", emulator.url,
        "--timeout", "120",
    )  # fmt: skip
    assert "uploaded 1 studies to stack" in result.output
    assert "succeeded" in result.output and "incoming/cli-upload-1/" in result.output
    # The predictions, read back from the stack's results bucket as locally.
    listed = _cli(
        "results", "list", "--stack", STACK, "--endpoint-url", emulator.url,
        "--study", "cli-upload-1", "--format", "json",
    )  # fmt: skip
    rows = json.loads(listed.stdout)
    assert [(r["study_id"], r["outcome"]) for r in rows] == [("cli-upload-1", "succeeded")]
    shown = _cli(
        "results", "show", "cli-upload-1", "--stack", STACK, "--endpoint-url", emulator.url
    )
    assert "Pleural Effusion" in shown.output
    exported = tmp_path / "results.csv"
    _cli(
        "results", "export", "--format", "csv", "-o", str(exported),
        "--stack", STACK, "--endpoint-url", emulator.url,
    )  # fmt: skip
    lines = exported.read_text().splitlines()
    assert "Pleural Effusion" in lines[0] and any("cli-upload-1" in line for line in lines[1:])


def test_each_stage_role_is_held_to_its_own_prefixes(
    deployed: tuple[StackRef, Path, str], processed: dict[str, Any]
) -> None:
    """The emulator enforces IAM (its AUTH mode), and the pipeline above ran under it, so
    the roles are sufficient; here they are shown to be no more than that."""
    stack, _, _ = deployed
    outputs = stack.outputs()
    images, results = outputs["ImagesBucketName"], outputs["ResultsBucketName"]
    allowed = {
        "store": [(results, "results/")],
        "record-failure": [(results, "failed/")],
        "validate": [],
    }
    refused = {
        "store": [(results, "failed/"), (images, "incoming/")],
        "record-failure": [(results, "results/"), (images, "incoming/")],
        "validate": [(results, "results/"), (images, "incoming/")],
    }
    for function, places in refused.items():
        s3 = _as_role(stack, f"{STACK}-{function}")
        for bucket, prefix in allowed[function]:
            s3.put_object(Bucket=bucket, Key=f"{prefix}iam-probe/x.json", Body=b"{}")
        for bucket, prefix in places:
            with pytest.raises(ClientError, match="AccessDenied"):
                s3.put_object(Bucket=bucket, Key=f"{prefix}iam-probe/x.json", Body=b"{}")


def _as_role(stack: StackRef, function: str) -> Any:
    """An S3 client with the credentials of ``function``'s execution role."""
    target = stack.target
    role = target.client("lambda").get_function_configuration(FunctionName=function)["Role"]
    creds = target.client("sts").assume_role(RoleArn=role, RoleSessionName="probe")
    c = creds["Credentials"]
    return botocore.session.get_session().create_client(
        "s3",
        region_name=target.region,
        endpoint_url=target.endpoint_url,
        aws_access_key_id=c["AccessKeyId"],
        aws_secret_access_key=c["SecretAccessKey"],
        aws_session_token=c["SessionToken"],
    )


def test_a_study_whose_failure_cannot_be_recorded_is_found_and_requeued(
    deployed: tuple[StackRef, Path, str], processed: dict[str, Any], emulator: Any
) -> None:
    """RecordFailure's role loses its write: the study ends FAILED with no outcome object.
    `upload` reports it lost with the execution's status, `reconcile --stack` finds it,
    and `--requeue` (the write restored) gives it its failure object."""
    stack, _, _ = deployed
    target = stack.target
    iam, sfn = target.client("iam"), target.client("stepfunctions")
    role_arn = target.client("lambda").get_function_configuration(
        FunctionName=f"{STACK}-record-failure"
    )["Role"]
    role = role_arn.rsplit("/", 1)[1]
    [policy_name] = iam.list_role_policies(RoleName=role)["PolicyNames"]
    policy = iam.get_role_policy(RoleName=role, PolicyName=policy_name)["PolicyDocument"]
    if isinstance(policy, str):
        policy = json.loads(policy)
    denied = {
        **policy,
        "Statement": [st for st in policy["Statement"] if "s3:PutObject" not in st["Action"]],
    }
    iam.put_role_policy(RoleName=role, PolicyName=policy_name, PolicyDocument=json.dumps(denied))
    store = processed["store"]
    machine = stack.outputs()["StateMachineArn"]
    try:
        [bad] = make_studies(1, 1, formats=["png"], rng=np.random.default_rng(11))
        bad = bad.renamed("lost-00001")
        before = {
            e["executionArn"] for e in sfn.list_executions(stateMachineArn=machine)["executions"]
        }
        watcher = S3CompletionWatcher(store, min_interval_s=0.0)
        info = upload_generated(store, bad)
        uploaded = time.time()
        arn = _new_execution(sfn, machine, before)
        assert _wait_execution(sfn, arn, timeout_s=120)["status"] == "FAILED"
        [outcome] = wait_for_outcomes(watcher, [(info.key, uploaded)], timeout_s=0.0)
        assert outcome.status == "lost"
        assert outcome.error_code is not None and outcome.error_code.startswith("lost: FAILED")

        found = _cli(
            "reconcile", "--stack", STACK, "--endpoint-url", emulator.url, "--older-than", "0",
            "--json",
        )  # fmt: skip
        report = json.loads(found.output)
        assert [study["key"] for study in report["lost"]] == [info.key]
        assert report["lost"][0]["execution"]["status"] == "FAILED"
        assert info.key in {e["key"] for e in report["unrecorded_executions"]}
    finally:
        iam.put_role_policy(
            RoleName=role, PolicyName=policy_name, PolicyDocument=json.dumps(policy)
        )

    before = {e["executionArn"] for e in sfn.list_executions(stateMachineArn=machine)["executions"]}
    requeued = _cli(
        "reconcile", "--stack", STACK, "--endpoint-url", emulator.url, "--older-than", "0",
        "--requeue", "--json",
    )  # fmt: skip
    assert json.loads(requeued.output)["requeued"] == 1
    rerun = _new_execution(sfn, machine, before)
    assert _wait_execution(sfn, rerun, timeout_s=120)["status"] == "FAILED"
    study, stem = info.key.split("/")[1], info.key.split("/")[2][: -len(".json")]
    assert store.list("results", f"failed/{study}/") == [f"failed/{study}/{stem}.json"]
    again = _cli(
        "reconcile", "--stack", STACK, "--endpoint-url", emulator.url, "--older-than", "0",
        "--json",
    )  # fmt: skip
    assert json.loads(again.output)["lost"] == []


def _new_execution(sfn: Any, machine: str, before: set[str]) -> str:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        executions = sfn.list_executions(stateMachineArn=machine)["executions"]
        new = [e["executionArn"] for e in executions if e["executionArn"] not in before]
        if new:
            return str(new[0])
        time.sleep(0.3)
    raise AssertionError("no execution started")


def test_a_second_stack_beside_the_first_processes_its_own_studies(
    deployed: tuple[StackRef, Path, str], processed: dict[str, Any], emulator: Any,
    package_dir: Path,
) -> None:  # fmt: skip
    """Staging beside prod: one account and region, no shared name, each its own studies."""
    stack, data_dir, _ = deployed
    other = f"{STACK}-b"
    _cli(
        "aws", "deploy", "--stack", other, "--endpoint-url", emulator.url,
        "--package", str(package_dir), "--python-version", "3.11", "--data-dir", str(data_dir),
    )  # fmt: skip
    try:
        second = StackRef(other, stack.target)
        store = stack_store(second)
        [study] = make_studies(1, 0, formats=["png"], rng=np.random.default_rng(5))
        study = study.renamed("beside-00001")
        watcher = S3CompletionWatcher(store, min_interval_s=0.0)
        info = upload_generated(store, study)
        [outcome] = wait_for_outcomes(watcher, [(info.key, time.time())], timeout_s=180)
        assert outcome.status == "succeeded", outcome
        # Its result is in its own bucket only; the first stack's studies are not in it.
        stem = info.key.split("/")[2][: -len(".json")]
        assert store.list("results", "results/") == [f"results/beside-00001/{stem}.json"]
        assert not processed["store"].list("results", "results/beside-00001/")
        glue = stack.target.client("glue")
        for name in (stack.outputs()["GlueDatabase"], second.outputs()["GlueDatabase"]):
            assert glue.get_database(Name=name)["Database"]["Name"] == name
        assert stack.outputs()["GlueDatabase"] != second.outputs()["GlueDatabase"]
    finally:
        _cli("aws", "destroy", "--stack", other, "--endpoint-url", emulator.url, check=False)


def test_update_goes_through_a_change_set(
    deployed: tuple[StackRef, Path, str], processed: dict[str, Any], emulator: Any,
    package_dir: Path,
) -> None:  # fmt: skip
    stack, data_dir, _ = deployed
    lam = stack.target.client("lambda")
    assert lam.get_function_configuration(FunctionName=f"{STACK}-infer")["MemorySize"] == 2048
    result = _cli(
        "aws", "deploy", "--stack", STACK, "--endpoint-url", emulator.url,
        "--package", str(package_dir), "--python-version", "3.11", "--memory-mb", "1024", "--data-dir", str(data_dir),
        "--alarm-email", ALARM_EMAIL,
    )  # fmt: skip
    assert "Modify" in result.output
    assert lam.get_function_configuration(FunctionName=f"{STACK}-infer")["MemorySize"] == 1024
    again = _cli(
        "aws", "deploy", "--stack", STACK, "--endpoint-url", emulator.url,
        "--package", str(package_dir), "--python-version", "3.11", "--memory-mb", "1024", "--data-dir", str(data_dir),
        "--alarm-email", ALARM_EMAIL,
    )  # fmt: skip
    assert "no changes" in again.output
    status = _cli("aws", "status", "--stack", STACK, "--endpoint-url", emulator.url, "--json")
    report = json.loads(status.output)
    assert report["status"] == "UPDATE_COMPLETE"
    assert sum(report["executions"].values()) >= VALID + INVALID


def test_destroy_leaves_nothing_behind(
    deployed: tuple[StackRef, Path, str], processed: dict[str, Any], emulator: Any
) -> None:
    stack, _, _ = deployed
    outputs = stack.outputs()
    s3 = stack.target.client("s3")
    _cli("aws", "destroy", "--stack", STACK, "--endpoint-url", emulator.url)
    buckets = {b["Name"] for b in s3.list_buckets().get("Buckets", [])}
    for key in (
        "ImagesBucketName",
        "ResultsBucketName",
        "TelemetryBucketName",
        "ArtifactsBucketName",
    ):
        assert outputs[key] not in buckets
    assert not [b for b in buckets if b.startswith(f"{STACK}-code-")]
    cfn = stack.target.client("cloudformation")
    live = [
        s["StackName"]
        for s in cfn.list_stacks()["StackSummaries"]
        if s["StackStatus"] != "DELETE_COMPLETE"
    ]
    assert STACK not in live
    functions = stack.target.client("lambda").list_functions()["Functions"]
    assert not [f for f in functions if f["FunctionName"].startswith(f"{STACK}-")]
    machines = stack.target.client("stepfunctions").list_state_machines()["stateMachines"]
    assert not [m for m in machines if m["name"].startswith(f"{STACK}-")]
    cloudwatch = stack.target.client("cloudwatch")
    dashboards = cloudwatch.list_dashboards()["DashboardEntries"]
    assert not [d for d in dashboards if d["DashboardName"].startswith(f"{STACK}-")]
    alarms = cloudwatch.describe_alarms()["MetricAlarms"]
    assert not [a for a in alarms if a["AlarmName"].startswith(f"{STACK}-")]
    topics = stack.target.client("sns").list_topics()["Topics"]
    assert not [t for t in topics if t["TopicArn"].endswith(f":{STACK}-alarms")]
