"""Data contracts shared by every engine: sidecar, result, failure and telemetry record."""

from pydantic import BaseModel

from radstream.schema.outcome import Failure, FailureInfo, ModelRef, PreprocessingRef, Result
from radstream.schema.sidecar import (
    PATIENT_FIELDS,
    STUDY_ID_PATTERN,
    ImageSize,
    Sidecar,
    View,
    is_safe_study_id,
)
from radstream.schema.telemetry import StageStatus, TelemetryRecord

SCHEMAS: dict[str, type[BaseModel]] = {
    "sidecar": Sidecar,
    "result": Result,
    "failure": Failure,
    "telemetry": TelemetryRecord,
}

__all__ = [
    "PATIENT_FIELDS",
    "SCHEMAS",
    "STUDY_ID_PATTERN",
    "Failure",
    "FailureInfo",
    "ImageSize",
    "ModelRef",
    "PreprocessingRef",
    "Result",
    "Sidecar",
    "StageStatus",
    "TelemetryRecord",
    "View",
    "is_safe_study_id",
]
