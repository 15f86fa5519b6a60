"""`radstream aws deploy` checks that need no AWS (the end-to-end test covers the rest)."""

from __future__ import annotations

from pathlib import Path

import pytest

from radstream.aws.deploy import Change, DeployOptions, deploy, format_changes
from radstream.aws.package import PackageManifest
from radstream.aws.session import AwsTarget, StackRef
from radstream.errors import ConfigInvalid


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
