"""Minimal valid result and failure objects for store tests."""

from __future__ import annotations

from datetime import UTC, datetime

from radstream.schema import Failure, FailureInfo, ModelRef, PreprocessingRef, Result


def sample_result(study_id: str, image_id: str) -> Result:
    """A result with placeholder values."""
    return Result(
        execution_id="e",
        study_id=study_id,
        image_id=image_id,
        image_key=f"incoming/{study_id}/{image_id}.png",
        sidecar_key=f"incoming/{study_id}/{image_id}.json",
        view="PA",
        study_timestamp=datetime(2024, 1, 1, tzinfo=UTC),
        probabilities={"No Finding": 0.5},
        raw_outputs={"Atelectasis": 0.0},
        model=ModelRef(name="m", version="1", sha256="0" * 64, backend="onnxruntime"),
        preprocessing=PreprocessingRef(
            size=224,
            input_min=-1024,
            input_max=1024,
            channels=1,
            source_format="png",
            source_width=300,
            source_height=300,
            bit_depth=8,
            decode_scale=1,
        ),
        stage_ms={},
        pipeline_version="0",
        input_sha256={},
    )


def sample_failure(study_id: str, image_id: str) -> Failure:
    """A failure with placeholder values."""
    return Failure(
        execution_id="e",
        study_id=study_id,
        image_id=image_id,
        sidecar_key=f"incoming/{study_id}/{image_id}.json",
        error=FailureInfo(code="X", message="m", hint="h", stage="validate", retryable=False),
        attempts=1,
        failed_at=datetime(2024, 1, 1, tzinfo=UTC),
        pipeline_version="0",
    )
