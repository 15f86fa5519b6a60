"""Stage 5, telemetry: build the per-stage record, with no patient field in it."""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass
from datetime import UTC, datetime

from radstream import PIPELINE_VERSION
from radstream.pricing import Pricing, stage_cost_usd
from radstream.schema.telemetry import StageStatus, TelemetryRecord
from radstream.settings import CostSettings, TelemetrySettings


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


@dataclass(frozen=True)
class StageRecorder:
    """One worker's (or Lambda container's) constants for its telemetry rows.

    Both engines build their rows here, so pseudonymisation and the per-stage cost are
    applied the same way whichever engine ran the stage.
    """

    telemetry: TelemetrySettings
    cost: CostSettings
    pricing: Pricing
    worker_id: str
    backend: str = "onnxruntime"

    def record(
        self,
        *,
        execution_id: str,
        study_id: str,
        stage: str,
        status: StageStatus,
        start_s: float,
        end_s: float,
        attempt: int,
        error_code: str | None = None,
        queue_wait_s: float | None = None,
        bytes_in: int = 0,
        model_name: str | None = None,
        model_version: str | None = None,
        cold_start: bool = False,
    ) -> TelemetryRecord:
        """The row of one stage attempt; ``study_id`` is pseudonymised here when configured."""
        if self.telemetry.pseudonymise:
            study_id = pseudonym(study_id, self.telemetry.pseudonym_key)
        cost = self.cost
        return stage_record(
            execution_id=execution_id,
            study_id=study_id,
            stage=stage,
            status=status,
            start_s=start_s,
            end_s=end_s,
            attempt=attempt,
            worker_id=self.worker_id,
            error_code=error_code,
            queue_wait_s=queue_wait_s,
            bytes_in=bytes_in,
            model_name=model_name,
            model_version=model_version,
            backend=self.backend,
            config_id=self.telemetry.config_id,
            variant=self.telemetry.variant,
            cold_start=cold_start,
            memory_mb=cost.memory_mb,
            cost_usd=stage_cost_usd(
                stage,
                (end_s - start_s) * 1000.0,
                self.pricing,
                memory_mb=cost.memory_mb,
                architecture=cost.architecture,
                storage_class=cost.storage_class,
                state_machine=cost.state_machine,
            ),
        )
