"""Result and failure objects: the two terminal outcomes of a study.

Exactly one of them exists per execution. Success rate is computed from these objects,
never from execution status.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field


class ModelRef(BaseModel):
    """Which model produced a result, pinned by file hash."""

    name: str
    version: str
    sha256: str
    backend: str = Field(description="onnxruntime or an endpoint URL's scheme://host")
    trained: bool | None = Field(
        default=None,
        description="false for the untrained stand-in (its probabilities mean nothing); "
        "null in results written before the flag existed",
    )


class PreprocessingRef(BaseModel):
    """How the image was turned into a tensor."""

    size: int
    input_min: float
    input_max: float
    channels: int
    source_format: str
    source_width: int
    source_height: int
    bit_depth: int
    decode_scale: int


class Result(BaseModel):
    """``results/{study_id}/{image_stem}.json``: the classification of one image."""

    model_config = ConfigDict(extra="forbid")

    schema_version: int = 1
    execution_id: str
    study_id: str
    image_id: str = Field(description="image stem, unique within the study")
    image_key: str
    sidecar_key: str
    view: str
    study_timestamp: datetime
    probabilities: dict[str, float | None] = Field(
        description="14 CheXpert labels; null where the model has no such output"
    )
    raw_outputs: dict[str, float] = Field(description="the model's logits, by its own labels")
    model: ModelRef
    preprocessing: PreprocessingRef
    stage_ms: dict[str, float]
    pipeline_version: str
    input_sha256: dict[str, str] = Field(description="sha256 of image and sidecar bytes")
    view_mismatch: str | None = Field(
        default=None, description="the DICOM ViewPosition, where it names another view"
    )


class FailureInfo(BaseModel):
    """The error that ended an execution."""

    code: str
    message: str
    hint: str
    stage: str
    retryable: bool
    details: dict[str, Any] = Field(default_factory=dict)


class Failure(BaseModel):
    """``failed/{study_id}/{image_stem}.json``: why a study produced no result."""

    model_config = ConfigDict(extra="forbid")

    schema_version: int = 1
    execution_id: str
    study_id: str
    image_id: str
    sidecar_key: str
    error: FailureInfo
    attempts: int
    failed_at: datetime
    pipeline_version: str
