"""What the stages leave in an execution's context, and the outcome objects built from it.

Both engines carry the same JSON-safe context from stage to stage (the local executor in
its checkpoints, Step Functions in its state), so the result and failure objects are built
here once, from that context, whatever engine ran the stages.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from radstream import PIPELINE_VERSION
from radstream.schema.outcome import Failure, FailureInfo, ModelRef, PreprocessingRef, Result
from radstream.stages import validate as validate_stage

if TYPE_CHECKING:
    # Types only: the store and record_failure Lambdas run without the imaging libraries.
    from radstream.imaging import Preprocessing
    from radstream.stages.prepare import PreparedStudy


def prepared_context(prepared: PreparedStudy, preprocessing: Preprocessing) -> dict[str, Any]:
    """What ``prepare`` adds to the context: how the tensor was made, and the image's hash."""
    image = prepared.image
    return {
        "preprocessing": PreprocessingRef(
            size=preprocessing.size,
            input_min=preprocessing.input_min,
            input_max=preprocessing.input_max,
            channels=preprocessing.channels,
            source_format=image.format,
            source_width=image.width,
            source_height=image.height,
            bit_depth=image.bit_depth,
            decode_scale=image.decode_scale,
        ).model_dump(),
        "image_sha256": prepared.image_sha256,
        "image_bytes": prepared.image_bytes,
    }


def build_result(execution_id: str, context: dict[str, Any], model: ModelRef) -> Result:
    """The result object of a study whose stages all succeeded."""
    return Result(
        execution_id=execution_id,
        study_id=context["study_id"],
        image_id=context["image_id"],
        image_key=context["image_key"],
        sidecar_key=context["sidecar_key"],
        view=context["view"],
        study_timestamp=datetime.fromisoformat(context["study_timestamp"]),
        probabilities=context["probabilities"],
        raw_outputs=context["raw_outputs"],
        model=model,
        preprocessing=PreprocessingRef.model_validate(context["preprocessing"]),
        stage_ms=dict(context.get("stage_ms", {})),
        pipeline_version=PIPELINE_VERSION,
        input_sha256={"image": context["image_sha256"], "sidecar": context["sidecar_sha256"]},
    )


def sidecar_stem(key: str) -> str:
    """The image stem of a sidecar key (``incoming/s1/img.json`` → ``img``)."""
    name = key.rsplit("/", 1)[-1]
    return name.rsplit(".", 1)[0] or "sidecar"


def build_failure(
    execution_id: str,
    sidecar_key: str,
    context: dict[str, Any],
    error: dict[str, Any],
    attempts: int,
) -> Failure:
    """The failure object of a study; ``error`` is a ``RadStreamError.to_dict()`` plus ``stage``.

    A sidecar that never validated has no ``study_id`` in the context, so the failure is
    filed under its upload folder (made safe by ``study_folder``).
    """
    return Failure(
        execution_id=execution_id,
        study_id=context.get("study_id") or validate_stage.study_folder(sidecar_key),
        image_id=context.get("image_id") or sidecar_stem(sidecar_key),
        sidecar_key=sidecar_key,
        error=FailureInfo(
            code=error["code"],
            message=error["message"],
            hint=error["hint"],
            stage=error["stage"],
            retryable=error["retryable"],
            details=error.get("details", {}),
        ),
        attempts=attempts,
        failed_at=datetime.now(UTC),
        pipeline_version=PIPELINE_VERSION,
    )
