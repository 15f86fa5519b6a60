"""The handlers' metrics in CloudWatch Embedded Metric Format, checked against the spec
(:mod:`support.emf_spec`, written from AWS's specification, not from the emitter)."""

from __future__ import annotations

import io
import json
import math

import pytest

from radstream.aws.emf import (
    END_TO_END_LATENCY,
    NAMESPACE,
    STAGE_LATENCY,
    EmfDocument,
    Metric,
    emit,
    latency_document,
    stack_of,
)
from radstream.aws.template.intrinsics import function_name
from radstream.pipeline.definition import PIPELINE
from support.emf_spec import spec_problems


def test_the_validator_refuses_what_the_spec_refuses() -> None:
    good = latency_document(stack="prod", stage="store", stage_ms=12.5).to_json()
    assert spec_problems(good) == []
    broken = json.loads(good)
    del broken["Stack"]
    broken["StageLatency"] = "12"
    broken["_aws"]["Timestamp"] = "now"
    broken["_aws"]["CloudWatchMetrics"][0]["Metrics"][0]["Unit"] = "ms"
    assert len(spec_problems(json.dumps(broken))) == 4


def test_a_stage_latency_document_follows_the_spec_and_names_no_study() -> None:
    line = latency_document(
        stack="prod",
        stage="store",
        stage_ms=41.25,
        end_to_end_ms=1830.0,
        execution_id="ex-7",
        now_s=1_790_000_000.5,
    ).to_json()
    assert spec_problems(line) == []
    assert "\n" not in line  # one log event
    root = json.loads(line)
    [directive] = root["_aws"]["CloudWatchMetrics"]
    assert root["_aws"]["Timestamp"] == 1_790_000_000_500
    assert directive["Namespace"] == NAMESPACE == "RadStream"
    assert directive["Dimensions"] == [["Stack", "Stage"]]
    assert directive["Metrics"] == [
        {"Name": STAGE_LATENCY, "Unit": "Milliseconds"},
        {"Name": END_TO_END_LATENCY, "Unit": "Milliseconds"},
    ]
    assert (root["Stack"], root["Stage"]) == ("prod", "store")
    assert (root[STAGE_LATENCY], root[END_TO_END_LATENCY]) == (41.25, 1830.0)
    # What else the line holds: the execution id, to find it in Logs Insights; no study.
    assert set(root) == {"_aws", "Stack", "Stage", STAGE_LATENCY, END_TO_END_LATENCY,
                         "execution_id"}  # fmt: skip


def test_an_attempt_that_completes_nothing_has_no_end_to_end_metric() -> None:
    root = json.loads(latency_document(stack="prod", stage="prepare", stage_ms=3.0).to_json())
    assert [m["Name"] for m in root["_aws"]["CloudWatchMetrics"][0]["Metrics"]] == [STAGE_LATENCY]
    assert END_TO_END_LATENCY not in root and "execution_id" not in root


@pytest.mark.parametrize(
    ("document", "problem"),
    [
        (EmfDocument("RadStream", {"Stack": "p"}, (Metric("x", math.nan),), 0), "finite"),
        (EmfDocument("RadStream", {"Stack": "p"}, (), 0), "0 metrics"),
        (EmfDocument("RadStream", {"Stack": ""}, (Metric("x", 1.0),), 0), "empty"),
        (EmfDocument("RadStream", {"x": "p"}, (Metric("x", 1.0),), 0), "collide"),
        (EmfDocument("", {"Stack": "p"}, (Metric("x", 1.0),), 0), "namespace"),
        (EmfDocument("RadStream", {"S": "p"}, (Metric("x", 1.0),), 0, {"_aws": "y"}), "collide"),
        (
            EmfDocument("RadStream", {f"d{i}": "v" for i in range(31)}, (Metric("x", 1.0),), 0),
            "31 dimensions",
        ),
        (EmfDocument("RadStream", {"S": "p"}, (Metric("x" * 256, 1.0),), 0), "characters"),
    ],
)
def test_a_document_the_spec_refuses_is_not_written(document: EmfDocument, problem: str) -> None:
    out = io.StringIO()
    with pytest.raises(ValueError, match=problem):
        emit(document, out)
    assert out.getvalue() == ""


def test_emit_writes_one_line() -> None:
    out = io.StringIO()
    emit(latency_document(stack="prod", stage="infer", stage_ms=7.0), out)
    [line] = out.getvalue().splitlines()
    assert out.getvalue().endswith("\n") and spec_problems(line) == []


@pytest.mark.parametrize("stack", ["prod", "a-b-c", "rs-store", "x" * 40])
def test_the_stack_is_read_back_from_the_function_name(stack: str) -> None:
    for stage in PIPELINE.all_stages:
        assert stack_of(function_name(stack, stage.name), stage.name) == stack
    assert stack_of("my-own-function", "store") == "my-own-function"
    assert stack_of("-store", "store") == "-store"
