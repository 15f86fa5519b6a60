"""What the stages leave in an execution's context, and the outcome objects built from it.

Both engines carry the same :class:`~radstream.stages.context.ExecutionContext` from stage
to stage (the local executor in its checkpoints, Step Functions in its state), so the
result and failure objects are built here once, from that context, whatever engine ran the
stages.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import TYPE_CHECKING, TypeVar

from radstream import PIPELINE_VERSION
from radstream.layout import is_dicom_drop
from radstream.schema.outcome import Failure, FailureInfo, ModelRef, PreprocessingRef, Result
from radstream.stages.context import ExecutionContext, StageError, study_folder

if TYPE_CHECKING:
    # Types only: the store and record_failure Lambdas run without the imaging libraries.
    from radstream.imaging import Preprocessing
    from radstream.stages.prepare import PreparedStudy


def prepared_context(prepared: PreparedStudy, preprocessing: Preprocessing) -> dict[str, object]:
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
        ),
        "image_sha256": prepared.image_sha256,
        "image_bytes": prepared.image_bytes,
    }


_T = TypeVar("_T")


def _required(value: _T | None, name: str) -> _T:
    if value is None:
        raise RuntimeError(f"the context has no {name}; an earlier stage did not run")
    return value


def build_result(context: ExecutionContext, model: ModelRef) -> Result:
    """The result object of a study whose stages all succeeded."""
    c = context
    return Result(
        execution_id=c.execution_id,
        study_id=_required(c.study_id, "study_id"),
        image_id=_required(c.image_id, "image_id"),
        image_key=_required(c.image_key, "image_key"),
        sidecar_key=_required(c.sidecar_key, "sidecar_key"),
        view=_required(c.view, "view"),
        study_timestamp=datetime.fromisoformat(_required(c.study_timestamp, "study_timestamp")),
        probabilities=_required(c.probabilities, "probabilities"),
        raw_outputs=_required(c.raw_outputs, "raw_outputs"),
        model=model,
        preprocessing=_required(c.preprocessing, "preprocessing"),
        stage_ms=dict(c.stage_ms),
        pipeline_version=PIPELINE_VERSION,
        input_sha256={
            "image": _required(c.image_sha256, "image_sha256"),
            "sidecar": _required(c.sidecar_sha256, "sidecar_sha256"),
        },
        view_mismatch=_view_mismatch(c),
    )


VIEW_MISMATCH = "view_mismatch"
"""The context key under which ``prepare`` leaves a DICOM ViewPosition that disagrees."""


def _view_mismatch(context: ExecutionContext) -> str | None:
    # Put by ``prepare`` as an extra key: older checkpoints and other engines lack it.
    value = context.extra(VIEW_MISMATCH)
    return value if isinstance(value, str) else None


def sidecar_stem(key: str) -> str:
    """The image stem of a sidecar key (``incoming/s1/img.json`` → ``img``)."""
    name = key.rsplit("/", 1)[-1]
    return name.rsplit(".", 1)[0] or "sidecar"


DROP_FOLDER_MARK = "dicom~"
"""Prefix of the study folder a DICOM drop's pre-validation failure is filed under. ``~``
is outside the study-id alphabet, so no sidecar upload's folder can ever carry it: the
failure of ``dicom/s1/a.dcm`` and that of ``incoming/s1/a.json`` never share a key."""


def unvalidated_outcome_ids(key: str) -> tuple[str, str]:
    """The study and image id a failure is filed under when its upload never validated:
    the upload's folder (made safe by ``study_folder``) and its file name's stem.

    A DICOM drop (``dicom/{folder}/{file}``) that fails before its header is read is filed
    under ``dicom~{folder}`` (see :data:`DROP_FOLDER_MARK`); once it validates, its outcome
    is keyed by the header's study and SOP instance instead, so ``store_result`` removes
    this key as well.
    """
    folder = study_folder(key)
    if is_dicom_drop(key):
        folder = DROP_FOLDER_MARK + folder
    return folder, sidecar_stem(key)


def build_failure(context: ExecutionContext, error: StageError, attempts: int) -> Failure:
    """The failure object of a study.

    A sidecar that never validated has no ``study_id`` in the context, so the failure is
    filed under its upload folder (:func:`unvalidated_outcome_ids`).
    """
    folder, stem = unvalidated_outcome_ids(context.key)
    return Failure(
        execution_id=context.execution_id,
        study_id=context.study_id or folder,
        image_id=context.image_id or stem,
        sidecar_key=context.key,
        error=FailureInfo.model_validate(error.model_dump(exclude={"attempt"})),
        attempts=attempts,
        failed_at=datetime.now(UTC),
        pipeline_version=PIPELINE_VERSION,
    )
