"""Typed errors with stable codes.

Every failure a user can cause or meet has its own class here. Each class carries:

* ``code``: a stable, upper-case identifier that ends up in failure objects, telemetry
  and SQL. Codes are part of the public contract: never rename one, only add.
* ``retryable``: whether the executor should retry the stage (transient trouble) or
  fail the execution at once (invalid input never gets better by retrying).
* ``hint``: what a person should do next.

Stages raise these; engines (local executor, Step Functions) decide what to do with them
by ``retryable`` alone, so the two engines cannot disagree.
"""

from __future__ import annotations

import traceback
from pathlib import Path
from typing import Any, ClassVar


class RadStreamError(Exception):
    """Base class of every RadStream error. Subclasses set ``code``, ``retryable``, ``hint``."""

    code: ClassVar[str] = "INTERNAL_ERROR"
    retryable: ClassVar[bool] = False
    hint: ClassVar[str] = "This is a bug in RadStream; please report it with the execution id."

    def __init__(self, message: str, **details: Any) -> None:
        super().__init__(message)
        self.message = message
        self.details = details

    def to_dict(self) -> dict[str, Any]:
        """Serialisable form used in failure objects and Step Functions error causes."""
        return {
            "code": self.code,
            "message": self.message,
            "hint": self.hint,
            "retryable": self.retryable,
            "details": self.details,
        }

    def __str__(self) -> str:
        return f"[{self.code}] {self.message} ({self.hint})"


class InvalidInputError(RadStreamError):
    """Bad input: the study cannot succeed, so it is never retried."""

    retryable: ClassVar[bool] = False


class TransientError(RadStreamError):
    """Trouble that may pass (a busy endpoint, an image not uploaded yet): retried with backoff."""

    retryable: ClassVar[bool] = True
    # True when the stage bounds its own retries (by a deadline) and turns the error into
    # a final one itself; the executor then does not count these attempts.
    self_bounded: ClassVar[bool] = False
    # True when the trouble lasts as long as an outage does (an endpoint being restarted),
    # however many attempts fit into it: the executor then retries for a time budget
    # (engine.outage_budget_s) instead of a number of attempts.
    time_bounded: ClassVar[bool] = False


# --- sidecar --------------------------------------------------------------------------


class SidecarInvalidJson(InvalidInputError):
    """The sidecar is not parseable JSON."""

    code = "SIDECAR_INVALID_JSON"
    hint = "Fix the JSON syntax of the sidecar (a validator such as `python -m json.tool` shows where)."


class SidecarNotUtf8(InvalidInputError):
    """The sidecar bytes are not UTF-8."""

    code = "SIDECAR_NOT_UTF8"
    hint = "Save the sidecar as UTF-8 text."


class SidecarTooLarge(InvalidInputError):
    """The sidecar is over the size limit."""

    code = "SIDECAR_TOO_LARGE"
    hint = "Keep sidecars under 1 MiB; put bulky annotations in a separate object."


class SidecarTooDeep(InvalidInputError):
    """The sidecar nests objects or arrays deeper than allowed."""

    code = "SIDECAR_TOO_DEEP"
    hint = "Flatten the sidecar: nesting deeper than 32 levels is refused."


class SidecarNotObject(InvalidInputError):
    """The sidecar's top-level JSON value is not an object."""

    code = "SIDECAR_NOT_OBJECT"
    hint = 'The sidecar must be a JSON object such as {"study_id": ..., "view": ..., ...}.'


class SidecarMissingField(InvalidInputError):
    """A required sidecar field is absent."""

    code = "SIDECAR_MISSING_FIELD"
    hint = "Add the missing field(s); required are study_id, view and timestamp."


class SidecarInvalidField(InvalidInputError):
    """A sidecar field has the wrong type or an unacceptable value."""

    code = "SIDECAR_INVALID_FIELD"
    hint = "Correct the field named in the message; `radstream schema sidecar` shows every type."


class StudyIdInvalid(InvalidInputError):
    """The study id is not a safe identifier (path characters, wrong length)."""

    code = "STUDY_ID_INVALID"
    hint = "Use 1-64 characters from A-Z, a-z, 0-9, '_', '-' and '.' (a DICOM UID) for study_id."


class StudyIdMismatch(InvalidInputError):
    """The sidecar's study id differs from the folder it was uploaded under."""

    code = "STUDY_ID_MISMATCH"
    hint = "Upload the study under incoming/{study_id}/ using the sidecar's own study_id."


class StudyConflict(InvalidInputError):
    """An upload would replace a different image already stored under the same study and name."""

    code = "STUDY_CONFLICT"
    hint = (
        "Two files claim the same study_id and file name: give one a different study_id "
        "(or file name); to replace a stored image that has no outcome yet on purpose, "
        "upload with --replace."
    )


# --- image ----------------------------------------------------------------------------


class ImageNotYetPresent(TransientError):
    """The sidecar arrived but its image has not (yet): retried for a bounded time."""

    code = "IMAGE_NOT_YET_PRESENT"
    hint = "Upload the image before its sidecar; the pipeline waits a bounded time for it."
    self_bounded = True


class ImageMissing(InvalidInputError):
    """The image never arrived within the bounded wait."""

    code = "IMAGE_MISSING"
    hint = (
        "Upload the image under the same incoming/{study_id}/ folder and stem as the sidecar, "
        "then put the sidecar again: that retries the study."
    )


class ImageAmbiguous(InvalidInputError):
    """More than one image matches the sidecar's stem."""

    code = "IMAGE_AMBIGUOUS"
    hint = "Upload exactly one image per sidecar stem (e.g. a.png and a.json, not a.png and a.jpg)."


class ImageEmpty(InvalidInputError):
    """The image file has zero bytes."""

    code = "IMAGE_EMPTY"
    hint = "The upload was empty; upload the image again, then its sidecar (that retries it)."


class ImageFileTooLarge(InvalidInputError):
    """The image file is over the file-size limit."""

    code = "IMAGE_FILE_TOO_LARGE"
    hint = "Compress the image or raise imaging.max_file_bytes in radstream.toml."


class ImageTooLarge(InvalidInputError):
    """The image declares more pixels than the limit (checked before decoding)."""

    code = "IMAGE_TOO_LARGE"
    hint = "Downscale the image or raise imaging.max_pixels in radstream.toml."


class ImageUnsupportedFormat(InvalidInputError):
    """The bytes are not a PNG, JPEG or DICOM image."""

    code = "IMAGE_UNSUPPORTED_FORMAT"
    hint = "Send PNG (8/16-bit), JPEG or DICOM."


class ImageFormatMismatch(InvalidInputError):
    """The file extension does not match the content."""

    code = "IMAGE_FORMAT_MISMATCH"
    hint = "Name the file for what it is (.png, .jpg/.jpeg, .dcm)."


class ImageTruncated(InvalidInputError):
    """The image stream ends early."""

    code = "IMAGE_TRUNCATED"
    hint = "The file is incomplete; upload it again, then its sidecar (that retries it)."


class ImageUndecodable(InvalidInputError):
    """The image is of a known format but cannot be decoded."""

    code = "IMAGE_UNDECODABLE"
    hint = "Re-export the image; it is corrupt or uses an unsupported encoding."


class ImageTooComplex(InvalidInputError):
    """Decoding would take more work than allowed (a JPEG with too many scans)."""

    code = "IMAGE_TOO_COMPLEX"
    hint = (
        "Re-save the image as a baseline (non-progressive) JPEG or as PNG; the number of "
        "progressive scans is limited (100, ten times what encoders write) to bound decode time."
    )


class ImageSizeMismatch(InvalidInputError):
    """The sidecar's image_size disagrees with the image."""

    code = "IMAGE_SIZE_MISMATCH"
    hint = "Fix image_size in the sidecar or upload the image it describes."


class ImageTooSmall(InvalidInputError):
    """The image is smaller than the model input on its short side."""

    code = "IMAGE_TOO_SMALL"
    hint = "Send an image at least as large as the model input (224 px) on its short side."


class DicomNoPixelData(InvalidInputError):
    """A DICOM file without a Pixel Data element."""

    code = "DICOM_NO_PIXEL_DATA"
    hint = "Send a DICOM image object (it has Pixel Data), not a report or structured document."


class DicomUnsupportedTransferSyntax(InvalidInputError):
    """A DICOM encoding that this installation cannot decode."""

    code = "DICOM_UNSUPPORTED_TRANSFER_SYNTAX"
    hint = (
        "Install the decoder plugins that come with RadStream (pip install radstream: "
        "pylibjpeg, pylibjpeg-openjpeg, pylibjpeg-rle, pyjpegls, python-gdcm), or send "
        "the study uncompressed."
    )


class ModalityUnsupported(InvalidInputError):
    """A DICOM image that is not a projection radiograph (Modality other than CR, DX, RG)."""

    code = "MODALITY_UNSUPPORTED"
    hint = (
        "Send chest radiographs (Modality CR, DX or RG); to classify other DICOM images "
        "anyway, set imaging.require_chest = false."
    )


class BodyPartUnsupported(InvalidInputError):
    """A DICOM radiograph whose BodyPartExamined names a body part other than the chest."""

    code = "BODY_PART_UNSUPPORTED"
    hint = (
        "The models read chest X-rays only; send the chest image of the study, or, if the "
        "header is wrong, fix BodyPartExamined (or set imaging.require_chest = false)."
    )


# --- model and engine -----------------------------------------------------------------


class ModelUnavailable(TransientError):
    """The model cannot be reached or loaded right now."""

    code = "MODEL_UNAVAILABLE"
    hint = "Check the model file or endpoint; the executor retries with backoff."
    time_bounded = True


class ModelFileInvalid(InvalidInputError):
    """The model file is missing metadata or is not a usable ONNX model."""

    code = "MODEL_FILE_INVALID"
    hint = (
        "Register the model with `radstream model import` or rebuild with `radstream model build`."
    )


class ModelOutputInvalid(RadStreamError):
    """The model returned non-finite or wrongly shaped outputs."""

    code = "MODEL_OUTPUT_INVALID"
    hint = "Check that the model matches its declared labels and input range."


class ExecutionAbandoned(RadStreamError):
    """Workers died repeatedly while running this execution."""

    code = "EXECUTION_ABANDONED"
    hint = "A worker crashed on this study several times; inspect the image, then re-upload."


class StoreConflict(TransientError):
    """Another conditional write to the same object was in flight (S3 answered 409)."""

    code = "STORE_CONFLICT"
    hint = "Transient: retried with backoff. If it persists, two executions race for one upload."


class StoreAccessDenied(RadStreamError):
    """The object store refused the request (S3 403): a role lacks a permission."""

    code = "STORE_ACCESS_DENIED"
    hint = (
        "The stage's role may not do this, or (without s3:ListBucket) the object does not "
        "exist: S3 answers 403 for both. Check the key, then the role in the template."
    )


class StoreKeyInvalid(RadStreamError):
    """An object key that would escape its bucket or is otherwise unsafe."""

    code = "STORE_KEY_INVALID"
    hint = "Use keys made of path segments without '..', empty parts or a leading '/'."


class StoreObjectMissing(RadStreamError):
    """An object that should exist does not."""

    code = "STORE_OBJECT_MISSING"
    hint = "Check the bucket and key; the object may have been deleted."


class StoreUnavailable(TransientError):
    """The object store cannot be written or read right now (read-only, disk full, denied)."""

    code = "STORE_UNAVAILABLE"
    hint = (
        "Free space on, or make writable again, the folder named in the message; the "
        "stage is retried with backoff for engine.outage_budget_s, then the study fails."
    )
    time_bounded = True


class LakeUnavailable(TransientError):
    """The telemetry lake cannot be written right now; records are kept and written later."""

    code = "LAKE_UNAVAILABLE"
    hint = (
        "Free space on, or make writable again, the lake folder; telemetry is buffered "
        "(bounded) meanwhile and what had to be dropped is counted in the log."
    )
    time_bounded = True


class DatabaseUnavailable(TransientError):
    """The engine database cannot be written or opened (disk full, read-only, locked)."""

    code = "DATABASE_UNAVAILABLE"
    hint = (
        "Free space on, or make writable again, the disk of the data directory "
        "(engine.db); workers wait and retry, nothing already recorded is lost."
    )
    time_bounded = True


class ConfigInvalid(RadStreamError):
    """Settings that cannot work together."""

    code = "CONFIG_INVALID"
    hint = "Fix radstream.toml or the RADSTREAM_* variable named in the message."


# --- AWS backend ----------------------------------------------------------------------


class StackNotFound(RadStreamError):
    """The named CloudFormation stack does not exist (or cannot be reached)."""

    code = "STACK_NOT_FOUND"
    hint = "Check --stack, --region and --endpoint-url; `radstream aws deploy --stack NAME` creates it."


class StackInUse(RadStreamError):
    """A stack an A/B run would deploy over and destroy exists and was not made by that run's
    ``ab run --stack`` (it lacks the ``radstream:ab`` tag of the same prefix)."""

    code = "STACK_IN_USE"
    hint = (
        "Choose another --stack prefix: `ab run --stack` reuses and destroys only stacks "
        "it made itself, never one deployed otherwise."
    )


class DeployFailed(RadStreamError):
    """A stack create, update or delete did not complete."""

    code = "DEPLOY_FAILED"
    hint = "Read the stack events printed above; fix the cause and run the command again."


class PackageTooLarge(RadStreamError):
    """A Lambda package (with its layers) exceeds Lambda's size limits."""

    code = "PACKAGE_TOO_LARGE"
    hint = "Drop dependencies the stage does not import, or deploy that stage as a container image."


class StageTimedOut(RadStreamError):
    """A stage ran out of time (its Lambda or Step Functions task timed out)."""

    code = "STAGE_TIMEOUT"
    hint = "Raise the stage's memory (more memory also means more CPU) or its timeout, then re-upload the sidecar."


class StageCrashed(RadStreamError):
    """A stage failed outside RadStream's own error handling (out of memory, a runtime fault)."""

    code = "STAGE_CRASHED"
    hint = "Read the stage function's CloudWatch log for this execution; re-upload the sidecar once fixed."


class QueryFailed(RadStreamError):
    """An Athena query failed or was cancelled."""

    code = "QUERY_FAILED"
    hint = "Read Athena's reason above; check the query's parameters and the workgroup."


def all_error_classes() -> list[type[RadStreamError]]:
    """Every concrete error class, for docs and for the code-uniqueness test."""
    seen: list[type[RadStreamError]] = []
    stack: list[type[RadStreamError]] = [RadStreamError]
    while stack:
        cls = stack.pop()
        seen.append(cls)
        stack.extend(cls.__subclasses__())
    return [c for c in seen if c not in (InvalidInputError, TransientError)]


TRACE_FRAMES = 8
"""Frames of an unexpected exception's traceback kept in the failure's ``details``."""


def error_from_exception(exc: BaseException) -> RadStreamError:
    """Wrap an unexpected exception so that every failure carries a code.

    An exception RadStream did not raise keeps a trimmed traceback in ``details["trace"]``:
    the innermost frames as ``file:line in function``, without locals or the exception's
    text beyond the message, so the failure object says where the bug is and carries no
    data the code was handling.
    """
    if isinstance(exc, RadStreamError):
        return exc
    frames = traceback.extract_tb(exc.__traceback__)[-TRACE_FRAMES:]
    trace = [f"{Path(f.filename).name}:{f.lineno} in {f.name}" for f in frames]
    return RadStreamError(f"unexpected {type(exc).__name__}: {exc}", trace=trace)
