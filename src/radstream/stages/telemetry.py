"""Stage 5, telemetry: build the per-stage record, with no patient field in it."""

from __future__ import annotations

import hashlib
import hmac
from datetime import UTC, datetime

from radstream import PIPELINE_VERSION
from radstream.schema.telemetry import StageStatus, TelemetryRecord


def pseudonym(study_id: str, key: str) -> str:
    """Keyed, stable pseudonym of a study id (HMAC-SHA256, 20 hex characters)."""
    return "p-" + hmac.new(key.encode(), study_id.encode(), hashlib.sha256).hexdigest()[:20]


def _ts(epoch_s: float) -> datetime:
    # Millisecond precision: the lake stores timestamp(ms).
    return datetime.fromtimestamp(round(epoch_s, 3), tz=UTC)


def stage_record(
    *,
    execution_id: str,
    study_id: str,
    stage: str,
    status: StageStatus,
    start_s: float,
    end_s: float,
    attempt: int,
    worker_id: str,
    error_code: str | None = None,
    queue_wait_s: float | None = None,
    bytes_in: int = 0,
    bytes_out: int = 0,
    model_name: str | None = None,
    model_version: str | None = None,
    backend: str = "onnxruntime",
    config_id: str = "default",
    variant: str | None = None,
    cold_start: bool = False,
    batch_size: int = 1,
    memory_mb: int | None = None,
    cost_usd: float | None = None,
) -> TelemetryRecord:
    """One telemetry row. Times are epoch seconds (``time.time()``)."""
    return TelemetryRecord(
        execution_id=execution_id,
        study_id=study_id,
        stage=stage,
        status=status,
        error_code=error_code,
        start_ts=_ts(start_s),
        end_ts=_ts(end_s),
        duration_ms=max(0.0, (end_s - start_s) * 1000.0),
        queue_wait_ms=None if queue_wait_s is None else queue_wait_s * 1000.0,
        attempt=attempt,
        batch_size=batch_size,
        bytes_in=bytes_in,
        bytes_out=bytes_out,
        model_name=model_name,
        model_version=model_version,
        backend=backend,
        config_id=config_id,
        variant=variant,
        worker_id=worker_id,
        cold_start=cold_start,
        memory_mb=memory_mb,
        cost_usd=cost_usd,
        pipeline_version=PIPELINE_VERSION,
    )
