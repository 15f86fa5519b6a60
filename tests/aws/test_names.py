"""Two stacks side by side: every name that must be unique derives from the stack, and the
code bucket's name is valid and collision-free for any stack name and region."""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from typing import Any

import pytest

from radstream.aws.athena_runner import qualify
from radstream.aws.template import build_template
from radstream.aws.template.names import (
    BUCKET_NAME_MAX,
    code_bucket_name,
    glue_database_name,
    is_valid_bucket_name,
)

ACCOUNT = "123456789012"
# Names scoped by something the stack already owns (a table in the stack's database, a
# saved query in the stack's workgroup, an inline policy in its role, a stream in its log
# group): equal on purpose.
SCOPED: set[tuple[str, tuple[str, ...]]] = {
    ("AWS::Glue::Table", ("TableInput", "Name")),
    ("AWS::Glue::Table", ("TableInput", "PartitionKeys", "Name")),
    ("AWS::Glue::Table", ("TableInput", "StorageDescriptor", "Columns", "Name")),
    ("AWS::Athena::NamedQuery", ("Name",)),
    ("AWS::IAM::Role", ("Policies", "PolicyName")),
    ("AWS::Logs::LogStream", ("LogStreamName",)),
    # Not names of anything the stack creates: the metric an alarm watches.
    ("AWS::CloudWatch::Alarm", ("MetricName",)),
    ("AWS::CloudWatch::Alarm", ("Dimensions", "Name")),
    ("AWS::CloudWatch::Alarm", ("Metrics", "MetricStat", "Metric", "MetricName")),
    ("AWS::CloudWatch::Alarm", ("Metrics", "MetricStat", "Metric", "Dimensions", "Name")),
}


def _names(value: Any, path: tuple[str, ...] = ()) -> Iterator[tuple[tuple[str, ...], str]]:
    """Every literal ``…Name`` property below ``value``, with its path."""
    if isinstance(value, dict):
        for key, item in value.items():
            if (key == "Name" or key.endswith("Name")) and isinstance(item, str):
                yield (*path, key), item
            yield from _names(item, (*path, key))
    elif isinstance(value, list):
        for item in value:
            yield from _names(item, path)


def _unique_names(template: dict[str, Any]) -> set[str]:
    found: set[str] = set()
    for resource in template["Resources"].values():
        for path, name in _names(resource.get("Properties", {})):
            if (resource["Type"], path) not in SCOPED:
                found.add(name)
    return found


@pytest.mark.parametrize(
    "options",
    [{}, {"express_artifacts": True, "kms": True, "state_machine_type": "EXPRESS"}],
    ids=["default", "express-kms"],
)
def test_two_stacks_share_no_name_that_must_be_unique(options: dict[str, Any]) -> None:
    prod, staging = build_template("prod", **options), build_template("staging", **options)
    names = _unique_names(prod)
    assert names, "the walker found no names: it would pass for any template"
    assert {"radstream_prod", "prod-radstream", "prod-validate"} <= names
    assert "prod-radstream-dashboard" in names
    assert not names & _unique_names(staging)


def test_the_glue_database_and_what_refers_to_it_follow_the_stack() -> None:
    template = build_template("staging-b")
    resources = template["Resources"]
    database = resources["GlueDatabase"]["Properties"]["DatabaseInput"]["Name"]
    assert database == "radstream_staging_b"  # Athena takes no '-' in a database name
    grants = [
        resource
        for s in resources["FirehoseDeliveryRole"]["Properties"]["Policies"][0]["PolicyDocument"][
            "Statement"
        ]
        for resource in s["Resource"]
        if "glue" in str(resource)
    ]
    assert grants, "the delivery role grants no Glue table"
    for grant in grants:
        text = grant["Fn::Sub"]
        assert ":catalog" in text or f"/{database}" in text, text
        assert "/radstream/" not in text and not text.endswith("/radstream")
    for query in (r for r in resources.values() if r["Type"] == "AWS::Athena::NamedQuery"):
        sql = query["Properties"]["QueryString"]
        assert f"{database}.telemetry" in sql and "radstream.telemetry" not in sql


def test_database_names_differ_for_stacks_that_differ_only_in_case() -> None:
    assert glue_database_name("prod") != glue_database_name("Prod")
    assert glue_database_name("Prod") == glue_database_name("Prod")
    assert glue_database_name("Prod").islower()


def test_queries_name_the_stack_database() -> None:
    sql = "SELECT * FROM radstream.telemetry t JOIN radstream.telemetry_x x ON true"
    assert qualify(sql, "radstream_b") == (
        "SELECT * FROM radstream_b.telemetry t JOIN radstream.telemetry_x x ON true"
    )


LONG = "a" * 40  # the longest stack name the template accepts
STACKS = ["rs", "prod", LONG, "a" * 39 + "-", "A", "Prod", "prod-", "xn--stack", "sthree-x",
          "amzn-s3-demo-x", "a-b-c", "a" * 30 + "-" * 10]  # fmt: skip
REGIONS = ["us-east-1", "eu-west-1", "ap-southeast-3", "ap-southeast-4", "us-gov-west-1"]


@pytest.mark.parametrize("stack", STACKS)
@pytest.mark.parametrize("region", REGIONS)
def test_the_code_bucket_name_is_valid_and_keeps_account_and_region(
    stack: str, region: str
) -> None:
    name = code_bucket_name(stack, ACCOUNT, region)
    assert is_valid_bucket_name(name), name
    assert len(name) <= BUCKET_NAME_MAX
    assert name.endswith(f"-{ACCOUNT}-{region}")


def test_short_lower_case_names_keep_the_name_earlier_versions_used() -> None:
    assert code_bucket_name("prod", ACCOUNT, "eu-west-1") == f"prod-code-{ACCOUNT}-eu-west-1"


def test_code_bucket_names_never_collide() -> None:
    pairs = list(itertools.product(STACKS, REGIONS))
    names = {code_bucket_name(stack, ACCOUNT, region) for stack, region in pairs}
    assert len(names) == len(pairs)
    # The old rule cut long names before the region: two regions then shared one bucket.
    assert code_bucket_name(LONG, ACCOUNT, "us-east-1") != code_bucket_name(
        LONG, ACCOUNT, "us-east-2"
    )


@pytest.mark.parametrize(
    "name",
    ["ab", "-ab", "ab-", "Ab1", "a" * 64, "xn--ab", "a..b", "ab--x-s3", "sthree-ab", "ab-s3alias"],
)
def test_invalid_bucket_names_are_recognised(name: str) -> None:
    assert not is_valid_bucket_name(name)


@pytest.mark.parametrize(("account", "region"), [("1234", "us-east-1"), (ACCOUNT, "mars")])
def test_a_bad_account_or_region_is_refused(account: str, region: str) -> None:
    with pytest.raises(ValueError, match="is not a"):
        code_bucket_name("prod", account, region)
