"""A checker of CloudWatch Embedded Metric Format documents, written from the spec.

:func:`spec_problems` follows AWS's "Specification: Embedded metric format" (CloudWatch
user guide), not :mod:`radstream.aws.emf`: the root is a JSON object whose ``_aws`` member
holds an integer ``Timestamp`` (epoch milliseconds) and a ``CloudWatchMetrics`` array of
directives; each directive has exactly ``Namespace``, ``Dimensions`` (an array of dimension
sets, each an array of at most 30 member names whose values at the root are strings) and
``Metrics`` (at most 100 definitions of ``Name``, and optionally ``Unit`` from CloudWatch's
units and ``StorageResolution`` 1 or 60, each name a root member holding a number or an
array of at most 100 numbers).
"""

from __future__ import annotations

import json
import math
from typing import Any

# CloudWatch's units (MetricDatum.Unit in the CloudWatch API reference).
UNITS = {
    "Seconds", "Microseconds", "Milliseconds", "Bytes", "Kilobytes", "Megabytes", "Gigabytes",
    "Terabytes", "Bits", "Kilobits", "Megabits", "Gigabits", "Terabits", "Percent", "Count",
    "Bytes/Second", "Kilobytes/Second", "Megabytes/Second", "Gigabytes/Second",
    "Terabytes/Second", "Bits/Second", "Kilobits/Second", "Megabits/Second",
    "Gigabits/Second", "Terabits/Second", "Count/Second", "None",
}  # fmt: skip


def is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def spec_problems(line: str) -> list[str]:
    """What in one log line breaks the EMF specification (empty: a valid document)."""
    root = json.loads(line)
    if not isinstance(root, dict):
        return ["the root is not an object"]
    meta = root.get("_aws")
    if not isinstance(meta, dict):
        return ["no _aws object"]
    problems = []
    if not isinstance(meta.get("Timestamp"), int) or meta["Timestamp"] < 0:
        problems.append("Timestamp is not epoch milliseconds")
    directives = meta.get("CloudWatchMetrics")
    if not isinstance(directives, list) or not directives:
        return [*problems, "CloudWatchMetrics is not a non-empty array"]
    for directive in directives:
        if set(directive) != {"Namespace", "Dimensions", "Metrics"}:
            problems.append(f"directive members {sorted(directive)}")
            continue
        namespace = directive["Namespace"]
        if not isinstance(namespace, str) or not 1 <= len(namespace) <= 255:
            problems.append(f"namespace {namespace!r}")
        for dimension_set in directive["Dimensions"]:
            if not isinstance(dimension_set, list) or len(dimension_set) > 30:
                problems.append(f"dimension set {dimension_set!r}")
                continue
            for key in dimension_set:
                if not isinstance(root.get(key), str):
                    problems.append(f"dimension {key!r} has no string value at the root")
        metrics = directive["Metrics"]
        if not isinstance(metrics, list) or not 1 <= len(metrics) <= 100:
            problems.append("Metrics is not 1-100 definitions")
            continue
        for definition in metrics:
            if not set(definition) <= {"Name", "Unit", "StorageResolution"}:
                problems.append(f"metric definition members {sorted(definition)}")
            name = definition.get("Name")
            if not isinstance(name, str) or not 1 <= len(name) <= 255:
                problems.append(f"metric name {name!r}")
                continue
            if "Unit" in definition and definition["Unit"] not in UNITS:
                problems.append(f"unit {definition['Unit']!r}")
            if definition.get("StorageResolution", 60) not in (1, 60):
                problems.append("StorageResolution is not 1 or 60")
            value = root.get(name)
            values = value if isinstance(value, list) else [value]
            if not values or len(values) > 100 or not all(is_number(v) for v in values):
                problems.append(f"metric {name} has no number value at the root: {value!r}")
    return problems
