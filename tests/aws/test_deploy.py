"""`radstream aws deploy` checks that need no AWS (the end-to-end test covers the rest)."""

from __future__ import annotations

import io
import json
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import pytest
from botocore.exceptions import ClientError

from radstream.aws.deploy import (
    Change,
    DeployOptions,
    deploy,
    format_changes,
    lambda_settings,
    template_options_from,
)
from radstream.aws.package import ARTIFACT_FILES, Artifact, PackageManifest
from radstream.aws.session import AwsTarget, StackRef
from radstream.aws.template import TemplateOptions
from radstream.errors import ConfigInvalid
from radstream.settings import Settings


def test_deploy_refuses_a_python311_package_for_aws_before_any_call() -> None:
    """Lambda's python3.11 runs Amazon Linux 2, whose glibc the wheels outgrew; the check
    comes before any AWS call (this test has no credentials and no network)."""
    manifest = PackageManifest(
        artifacts={}, python_version="3.11", architecture="x86_64", pins={}, functions={}
    )
    options = DeployOptions(package=manifest, model_path=Path("m.onnx"), model_preprocessing={})
    with pytest.raises(ConfigInvalid, match="Amazon Linux 2"):
        deploy(StackRef("rs", AwsTarget(region="eu-west-1")), options, report=lambda _: None)


def test_the_change_set_prints_as_an_aligned_table() -> None:
    table = format_changes(
        [
            Change("Modify", "InferFunction", "AWS::Lambda::Function", "False"),
            Change("Add", "ExpressArtifactsBucket", "AWS::S3Express::DirectoryBucket", "-"),
        ]
    )
    lines = table.splitlines()
    assert lines[0].split() == ["action", "resource", "type", "replacement"]
    assert lines[1].split() == ["Modify", "InferFunction", "AWS::Lambda::Function", "False"]
    assert len({line.index(line.split()[1]) for line in lines}) == 1  # one column start


class _FakeClient:
    """Answers the calls `deploy` makes on an empty account with a fresh stack name."""

    def __init__(self, calls: list[tuple[str, dict[str, Any]]]) -> None:
        self.calls = calls
        self.described = 0

    def __getattr__(self, name: str) -> Callable[..., dict[str, Any]]:
        def call(**kwargs: Any) -> dict[str, Any]:
            self.calls.append((name, kwargs))
            if name == "get_caller_identity":
                return {"Account": "123456789012"}
            if name == "describe_stacks":
                self.described += 1
                if self.described == 1:  # before the change set: no such stack yet
                    raise ClientError(
                        {"Error": {"Code": "ValidationError", "Message": "does not exist"}},
                        "DescribeStacks",
                    )
                return {"Stacks": [{"StackStatus": "CREATE_COMPLETE", "Outputs": []}]}
            if name == "describe_change_set":
                return {
                    "Status": "FAILED",
                    "StatusReason": "The submitted information didn't contain changes.",
                }
            return {}

        return call


@dataclass(frozen=True)
class _FakeTarget(AwsTarget):
    """A target whose clients record every call (one fake client per service)."""

    calls: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    clients: dict[str, _FakeClient] = field(default_factory=dict)

    def client(self, service: str, *, fast: bool = False) -> Any:
        return self.clients.setdefault(service, _FakeClient(self.calls))


def _manifest(tmp_path: Path) -> PackageManifest:
    artifacts = {
        name: Artifact(name, tmp_path / file, sha256=name * 8, zipped_bytes=1, unzipped_bytes=1)
        for name, file in ARTIFACT_FILES.items()
    }
    return PackageManifest(
        artifacts=artifacts, python_version="3.12", architecture="x86_64", pins={}, functions={}
    )


@pytest.mark.parametrize("endpoint", [None, "https://model.internal:8443"])
def test_deploy_sends_a_key_for_each_layer_the_template_has(
    tmp_path: Path, endpoint: str | None
) -> None:
    """With a remote model endpoint the stack has no model layer, and no parameter for it."""
    target = _FakeTarget(region="eu-west-1", endpoint_url="http://emulator:4566")
    options = DeployOptions(
        package=_manifest(tmp_path),
        model_path=None,
        model_preprocessing={"size": 224},
        template=TemplateOptions(model_endpoint=endpoint),
    )
    deploy(StackRef("rs", target), options, report=lambda _: None)
    [(_, change_set)] = [c for c in target.calls if c[0] == "create_change_set"]
    sent = {p["ParameterKey"]: p["ParameterValue"] for p in change_set["Parameters"]}
    assert sent["ImagingLayerKey"].endswith("/layer-imaging.zip")
    assert ("ModelLayerKey" in sent) is (endpoint is None)
    assert sent["ModelPreprocessing"] == '{"size": 224}'
    [(_, upload)] = [
        c for c in target.calls if c[0] == "put_object" and c[1]["Key"].startswith("templates/")
    ]
    template = json.loads(upload["Body"])
    assert set(sent) <= set(template["Parameters"])  # CloudFormation refuses unknown ones
    assert template["Resources"]["InferFunction"]["Properties"]["Runtime"] == "python3.12"


def test_template_options_come_from_the_flags_else_the_settings() -> None:
    settings = Settings(
        cost={"memory_mb": 1024, "architecture": "arm64", "storage_class": "express"},
        model={"endpoint": "https://model.internal:8443"},
    )
    from_settings = template_options_from(settings)
    assert from_settings.memory_mb == 1024
    assert from_settings.architecture == "arm64"
    assert from_settings.express_artifacts is True
    assert from_settings.model_endpoint == "https://model.internal:8443"
    assert from_settings.settings_env == lambda_settings(settings)[0]
    flags = template_options_from(settings, memory_mb=3008, express_artifacts=False, kms=True)
    assert (flags.memory_mb, flags.express_artifacts, flags.kms) == (3008, False, True)


def _sent_parameters(target: _FakeTarget) -> list[dict[str, Any]]:
    [(_, change_set)] = [c for c in target.calls if c[0] == "create_change_set"]
    sent: list[dict[str, Any]] = change_set["Parameters"]
    return sent


def _express_options(tmp_path: Path, zone: str | None = None) -> DeployOptions:
    return DeployOptions(
        package=_manifest(tmp_path),
        model_path=None,
        model_preprocessing={},
        template=TemplateOptions(express_artifacts=True),
        express_zone=zone,
    )


def test_express_artifacts_send_a_zone_of_the_region(tmp_path: Path) -> None:
    """CreateChangeSet refuses a parameter without a default that is not sent."""
    target = _FakeTarget(region="us-west-2", endpoint_url="http://emulator:4566")
    unavailable = {"usw2-az1"}

    def zones(**kwargs: Any) -> dict[str, Any]:
        return {
            "AvailabilityZones": [
                {"ZoneId": z, "State": "impaired" if z in unavailable else "available"}
                for z in kwargs["ZoneIds"]
            ]
        }

    ec2 = target.client("ec2")
    ec2.__dict__["describe_availability_zones"] = zones
    deploy(StackRef("rs", target), _express_options(tmp_path), report=lambda _: None)
    [zone] = [p for p in _sent_parameters(target) if p["ParameterKey"] == "ExpressZoneId"]
    assert zone["ParameterValue"] == "usw2-az3"  # the first one available


def test_the_express_zone_flag_wins(tmp_path: Path) -> None:
    target = _FakeTarget(region="eu-central-1", endpoint_url="http://emulator:4566")
    deploy(StackRef("rs", target), _express_options(tmp_path, "euc1-az1"), report=lambda _: None)
    [zone] = [p for p in _sent_parameters(target) if p["ParameterKey"] == "ExpressZoneId"]
    assert zone["ParameterValue"] == "euc1-az1"


def test_a_region_without_known_zones_asks_for_the_flag(tmp_path: Path) -> None:
    target = _FakeTarget(region="eu-central-1", endpoint_url="http://emulator:4566")
    with pytest.raises(ConfigInvalid, match="--express-zone"):
        deploy(StackRef("rs", target), _express_options(tmp_path), report=lambda _: None)


def test_a_standard_stack_sends_no_zone(tmp_path: Path) -> None:
    target = _FakeTarget(region="us-east-1", endpoint_url="http://emulator:4566")
    options = replace(_express_options(tmp_path), template=TemplateOptions())
    deploy(StackRef("rs", target), options, report=lambda _: None)
    assert all(p["ParameterKey"] != "ExpressZoneId" for p in _sent_parameters(target))


def test_an_update_keeps_the_stack_zone(tmp_path: Path) -> None:
    """A new zone would replace the directory bucket: an update keeps the one it has."""
    target = _FakeTarget(region="us-east-1", endpoint_url="http://emulator:4566")

    def described(**_: Any) -> dict[str, Any]:
        stack = {"StackStatus": "UPDATE_COMPLETE", "Outputs": []}
        return {"Stacks": [{**stack, "Parameters": [{"ParameterKey": "ExpressZoneId"}]}]}

    target.client("cloudformation").__dict__["describe_stacks"] = described
    deploy(StackRef("rs", target), _express_options(tmp_path), report=lambda _: None)
    [zone] = [p for p in _sent_parameters(target) if p["ParameterKey"] == "ExpressZoneId"]
    assert zone == {"ParameterKey": "ExpressZoneId", "UsePreviousValue": True}


def _emulator_runs(target: _FakeTarget, python: str) -> None:
    """The fake emulator's probe function answers ``python``."""
    lam = target.client("lambda")
    lam.__dict__["invoke"] = lambda **_: {"Payload": io.BytesIO(json.dumps(python).encode())}


def test_deploy_to_an_emulator_refuses_a_package_for_another_python(tmp_path: Path) -> None:
    """A package for 3.12 on an emulator that runs 3.11: every upload would end with no
    outcome at all, so the deploy stops first and says what to pass."""
    target = _FakeTarget(region="us-east-1", endpoint_url="http://emulator:4566")
    _emulator_runs(target, "3.11")
    options = DeployOptions(package=_manifest(tmp_path), model_path=None, model_preprocessing={})
    with pytest.raises(ConfigInvalid, match=r"--python-version 3\.11"):
        deploy(StackRef("rs", target), options, report=lambda _: None)
    assert not [c for c in target.calls if c[0] == "create_change_set"]
    assert [c[1]["FunctionName"] for c in target.calls if c[0] == "delete_function"] == [
        "rs-python-probe"  # the probe does not stay behind
    ]


def test_deploy_to_an_emulator_with_the_same_python_goes_ahead(tmp_path: Path) -> None:
    target = _FakeTarget(region="us-east-1", endpoint_url="http://emulator:4566")
    _emulator_runs(target, "3.12")
    options = DeployOptions(package=_manifest(tmp_path), model_path=None, model_preprocessing={})
    deploy(StackRef("rs", target), options, report=lambda _: None)
    assert [c for c in target.calls if c[0] == "create_change_set"]


def test_a_region_that_is_no_aws_region_is_a_config_error(tmp_path: Path) -> None:
    target = _FakeTarget(region="local", endpoint_url="http://emulator:4566")
    options = DeployOptions(package=_manifest(tmp_path), model_path=None, model_preprocessing={})
    with pytest.raises(ConfigInvalid, match="not an AWS region"):
        deploy(StackRef("rs", target), options, report=lambda _: None)


@pytest.mark.parametrize("endpoint_url", [None, "http://emulator:4566"])
def test_the_rate_alarms_go_to_aws_and_not_to_an_emulator(
    tmp_path: Path, endpoint_url: str | None
) -> None:
    """ministack's CloudFormation refuses alarms on metric math: an emulator's stack gets
    the dashboard and every other alarm."""
    target = _FakeTarget(region="us-east-1", endpoint_url=endpoint_url)
    _emulator_runs(target, "3.12")
    options = DeployOptions(package=_manifest(tmp_path), model_path=None, model_preprocessing={})
    deploy(StackRef("rs", target), options, report=lambda _: None)
    sent = {p["ParameterKey"]: p["ParameterValue"] for p in _sent_parameters(target)}
    assert sent["RateAlarms"] == ("true" if endpoint_url is None else "false")
    target = _FakeTarget(region="us-east-1", endpoint_url=endpoint_url)
    _emulator_runs(target, "3.12")
    quiet = replace(options, template=TemplateOptions(dashboard=False))
    deploy(StackRef("rs", target), quiet, report=lambda _: None)
    assert "RateAlarms" not in {p["ParameterKey"] for p in _sent_parameters(target)}
