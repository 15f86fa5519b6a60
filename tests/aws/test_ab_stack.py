"""`radstream ab run … --stack NAME` against stacks deployed in ministack: the mechanics.

One stack per arm is deployed (``NAME-<arm>``), the blocks alternate between them through
the ``bench --stack`` path, the arms are compared with the usual statistics, and every stack
is destroyed at the end. The emulator's timings say nothing about AWS's: only the mechanics
are checked (any verdict will do), never the figures.

Why ``lambda-memory`` (two of its arms) and not ``storage-class``: ministack 1.5.33's
CloudFormation has no ``AWS::S3Express::DirectoryBucket`` (it refuses the template as
"Unrecognized resource types"), so the express arm's stack cannot be deployed there. That
refusal is used instead to check that a deploy failing half-way tears down the stack
deployed before it and exits 2 with the reason.

That a stack not made by ``ab`` is refused is checked with a one-queue stack standing in
for it: the refusal comes before any package or deploy, so no further deploy is needed.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from botocore.exceptions import ClientError
from typer.testing import CliRunner

from radstream.aws.session import AwsTarget
from radstream.cli import app

pytestmark = pytest.mark.slow  # the emulator, and stacks deployed in it

PREFIX = "rsab"
ARMS = ("512MB", "1024MB")
STACKS = tuple(f"{PREFIX}-{arm.lower()}" for arm in ARMS)
# The smallest run that still alternates: 2 rounds of both arms, 2 measured studies each.
LOAD = ("--studies", "2", "--blocks", "2", "--warmup", "1", "--size", "256x320")


def _cli(*args: str) -> Any:
    return CliRunner().invoke(app, list(args))


def _gone(emulator: Any, name: str) -> bool:
    cfn = AwsTarget(endpoint_url=emulator.url).client("cloudformation")
    try:
        stacks = cfn.describe_stacks(StackName=name).get("Stacks", [])
    except ClientError as exc:
        if "does not exist" in str(exc):
            return True
        raise
    return all(s["StackStatus"] == "DELETE_COMPLETE" for s in stacks)


def _destroy(emulator: Any, *names: str) -> None:
    """Teardown of last resort, should the command itself have left a stack behind."""
    for name in names:
        if not _gone(emulator, name):
            _cli("aws", "destroy", "--stack", name, "--endpoint-url", emulator.url)


@pytest.fixture(scope="module")
def experiment(
    emulator: Any, lambda_package: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[Any, dict[str, Any], Path]]:
    """One `ab run lambda-memory --arms 512MB,1024MB --stack rsab` on the emulator."""
    data_dir = tmp_path_factory.mktemp("ab-stack")
    report = data_dir / "ab.html"
    try:
        result = _cli(
            "ab", "run", "lambda-memory", "--arms", ",".join(ARMS), "--stack", PREFIX,
            "--endpoint-url", emulator.url, "--package", str(lambda_package),
            "--python-version", "3.11", *LOAD, "--report", str(report), "--json",
            "--data-dir", str(data_dir),
        )  # fmt: skip
        assert result.exit_code == 0, f"{result.output}\n{result.exception!r}"
        yield result, json.loads(result.stdout.strip().splitlines()[-1]), report
    finally:
        _destroy(emulator, *STACKS)


def test_each_arm_ran_on_its_own_deployed_stack(experiment: Any) -> None:
    _, out, _ = experiment
    assert out["source"] == "stack" and out["projected"] == []
    stacks = {s["arm"]: s for s in out["stacks"]}
    assert list(stacks) == list(ARMS)
    for arm, name in zip(ARMS, STACKS, strict=True):
        use = stacks[arm]
        # Deployed (a fresh stack: created) and complete before the first block ran.
        assert use["stack"] == name and use["deploy"] == "created", use
        assert use["status"] == "CREATE_COMPLETE" and use["stack_id"], use
        assert use["endpoint_url"] and use["express_artifacts"] is False
    # Each arm's stack got its arm's memory size (cost.memory_mb → the template).
    assert [stacks[a]["memory_mb"] for a in ARMS] == [512, 1024]


def test_blocks_alternate_between_the_stacks(experiment: Any) -> None:
    _, out, _ = experiment
    assert out["order"] == ["512MB", "1024MB", "1024MB", "512MB"]
    log = out["manifest"]["block_log"]
    assert [b["arm"] for b in log] == out["order"]
    where = dict(zip(ARMS, STACKS, strict=True))
    assert [b["stack"] for b in log] == [where[b["arm"]] for b in log]
    # Each block's bench ran against a stack (no local workers) and saw its studies through.
    assert all(b["p50_ms"] and b["p50_ms"] > 0 for b in log), log
    assert out["manifest"]["mode"] == "stack"
    assert out["manifest"]["bench"]["config"]["workers"] is None


def test_the_arms_are_compared_with_verdicts(experiment: Any) -> None:
    _, out, _ = experiment
    metrics = {m["metric"]: m for m in out["metrics"]}
    assert {"p50_ms", "p95_ms", "success_rate", "cost_per_image_usd"} <= set(metrics)
    for m in metrics.values():
        assert (m["arm_a"], m["arm_b"]) == ARMS
        assert m["verdict"] in ("b_better", "a_better", "same", "inconclusive")
        assert m["projected"] is False
    # Both arms' studies all came back: measured, on the stacks.
    assert metrics["success_rate"]["a"] == metrics["success_rate"]["b"] == 1.0
    assert metrics["p50_ms"]["a"] > 0 and metrics["p50_ms"]["b"] > 0
    assert out["srm"]["measured"] == {"512MB": 4, "1024MB": 4}


def test_the_stacks_are_destroyed_at_the_end(experiment: Any, emulator: Any) -> None:
    result, out, report = experiment
    assert all(s["destroyed"] is True for s in out["stacks"])
    for name in STACKS:
        assert _gone(emulator, name), name
    # A deleted stack is still described by its id: each was deployed with the tag that
    # marks it as this prefix's (what a later run checks before reusing or destroying it).
    cfn = AwsTarget(endpoint_url=emulator.url).client("cloudformation")
    for use in out["stacks"]:
        (stack,) = cfn.describe_stacks(StackName=use["stack_id"])["Stacks"]
        tags = {t["Key"]: t["Value"] for t in stack.get("Tags", [])}
        assert tags.get("radstream:ab") == PREFIX, tags
    # The terminal and the report say where the figures come from.
    assert "MEASURED ON DEPLOYED STACKS" in report.read_text(encoding="utf-8")
    assert "destroying rsab-1024mb" in result.output


def test_a_deploy_failing_half_way_tears_down_what_was_deployed(
    emulator: Any, lambda_package: Path, tmp_path: Path
) -> None:
    # storage-class: the standard arm deploys; the emulator refuses the express arm's
    # directory bucket (see the module's doc), which ends the run before any block.
    names = (f"{PREFIX}x-standard", f"{PREFIX}x-express")
    try:
        result = _cli(
            "ab", "run", "storage-class", "--stack", f"{PREFIX}x", "--endpoint-url",
            emulator.url, "--package", str(lambda_package), "--python-version", "3.11",
            *LOAD, "--data-dir", str(tmp_path),
        )  # fmt: skip
        assert result.exit_code == 2, result.output
        output = " ".join(result.output.split())
        assert "AB_RUN_FAILED" in output, output
        assert f"deploying stack {names[1]} for arm 'express' failed" in output, output
        assert "S3Express::DirectoryBucket" in output, output  # the emulator's reason
        destroyed = output.split("destroyed:", 1)[1]
        assert names[0] in destroyed and names[1] in destroyed, output
        assert f"stack {names[0]} deleted" in output, output
        assert all(_gone(emulator, name) for name in names)
    finally:
        _destroy(emulator, *names)


def test_an_existing_stack_not_made_by_ab_is_refused_and_left_alone(
    emulator: Any, tmp_path: Path
) -> None:
    # `rsaby-512mb` stands (deployed some other way: no radstream:ab tag); a run whose
    # first arm's stack has that name must neither deploy over it nor destroy it.
    names = (f"{PREFIX}y-512mb", f"{PREFIX}y-1024mb")
    cfn = AwsTarget(endpoint_url=emulator.url).client("cloudformation")
    body = json.dumps({"Resources": {"Queue": {"Type": "AWS::SQS::Queue"}}})
    cfn.create_stack(StackName=names[0], TemplateBody=body)
    try:
        cfn.get_waiter("stack_create_complete").wait(
            StackName=names[0], WaiterConfig={"Delay": 1, "MaxAttempts": 60}
        )
        package = tmp_path / "package"
        result = _cli(
            "ab", "run", "lambda-memory", "--arms", ",".join(ARMS), "--stack", f"{PREFIX}y",
            "--endpoint-url", emulator.url, "--package", str(package), *LOAD,
            "--data-dir", str(tmp_path),
        )  # fmt: skip
        assert result.exit_code == 2, result.output
        output = " ".join(result.output.split())
        assert "STACK_IN_USE" in output and names[0] in output, output
        assert "deploying" not in output and "destroying" not in output, output
        assert not package.exists()  # refused before a package was built
        (stack,) = cfn.describe_stacks(StackName=names[0])["Stacks"]
        assert stack["StackStatus"] == "CREATE_COMPLETE"
        assert _gone(emulator, names[1])
    finally:
        cfn.delete_stack(StackName=names[0])
