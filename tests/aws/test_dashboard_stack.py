"""``radstream dashboard --stack``: the dashboard's figures read through a stack's Athena, on
ministack.

The stack here is the part of a RadStream stack the dashboard reads, and no more: a real demo
lake (two A/B variants) in S3 under the Glue table the stack defines, an Athena workgroup,
and a state machine, all named by the stack's outputs (as ``test_athena_runner`` sets one up;
a full deploy with Lambdas adds nothing the dashboard reads). The app is the one the CLI
serves for ``--stack``, asked over HTTP in process.

What this shows, and what it cannot: every figure and tile the page receives equals the same
named query run locally on the same lake, so the dashboard's plumbing on a stack (the
runner from the stack's outputs, the stack's database, parameters, result pages, typed
values, timestamps as text) holds. ministack's Athena, however, is DuckDB running the text
it is sent: with an endpoint URL the runner sends the DuckDB translation with the values
inlined (``sql_engine="duckdb"``), so the Athena (Trino) text itself with its
``ExecutionParameters`` is not what runs here. That path is pinned by the hooked tests of
``test_athena_runner.py`` for every named query, and the literals by
``test_athena_literals_evaluated.py``; no emulator here runs Trino.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from typer.testing import CliRunner

from radstream.aws.athena_runner import DATABASE_OUTPUT, WORKGROUP_OUTPUT
from radstream.aws.session import AwsTarget, StackRef
from radstream.cli import app as cli_app
from radstream.dashboard.figures import json_rows
from radstream.dashboard.objectives import OBJECTIVES, pick_row
from radstream.dashboard.stack import stack_dashboard
from radstream.lake.duckdb_runner import LocalQueryRunner
from radstream.lake.files import visible_files
from radstream.lake.glue import TABLE, table_input
from support.demo import run_demo_lake
from support.emulator import launcher, running_emulator
from support.waiting import wait_until

pytestmark = pytest.mark.slow  # the emulator, and demo runs with worker processes

REGION = "us-east-1"
STACK = "rs-dash"
BUCKET = "rs-dash-lake"
PREFIX = "telemetry/"
DATABASE = "rs_dash"  # the stack's own Glue database, as each deployed stack has
EXECUTIONS = 3


@pytest.fixture(scope="module")
def lake(tmp_path_factory: pytest.TempPathFactory, standin_model: Path) -> Path:
    data_dir = tmp_path_factory.mktemp("dash-stack-demo")
    run_demo_lake(data_dir, standin_model, studies=5, invalid=2, variant="A")
    return run_demo_lake(data_dir, standin_model, studies=3, invalid=1, variant="B")


@pytest.fixture(scope="module")
def endpoint(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    try:
        launcher().install()
    except (OSError, subprocess.CalledProcessError) as exc:
        pytest.skip(f"ministack cannot be installed here (it needs PyPI once): {exc}")
    with running_emulator(tmp_path_factory.mktemp("ministack"), region=REGION) as emu:
        yield emu.url


def _template() -> dict[str, Any]:
    results = {"ResultConfiguration": {"OutputLocation": f"s3://{BUCKET}/athena-results/"}}
    trust = {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Effect": "Allow",
                "Principal": {"Service": "states.amazonaws.com"},
                "Action": "sts:AssumeRole",
            }
        ],
    }
    definition = {"StartAt": "Done", "States": {"Done": {"Type": "Pass", "End": True}}}
    return {
        "AWSTemplateFormatVersion": "2010-09-09",
        "Resources": {
            "WorkGroup": {
                "Type": "AWS::Athena::WorkGroup",
                "Properties": {"Name": f"{STACK}-wg", "WorkGroupConfiguration": results},
            },
            "MachineRole": {
                "Type": "AWS::IAM::Role",
                "Properties": {"AssumeRolePolicyDocument": trust},
            },
            "Machine": {
                "Type": "AWS::StepFunctions::StateMachine",
                "Properties": {
                    "DefinitionString": json.dumps(definition),
                    "RoleArn": {"Fn::GetAtt": ["MachineRole", "Arn"]},
                },
            },
        },
        "Outputs": {
            WORKGROUP_OUTPUT: {"Value": {"Ref": "WorkGroup"}},
            DATABASE_OUTPUT: {"Value": DATABASE},
            "StateMachineArn": {"Value": {"Ref": "Machine"}},
        },
    }


@pytest.fixture(scope="module")
def stack(endpoint: str, lake: Path) -> StackRef:
    """The lake in S3 under the stack's Glue table; the stack; executions of its machine."""
    target = AwsTarget(REGION, endpoint)
    s3 = target.client("s3")
    s3.create_bucket(Bucket=BUCKET)
    for path in visible_files(lake):
        key = PREFIX + path.relative_to(lake).as_posix()  # dt=…/hour=… as the stack writes
        s3.put_object(Bucket=BUCKET, Key=key, Body=path.read_bytes())
    glue = target.client("glue")
    glue.create_database(DatabaseInput={"Name": DATABASE})
    glue.create_table(DatabaseName=DATABASE, TableInput=table_input(f"s3://{BUCKET}/{PREFIX}"))
    cfn = target.client("cloudformation")
    cfn.create_stack(
        StackName=STACK, TemplateBody=json.dumps(_template()), Capabilities=["CAPABILITY_IAM"]
    )
    cfn.get_waiter("stack_create_complete").wait(
        StackName=STACK, WaiterConfig={"Delay": 1, "MaxAttempts": 120}
    )
    ref = StackRef(STACK, target)
    sfn = target.client("stepfunctions")
    machine = ref.outputs()["StateMachineArn"]
    arns = [
        sfn.start_execution(stateMachineArn=machine, input="{}")["executionArn"]
        for _ in range(EXECUTIONS)
    ]
    for arn in arns:
        wait_until(
            lambda arn=arn: sfn.describe_execution(executionArn=arn)["status"] != "RUNNING",
            "the state machine's execution to end",
        )
    return ref


def _get(app: Any, path: str, **params: str) -> httpx.Response:
    async def go() -> httpx.Response:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1") as c:
            return await c.get(path, params=params, timeout=120)

    return asyncio.run(go())


def _same(shown: Any, local: Any) -> bool:
    if isinstance(shown, list) and isinstance(local, list):
        return len(shown) == len(local) and all(map(_same, shown, local))
    if isinstance(shown, float) or isinstance(local, float):
        return bool(shown == pytest.approx(local, rel=1e-9))
    return bool(shown == local)


def test_the_stack_dashboard_shows_the_stacks_figures(stack: StackRef, lake: Path) -> None:
    app = stack_dashboard(stack, poll_s=0.05)
    response = _get(app, "/api/dashboard", range="all")
    assert response.status_code == 200, response.text
    data = response.json()
    figures = data["figures"]
    # The demo's studies are there (an empty answer would compare equal to nothing).
    assert sum(r[figures["latency"]["columns"].index("n")] for r in figures["latency"]["rows"]) == 8
    assert sorted(r[1] for r in figures["variant_success"]["rows"]) == ["A", "B"]
    with LocalQueryRunner(lake) as local:
        for key, figure in figures.items():
            expected = local.run_named(figure["query"], figure["params"])
            assert figure["columns"] == expected.columns, key
            # Athena's text values (timestamps too) come back as the local ones do.
            assert _same(figure["rows"], json_rows(expected)), (key, figure["rows"])
        objectives = {o.target.name: o for o in OBJECTIVES}
        for tile in data["objectives"]:
            objective = objectives[tile["name"]]
            for window, shown in tile["windows"].items():
                record = pick_row(objective, local.run_named(objective.query, shown["params"]))
                assert _same(shown["value"], record[objective.column]), (tile["name"], window)
    # The stack's workgroup ran them, over the stack's own Glue database.
    athena = stack.target.client("athena")
    ran = athena.list_query_executions(WorkGroup=f"{STACK}-wg")["QueryExecutionIds"]
    assert len(ran) >= len(figures)
    one = athena.get_query_execution(QueryExecutionId=ran[0])["QueryExecution"]
    assert f"{DATABASE}.{TABLE}" in one["Query"]
    # Executions by state: Step Functions' own count for the stack's machine.
    engine = data["engine"]
    assert engine["counts"] == {"SUCCEEDED": EXECUTIONS}
    assert engine["queue_depth"] is None and "no queue" in engine["note"]


def test_the_command_refuses_a_stack_that_is_not_there(endpoint: str, tmp_path: Path) -> None:
    done = CliRunner().invoke(
        cli_app,
        [
            "dashboard",
            "--stack",
            "no-such-stack",
            "--region",
            REGION,
            "--endpoint-url",
            endpoint,
            "--data-dir",
            str(tmp_path),
        ],
    )
    assert done.exit_code == 2 and "STACK_NOT_FOUND" in done.output, done.output
