"""The stack's CloudWatch dashboard (left out with ``--no-dashboard``).

One page, two widgets a row, 5-minute points:

* executions started, succeeded, failed, timed out and aborted (Step Functions);
* end-to-end latency p50/p95/p99 of the successful studies against the 5 s objective,
  and each stage's p95, both from the handlers' EMF metrics (:mod:`radstream.aws.emf`);
* Lambda errors, throttles and duration p95 per stage function;
* telemetry: Firehose's delivery freshness, success and failed conversions, and how far
  Firehose (the stream's one consumer, reading with GetRecords) is behind the stream.

The body is JSON text through ``Fn::Sub``, for the region and the names CloudFormation
gives the state machine, the stream and the delivery stream.
"""

from __future__ import annotations

import json

from radstream.aws.emf import (
    END_TO_END_LATENCY,
    NAMESPACE,
    STACK_DIMENSION,
    STAGE_DIMENSION,
    STAGE_LATENCY,
)
from radstream.pipeline.definition import STORE, Pipeline

from .alarms import DATA_FRESHNESS_S, FIREHOSE, LATENCY_OBJECTIVE_MS
from .intrinsics import STATE_MACHINE, STREAM, Json, function_name, sub

DASHBOARD = "Dashboard"
PERIOD_S = 300
WIDTH, HEIGHT = 12, 6
REGION = "${AWS::Region}"

Metric = list[str | dict[str, str]]
"""One line of a metric widget: namespace, name, dimension pairs, then its options."""


def _widget(title: str, metrics: list[Metric], **properties: object) -> dict[str, object]:
    return {
        "type": "metric",
        "width": WIDTH,
        "height": HEIGHT,
        "properties": {
            "title": title,
            "region": REGION,
            "view": "timeSeries",
            "stacked": False,
            "period": PERIOD_S,
            "metrics": metrics,
            **properties,
        },
    }


def _executions() -> dict[str, object]:
    machine = ["StateMachineArn", f"${{{STATE_MACHINE}}}"]
    return _widget(
        "Executions (Step Functions)",
        [
            ["AWS/States", f"Executions{state}", *machine, {"stat": "Sum", "label": state.lower()}]
            for state in ("Started", "Succeeded", "Failed", "TimedOut", "Aborted")
        ],
    )


def _end_to_end(stack: str) -> dict[str, object]:
    dims = [STACK_DIMENSION, stack, STAGE_DIMENSION, STORE]
    return _widget(
        "End-to-end latency of successful studies (ms)",
        [
            [NAMESPACE, END_TO_END_LATENCY, *dims, {"stat": stat, "label": stat}]
            for stat in ("p50", "p95", "p99")
        ],
        annotations={"horizontal": [{"label": "p95 objective", "value": LATENCY_OBJECTIVE_MS}]},
    )


def _stage_latency(stack: str, stages: list[str]) -> dict[str, object]:
    return _widget(
        "Stage latency p95, successful attempts (ms)",
        [
            [
                NAMESPACE,
                STAGE_LATENCY,
                STACK_DIMENSION,
                stack,
                STAGE_DIMENSION,
                stage,
                {"stat": "p95", "label": stage},
            ]
            for stage in stages
        ],
    )


def _lambda(stack: str, stages: list[str], metric: str, stat: str, title: str) -> dict[str, object]:
    return _widget(
        title,
        [
            [
                "AWS/Lambda",
                metric,
                "FunctionName",
                function_name(stack, stage),
                {"stat": stat, "label": stage},
            ]
            for stage in stages
        ],
    )


def _delivery() -> dict[str, object]:
    delivery = ["DeliveryStreamName", f"${{{FIREHOSE}}}"]
    return _widget(
        "Telemetry delivery to the lake (Firehose)",
        [
            [
                "AWS/Firehose",
                "DeliveryToS3.DataFreshness",
                *delivery,
                {"stat": "Maximum", "label": "freshness (s)"},
            ],
            [
                "AWS/Firehose",
                "DeliveryToS3.Success",
                *delivery,
                {"stat": "Average", "label": "delivery success (0-1)", "yAxis": "right"},
            ],
            [
                "AWS/Firehose",
                "FailedConversion.Records",
                *delivery,
                {"stat": "Sum", "label": "records failing conversion", "yAxis": "right"},
            ],
        ],
        annotations={"horizontal": [{"label": "stale", "value": DATA_FRESHNESS_S}]},
    )


def _stream() -> dict[str, object]:
    stream = ["StreamName", f"${{{STREAM}}}"]
    return _widget(
        "Telemetry stream (Kinesis)",
        [
            [
                "AWS/Kinesis",
                "GetRecords.IteratorAgeMilliseconds",
                *stream,
                {"stat": "Maximum", "label": "Firehose behind (ms)"},
            ],
            [
                "AWS/Kinesis",
                "IncomingRecords",
                *stream,
                {"stat": "Sum", "label": "records in", "yAxis": "right"},
            ],
        ],
    )


def dashboard_body(stack: str, pipeline: Pipeline) -> str:
    """The dashboard's JSON text, before ``Fn::Sub`` (see the module doc)."""
    stages = [stage.name for stage in pipeline.all_stages]
    widgets = [
        _executions(),
        _end_to_end(stack),
        _stage_latency(stack, stages),
        _lambda(stack, stages, "Duration", "p95", "Lambda duration p95 (ms)"),
        _lambda(stack, stages, "Errors", "Sum", "Lambda errors (refused studies included)"),
        _lambda(stack, stages, "Throttles", "Sum", "Lambda throttles"),
        _delivery(),
        _stream(),
    ]
    for index, widget in enumerate(widgets):
        widget["x"], widget["y"] = (index % 2) * WIDTH, (index // 2) * HEIGHT
    return json.dumps({"widgets": widgets}, separators=(",", ":"))


def dashboard_resources(stack: str, pipeline: Pipeline) -> Json:
    """The dashboard of ``stack``."""
    return {
        DASHBOARD: {
            "Type": "AWS::CloudWatch::Dashboard",
            "Properties": {
                "DashboardName": f"{stack}-radstream-dashboard",
                "DashboardBody": sub(dashboard_body(stack, pipeline)),
            },
        }
    }
