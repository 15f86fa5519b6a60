"""The stack's CloudWatch dashboard, operational alarms and alarm e-mail topic.

(cfn-lint runs over these variants in test_aws_template.py, checkov in `make checkov`.)
"""

from __future__ import annotations

import json
import re
from typing import Any

import pytest

from radstream.aws.emf import END_TO_END_LATENCY, NAMESPACE, STAGE_LATENCY
from radstream.aws.template import RATE_ALARMS_PARAMETER, build_template
from radstream.aws.template.alarms import (
    FAILED_EXECUTIONS_PERCENT,
    LATENCY_OBJECTIVE_MS,
    RATE_ALARMS_CONDITION,
)
from radstream.aws.template.intrinsics import function_name
from radstream.errors import ConfigInvalid
from radstream.pipeline.definition import PIPELINE

STACK = "rs-ops"
TOPIC = "arn:aws:sns:eu-west-1:123456789012:radstream-ops"
DEFAULT = build_template(STACK)
LOSS_ALARMS = {
    "UploadsNotStartedAlarm",
    "FailuresNotRecordedAlarm",
    "ExecutionsTimedOutAlarm",
    "ExecutionsAbortedAlarm",
}


def _alarms(template: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {k: r for k, r in template["Resources"].items() if r["Type"] == "AWS::CloudWatch::Alarm"}


def _watched(alarm: dict[str, Any]) -> list[tuple[str, str, list[Any]]]:
    """(namespace, metric, dimensions) of each metric an alarm reads."""
    props = alarm["Properties"]
    if "Metrics" in props:
        return [
            (m["MetricStat"]["Metric"]["Namespace"], m["MetricStat"]["Metric"]["MetricName"],
             m["MetricStat"]["Metric"]["Dimensions"])
            for m in props["Metrics"] if "MetricStat" in m
        ]  # fmt: skip
    return [(props["Namespace"], props["MetricName"], props["Dimensions"])]


def test_every_alarm_says_what_happened_and_what_to_do() -> None:
    alarms = _alarms(DEFAULT)
    assert len(alarms) > len(LOSS_ALARMS)
    for logical_id, alarm in alarms.items():
        description = alarm["Properties"]["AlarmDescription"]
        assert description.startswith(f"RadStream {STACK}: "), logical_id
        # What to do: a command, a log group, a queue or a setting to change.
        assert re.search(r"`radstream |/aws/|queue|Raise|redeploy|dashboard", description), (
            logical_id
        )
        assert len(description) <= 1024  # CloudWatch's limit
        assert alarm["Properties"]["TreatMissingData"] == "notBreaching"


def test_a_failed_study_alarms_only_as_a_rate_of_executions() -> None:
    alarms = _alarms(DEFAULT)
    plain = [m for a in alarms.values() if "Metrics" not in a["Properties"] for m in _watched(a)]
    assert not any(metric == "ExecutionsFailed" for _, metric, _ in plain)
    failing = alarms["ExecutionsFailingAlarm"]
    assert failing["Condition"] == RATE_ALARMS_CONDITION
    props = failing["Properties"]
    assert [m for _, m, _ in _watched(failing)] == ["ExecutionsFailed", "ExecutionsStarted"]
    [expression] = [m for m in props["Metrics"] if m.get("ReturnData")]
    assert "failed" in expression["Expression"] and "total" in expression["Expression"]
    ids = {m["Id"] for m in props["Metrics"]}
    assert set(re.findall(r"\b(failed|total)\b", expression["Expression"])) <= ids
    assert props["Threshold"] == FAILED_EXECUTIONS_PERCENT
    assert props["ComparisonOperator"] == "GreaterThanThreshold"


def test_each_stage_has_error_and_throttle_alarms_on_its_own_function() -> None:
    alarms = _alarms(DEFAULT)
    for stage in PIPELINE.all_stages:
        function = [{"Name": "FunctionName", "Value": function_name(STACK, stage.name)}]
        throttled = [a for a in alarms.values() if _watched(a) == [("AWS/Lambda", "Throttles", function)]]  # fmt: skip
        assert len(throttled) == 1, stage.name
        errors = [a for a in alarms.values() if ("AWS/Lambda", "Errors", function) in _watched(a)]
        # record_failure: any error is a loss (its plain alarm); the others: a rate.
        assert len(errors) == 1, stage.name
        assert ("Metrics" in errors[0]["Properties"]) == (stage.name != PIPELINE.failure_stage)


def test_telemetry_alarms_watch_the_stacks_firehose_and_stream() -> None:
    resources = DEFAULT["Resources"]
    watched = {m: dims for a in _alarms(DEFAULT).values() for _, m, dims in _watched(a)}
    for metric in (
        "DeliveryToS3.DataFreshness",
        "DeliveryToS3.Success",
        "FailedConversion.Records",
    ):
        [dimension] = watched[metric]
        assert dimension["Name"] == "DeliveryStreamName"
        firehose = resources[dimension["Value"]["Ref"]]
        assert firehose["Type"] == "AWS::KinesisFirehose::DeliveryStream"
        assert firehose["Properties"]["DeliveryStreamType"] == "KinesisStreamAsSource"
    # The stream's only consumer is that Firehose (GetRecords): its iterator age is the lag.
    [dimension] = watched["GetRecords.IteratorAgeMilliseconds"]
    assert dimension["Name"] == "StreamName"
    stream = dimension["Value"]["Ref"]
    assert resources[stream]["Type"] == "AWS::Kinesis::Stream"
    assert firehose["Properties"]["KinesisStreamSourceConfiguration"]["KinesisStreamARN"] == {
        "Fn::GetAtt": [stream, "Arn"]
    }


def test_the_p95_objective_alarm_reads_the_handlers_emf_metric() -> None:
    props = _alarms(DEFAULT)["LatencyObjectiveAlarm"]["Properties"]
    assert (props["Namespace"], props["MetricName"]) == (NAMESPACE, END_TO_END_LATENCY)
    assert props["Dimensions"] == [
        {"Name": "Stack", "Value": STACK},
        {"Name": "Stage", "Value": "store"},  # the successful studies
    ]
    assert props["ExtendedStatistic"] == "p95" and "Statistic" not in props
    assert props["Threshold"] == LATENCY_OBJECTIVE_MS == 5000
    assert props["ComparisonOperator"] == "GreaterThanThreshold"


def _dashboard(template: dict[str, Any]) -> tuple[dict[str, Any], set[str]]:
    """The dashboard body with its ``${…}`` resolved to placeholders, and what they name."""
    text = template["Resources"]["Dashboard"]["Properties"]["DashboardBody"]["Fn::Sub"]
    names = set(re.findall(r"\$\{([^}]+)\}", text))
    return json.loads(re.sub(r"\$\{([^}]+)\}", r"resolved-\1", text)), names


def test_the_dashboard_shows_executions_lambdas_telemetry_and_emf_latencies() -> None:
    body, substituted = _dashboard(DEFAULT)
    resources = DEFAULT["Resources"]
    assert substituted <= set(resources) | {"AWS::Region"}
    assert {"StateMachine", "TelemetryStream", "TelemetryDelivery"} <= substituted
    lines = [m for w in body["widgets"] for m in w["properties"]["metrics"]]
    shown = {(m[0], m[1]) for m in lines}
    for state in ("Started", "Succeeded", "Failed", "TimedOut"):
        assert ("AWS/States", f"Executions{state}") in shown
    assert {(NAMESPACE, STAGE_LATENCY), (NAMESPACE, END_TO_END_LATENCY)} <= shown
    assert {("AWS/Firehose", "DeliveryToS3.DataFreshness"), ("AWS/Firehose", "DeliveryToS3.Success"),
            ("AWS/Kinesis", "GetRecords.IteratorAgeMilliseconds")} <= shown  # fmt: skip
    for metric in ("Errors", "Throttles", "Duration"):
        functions = {m[3] for m in lines if m[:3] == ["AWS/Lambda", metric, "FunctionName"]}
        assert functions == {function_name(STACK, s.name) for s in PIPELINE.all_stages}
    staged = {m[5] for m in lines if m[:2] == [NAMESPACE, STAGE_LATENCY]}
    assert staged == {s.name for s in PIPELINE.all_stages}
    # Every widget has its own place on the grid.
    cells = [(w["x"], w["y"]) for w in body["widgets"]]
    assert len(set(cells)) == len(cells)
    assert all(w["x"] + w["width"] <= 24 for w in body["widgets"])


def test_no_dashboard_leaves_out_the_dashboard_and_operational_alarms_only() -> None:
    template = build_template(STACK, dashboard=False)
    assert "Dashboard" not in template["Resources"]
    assert set(_alarms(template)) == LOSS_ALARMS
    assert RATE_ALARMS_PARAMETER not in template["Parameters"]
    assert RATE_ALARMS_CONDITION not in template["Conditions"]
    assert RATE_ALARMS_PARAMETER in DEFAULT["Parameters"]
    assert DEFAULT["Parameters"][RATE_ALARMS_PARAMETER]["Default"] == "true"


@pytest.mark.parametrize("kms", [False, True], ids=["sse-default", "kms"])
def test_alarm_email_subscribes_to_a_topic_every_alarm_notifies(kms: bool) -> None:
    template = build_template(STACK, alarm_email="ops@example.com", alarm_topic=TOPIC, kms=kms)
    resources = template["Resources"]
    topic = resources["AlarmTopic"]
    assert topic["Type"] == "AWS::SNS::Topic"
    assert topic["Properties"]["TopicName"] == f"{STACK}-alarms"
    [subscription] = [r for r in resources.values() if r["Type"] == "AWS::SNS::Subscription"]
    assert subscription["Properties"] == {
        "TopicArn": {"Ref": "AlarmTopic"},
        "Protocol": "email",
        "Endpoint": "ops@example.com",
    }
    for alarm in _alarms(template).values():
        assert alarm["Properties"]["AlarmActions"] == [{"Ref": "AlarmTopic"}, TOPIC]
        assert alarm["Properties"]["OKActions"] == [{"Ref": "AlarmTopic"}, TOPIC]
    statements = resources["DataKey"]["Properties"]["KeyPolicy"]["Statement"] if kms else []
    to_cloudwatch = [s for s in statements if s["Principal"].get("Service") == "cloudwatch.amazonaws.com"]  # fmt: skip
    if kms:
        assert topic["Properties"]["KmsMasterKeyId"] == {"Fn::GetAtt": ["DataKey", "Arn"]}
        [statement] = to_cloudwatch
        assert set(statement["Action"]) == {"kms:Decrypt", "kms:GenerateDataKey*"}
        # Only alarms of this account may use the key through CloudWatch.
        condition = statement["Condition"]
        assert condition["StringEquals"] == {"aws:SourceAccount": {"Ref": "AWS::AccountId"}}
        assert ":alarm:" in str(condition["ArnLike"]["aws:SourceArn"])
        assert "Metadata" not in topic
    else:
        # No key of the stack to use: checkov's encryption check is skipped for this
        # resource only, with its reason.
        assert "KmsMasterKeyId" not in topic["Properties"]
        [skip] = topic["Metadata"]["checkov"]["skip"]
        assert skip["id"] == "CKV_AWS_26" and len(skip["comment"]) > 40


def test_without_alarm_email_there_is_no_topic_and_the_key_is_unchanged() -> None:
    plain, kms = build_template(STACK), build_template(STACK, kms=True)
    for template in (plain, kms):
        assert not any(r["Type"].startswith("AWS::SNS::") for r in template["Resources"].values())
    sids = [s["Sid"] for s in kms["Resources"]["DataKey"]["Properties"]["KeyPolicy"]["Statement"]]
    assert "AllowAlarmsToNotify" not in sids


@pytest.mark.parametrize(
    "address",
    [
        "ops",
        "ops@localhost",
        "Ops <ops@example.com>",
        "a b@example.com",
        "ops@example.com,x@y.z",
        "x" * 250 + "@example.com",
    ],
)
def test_a_bad_alarm_email_is_refused(address: str) -> None:
    with pytest.raises(ConfigInvalid, match="e-mail"):
        build_template(STACK, alarm_email=address)
