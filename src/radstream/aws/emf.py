"""Stage latencies as CloudWatch metrics, written by the handlers in Embedded Metric Format.

A Lambda function's stdout goes to its log group; CloudWatch Logs extracts metrics from
every line that is an EMF document (``{"_aws": {"Timestamp", "CloudWatchMetrics"}, …}``),
as AWS Lambda Powertools' ``Metrics`` writes them. So the handlers publish their latencies
with no API call, no extra permission (the functions already write their logs) and
nothing to wait for before returning.

What is published, under the namespace :data:`NAMESPACE` with the dimensions ``Stack`` and
``Stage`` (and nothing that names a study or a patient):

* :data:`STAGE_LATENCY`: the duration of each successful stage attempt, in milliseconds
  (the lake's ``stage_latency`` query counts the same attempts);
* :data:`END_TO_END_LATENCY`: at the stage that completes an execution (``store``, or
  ``record_failure``), the time from the sidecar's arrival to now, in milliseconds: the
  lake's ``e2e_ms`` (first queue wait plus first start to last end). The p95 objective is
  the ``store`` series: the successful studies.

The stack template's dashboard and alarms (:mod:`radstream.aws.template.dashboard`,
:mod:`radstream.aws.template.alarms`) read these names from here.
"""

from __future__ import annotations

import json
import math
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import TextIO

NAMESPACE = "RadStream"
STAGE_LATENCY = "StageLatency"
END_TO_END_LATENCY = "EndToEndLatency"
STACK_DIMENSION = "Stack"
STAGE_DIMENSION = "Stage"

MAX_METRICS = 100
"""The most metric definitions one EMF directive may hold."""
MAX_DIMENSIONS = 30
"""The most dimension keys one dimension set may hold."""
MAX_NAME_LENGTH = 255
"""CloudWatch's longest metric name (and dimension name)."""
MAX_DIMENSION_VALUE_LENGTH = 1024


class Unit(StrEnum):
    """The CloudWatch units the handlers use (EMF accepts only CloudWatch's own names)."""

    MILLISECONDS = "Milliseconds"
    SECONDS = "Seconds"
    COUNT = "Count"


@dataclass(frozen=True)
class Metric:
    """One value of one metric."""

    name: str
    value: float
    unit: Unit = Unit.MILLISECONDS


@dataclass(frozen=True)
class EmfDocument:
    """One EMF log line: metrics sharing one namespace and one set of dimensions.

    ``properties`` are extra members of the line (searchable in Logs Insights, not
    metrics); they must not collide with a dimension or a metric name.
    """

    namespace: str
    dimensions: Mapping[str, str]
    metrics: tuple[Metric, ...]
    timestamp_ms: int
    properties: Mapping[str, str] = field(default_factory=dict)

    def check(self) -> None:
        """Raise ``ValueError`` where the document breaks the EMF specification's rules."""
        if not 1 <= len(self.namespace) <= MAX_NAME_LENGTH or self.namespace.startswith(":"):
            raise ValueError(f"namespace {self.namespace!r} is not a CloudWatch namespace")
        if not 1 <= len(self.metrics) <= MAX_METRICS:
            raise ValueError(f"{len(self.metrics)} metrics: EMF takes 1-{MAX_METRICS}")
        if len(self.dimensions) > MAX_DIMENSIONS:
            raise ValueError(f"{len(self.dimensions)} dimensions: EMF takes {MAX_DIMENSIONS}")
        names = [m.name for m in self.metrics]
        members = [*names, *self.dimensions, *self.properties]
        if len(set(members)) != len(members) or "_aws" in members:
            raise ValueError(f"metric, dimension and property names collide: {members}")
        for name in [*names, *self.dimensions]:
            if not 1 <= len(name) <= MAX_NAME_LENGTH:
                raise ValueError(f"name {name!r} is not 1-{MAX_NAME_LENGTH} characters")
        for key, value in self.dimensions.items():
            if not 1 <= len(value) <= MAX_DIMENSION_VALUE_LENGTH:
                raise ValueError(f"dimension {key}={value!r} is empty or too long")
        for metric in self.metrics:
            if not math.isfinite(metric.value):
                raise ValueError(f"metric {metric.name} = {metric.value}: not a finite number")
        if self.timestamp_ms < 0:
            raise ValueError(f"timestamp {self.timestamp_ms} ms is before the epoch")

    def to_json(self) -> str:
        """The document as one JSON line (checked first)."""
        self.check()
        directive = {
            "Namespace": self.namespace,
            "Dimensions": [list(self.dimensions)],
            "Metrics": [{"Name": m.name, "Unit": m.unit.value} for m in self.metrics],
        }
        root: dict[str, object] = {
            "_aws": {"Timestamp": self.timestamp_ms, "CloudWatchMetrics": [directive]},
            **self.dimensions,
            **self.properties,
            **{m.name: m.value for m in self.metrics},
        }
        return json.dumps(root, separators=(",", ":"), allow_nan=False)


def stack_of(function_name: str, stage: str) -> str:
    """The stack of a stage function from its name, ``{stack}-{stage with '-'}`` (the
    template's :func:`radstream.aws.template.intrinsics.function_name`); the whole name
    when it does not end so (a function deployed by other means)."""
    suffix = "-" + stage.replace("_", "-")
    if function_name.endswith(suffix) and len(function_name) > len(suffix):
        return function_name[: -len(suffix)]
    return function_name


def latency_document(
    *,
    stack: str,
    stage: str,
    stage_ms: float,
    end_to_end_ms: float | None = None,
    execution_id: str | None = None,
    now_s: float | None = None,
) -> EmfDocument:
    """The EMF document of one successful stage attempt (see the module doc)."""
    metrics = [Metric(STAGE_LATENCY, round(stage_ms, 3))]
    if end_to_end_ms is not None:
        metrics.append(Metric(END_TO_END_LATENCY, round(end_to_end_ms, 3)))
    return EmfDocument(
        namespace=NAMESPACE,
        dimensions={STACK_DIMENSION: stack, STAGE_DIMENSION: stage},
        metrics=tuple(metrics),
        timestamp_ms=int((time.time() if now_s is None else now_s) * 1000),
        properties={"execution_id": execution_id} if execution_id else {},
    )


def emit(document: EmfDocument, stream: TextIO | None = None) -> None:
    """Write ``document`` as one line to stdout (Lambda sends it to the log group)."""
    out = sys.stdout if stream is None else stream
    out.write(document.to_json() + "\n")
    out.flush()
