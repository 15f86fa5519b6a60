"""Hand-made telemetry records for lake tests."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from radstream import PIPELINE_VERSION
from radstream.schema.telemetry import StageStatus, TelemetryRecord


def record(**fields: Any) -> TelemetryRecord:
    """A telemetry record with defaults for every field the test does not care about."""
    start = fields.pop("start", datetime(2026, 3, 1, 10, 0, tzinfo=UTC))
    duration_ms = fields.pop("duration_ms", 10.0)
    base: dict[str, Any] = {
        "execution_id": "e0",
        "study_id": "s0",
        "stage": "validate",
        "status": StageStatus.OK,
        "start_ts": start,
        "end_ts": start + timedelta(milliseconds=duration_ms),
        "duration_ms": duration_ms,
        "attempt": 1,
        "worker_id": "w",
        "pipeline_version": PIPELINE_VERSION,
    }
    return TelemetryRecord(**{**base, **fields})
