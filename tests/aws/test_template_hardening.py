"""What the emulator forgives and AWS does not: retention, the partition, the stack key,
directory-bucket lifecycle, and the operations safety nets."""

from __future__ import annotations

import json
from typing import Any

from radstream.aws.template import build_template

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
