"""What the emulator forgives and AWS does not: retention, the partition, the stack key,
directory-bucket lifecycle, and the operations safety nets."""

from __future__ import annotations

import json
from typing import Any

from radstream.aws.template import build_template
from radstream.aws.template.compute import definition_of

STACK = "rs-test"


def _rules(template: dict[str, Any], bucket: str) -> list[dict[str, Any]]:
    rules: list[dict[str, Any]] = template["Resources"][bucket]["Properties"][
        "LifecycleConfiguration"
    ]["Rules"]
    return rules


def test_athena_results_expire_with_every_version() -> None:
    """The results bucket is versioned: an expiration alone leaves the data behind a
    delete marker, forever."""
    rules = [
        r
        for r in _rules(build_template(STACK), "ResultsBucket")
        if r["Prefix"] == "athena-results/"
    ]
    current = [r for r in rules if "ExpirationInDays" in r]
    assert [r["ExpirationInDays"] for r in current] == [7]
    assert current[0]["NoncurrentVersionExpiration"] == {"NoncurrentDays": 1}
    assert any(r.get("ExpiredObjectDeleteMarker") is True for r in rules)
    for rule in rules:  # S3 refuses a delete-marker expiry beside days in one rule
        assert not ("ExpiredObjectDeleteMarker" in rule and "ExpirationInDays" in rule)


def test_the_directory_bucket_lets_lifecycle_expire_tensors() -> None:
    template = build_template(STACK, express_artifacts=True)
    [policy] = [
        r for r in template["Resources"].values() if r["Type"] == "AWS::S3Express::BucketPolicy"
    ]
    assert policy["Properties"]["Bucket"] == {"Ref": "ExpressArtifactsBucket"}
    [grant] = policy["Properties"]["PolicyDocument"]["Statement"]
    assert grant["Principal"] == {"Service": "lifecycle.s3.amazonaws.com"}
    assert grant["Action"] == "s3express:CreateSession"
    assert grant["Condition"] == {"StringEquals": {"s3express:SessionMode": "ReadWrite"}}
    expiry = template["Resources"]["ExpressArtifactsBucket"]["Properties"]
    assert expiry["LifecycleConfiguration"]["Rules"][0]["ExpirationInDays"] == 1
    assert not [
        r
        for r in build_template(STACK)["Resources"].values()
        if r["Type"] == "AWS::S3Express::BucketPolicy"
    ]


def test_no_arn_names_the_aws_partition() -> None:
    """aws-cn and aws-us-gov stacks: every ARN takes the partition from the stack."""
    template = build_template(STACK, express_artifacts=True, kms=True)
    assert "arn:aws:" not in json.dumps(template)
    definition = definition_of(template["Resources"]["StateMachine"], partition="aws-cn")
    tasks = [s for s in definition["States"].values() if s["Type"] == "Task"]
    assert tasks
    assert {t["Resource"] for t in tasks} == {"arn:aws-cn:states:::lambda:invoke"}
    # The other placeholders are left to DefinitionSubstitutions, unescaped.
    assert all(t["Parameters"]["FunctionName"].startswith("${") for t in tasks)


def test_with_kms_the_log_groups_and_the_stream_use_the_stack_key() -> None:
    key = {"Fn::GetAtt": ["DataKey", "Arn"]}
    template = build_template(STACK, kms=True)
    resources = template["Resources"]
    groups = [r for r in resources.values() if r["Type"] == "AWS::Logs::LogGroup"]
    assert groups and all(g["Properties"]["KmsKeyId"] == key for g in groups)
    stream = resources["TelemetryStream"]["Properties"]["StreamEncryption"]
    assert stream == {"EncryptionType": "KMS", "KeyId": key}
    statements = resources["DataKey"]["Properties"]["KeyPolicy"]["Statement"]
    [logs] = [s for s in statements if "Service" in s["Principal"]]
    assert logs["Principal"]["Service"] == {"Fn::Sub": "logs.${AWS::Region}.amazonaws.com"}
    assert "kms:EncryptionContext:aws:logs:arn" in logs["Condition"]["ArnLike"]
    source = resources["FirehoseSourceRole"]["Properties"]["Policies"][0]["PolicyDocument"]
    assert {"Effect": "Allow", "Action": ["kms:Decrypt"], "Resource": [key]} in source["Statement"]
    plain = build_template(STACK)["Resources"]
    assert all(
        "KmsKeyId" not in r["Properties"]
        for r in plain.values()
        if r["Type"] == "AWS::Logs::LogGroup"
    )
    assert plain["TelemetryStream"]["Properties"]["StreamEncryption"]["KeyId"] == (
        "alias/aws/kinesis"
    )
