"""The telemetry record: one row per stage per execution, one schema everywhere.

The same model feeds the local Parquet lake, Kinesis/Firehose, and the Glue table, so the
columns cannot drift apart. It has no field for patient data at all; ``study_id`` is the
study's opaque id, pseudonymised when ``telemetry.pseudonymise`` is on.
"""

from __future__ import annotations

from datetime import UTC, datetime
from enum import StrEnum

from pydantic import BaseModel, ConfigDict, Field


class StageStatus(StrEnum):
    """How one stage attempt ended."""

    OK = "ok"
    ERROR = "error"
    RETRY = "retry"


class TelemetryRecord(BaseModel):
    """One stage attempt of one execution."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    record_version: int = 1
    execution_id: str
    study_id: str = Field(description="opaque study id, pseudonymised where configured")
    stage: str
    status: StageStatus
    error_code: str | None = None
    start_ts: datetime = Field(description="UTC, millisecond precision")
    end_ts: datetime
    duration_ms: float = Field(ge=0)
    queue_wait_ms: float | None = Field(
        default=None, description="time waiting for a worker before this attempt's first stage"
    )
    attempt: int = Field(ge=1)
    batch_size: int = Field(default=1, ge=1)
    bytes_in: int = Field(default=0, ge=0)
    bytes_out: int = Field(default=0, ge=0)
    model_name: str | None = None
    model_version: str | None = None
    backend: str = Field(
        default="onnxruntime",
        description="where inference ran: onnxruntime (in process) or kserve:HOST:PORT",
    )
    config_id: str = "default"
    variant: str | None = None
    worker_id: str
    cold_start: bool = False
    memory_mb: int | None = None
    cost_usd: float | None = None
    pipeline_version: str

    @property
    def dt(self) -> str:
        """Partition key: the UTC date of ``start_ts``."""
        return self.start_ts.astimezone(UTC).strftime("%Y-%m-%d")

    @property
    def hour(self) -> str:
        """Partition key: the UTC hour of ``start_ts``."""
        return self.start_ts.astimezone(UTC).strftime("%H")
