"""The object layout: which bucket holds what, under which key. The one place it is spelled.

Buckets are logical names; the local folder store maps each to a folder, the S3 store to a
bucket of the stack (``tensors`` to the S3 Express directory bucket when there is one, else
to the artifacts bucket). The stores, the IAM builder, the completion watchers, reconcile
and the benchmark all build and parse keys here, so an IAM grant cannot drift from the key
its stage writes.

========== ================================== ==============================================
bucket     key                                what
========== ================================== ==============================================
images     ``incoming/{study}/{image}``       an uploaded image
images     ``incoming/{study}/{stem}.json``   its sidecar: the trigger, written last
images     ``dicom/{folder}/{file}``          a DICOM file without a sidecar (a PACS drop):
                                              its own trigger; the header gives the study
results    ``results/{study}/{stem}.json``    one result per successful image
results    ``failed/{study}/{stem}.json``     one failure per failed image
artifacts  ``models/{file}``                  the model file (AWS, in-Lambda inference)
artifacts  ``claims/{digest}``                one claim per upload (AWS, at-least-once events)
artifacts  ``athena-results/…``               Athena query results (AWS)
tensors    ``tensors/{execution}.npy``        the tensor between prepare and infer (AWS)
telemetry  ``telemetry/dt=…/hour=…/*.parquet`` the telemetry lake
========== ================================== ==============================================
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import StrEnum

from radstream.errors import StoreKeyInvalid


class Bucket(StrEnum):
    """The logical buckets of a RadStream deployment."""

    IMAGES = "images"
    RESULTS = "results"
    TELEMETRY = "telemetry"
    ARTIFACTS = "artifacts"
    TENSORS = "tensors"


STORE_BUCKETS: tuple[str, ...] = (
    Bucket.IMAGES,
    Bucket.RESULTS,
    Bucket.TELEMETRY,
    Bucket.ARTIFACTS,
)
"""The buckets of the local folder store (tensors stay in memory there)."""

INCOMING = "incoming/"
DICOM_DROP = "dicom/"
RESULTS = "results/"
FAILED = "failed/"
MODELS = "models/"
CLAIMS = "claims/"
TENSORS = "tensors/"
ATHENA_RESULTS = "athena-results/"
TELEMETRY = "telemetry/"
SIDECAR_SUFFIX = ".json"


@dataclass(frozen=True)
class Objects:
    """A set of objects: every key under ``prefix`` in ``bucket``. IAM grants are built from these."""

    bucket: Bucket
    prefix: str

    def contains(self, bucket: str, key: str) -> bool:
        """Whether ``bucket``/``key`` is one of these objects."""
        return bucket == self.bucket and key.startswith(self.prefix)


UPLOADS = Objects(Bucket.IMAGES, INCOMING)
DICOM_DROPS = Objects(Bucket.IMAGES, DICOM_DROP)
RESULT_OBJECTS = Objects(Bucket.RESULTS, RESULTS)
FAILURE_OBJECTS = Objects(Bucket.RESULTS, FAILED)
MODEL_OBJECTS = Objects(Bucket.ARTIFACTS, MODELS)
CLAIM_OBJECTS = Objects(Bucket.ARTIFACTS, CLAIMS)
TENSOR_OBJECTS = Objects(Bucket.TENSORS, TENSORS)


def upload_key(study: str, name: str) -> str:
    """``incoming/{study}/{name}``: where an image or a sidecar is uploaded."""
    return f"{INCOMING}{study}/{name}"


def sidecar_key(study: str, stem: str) -> str:
    """``incoming/{study}/{stem}.json``."""
    return upload_key(study, f"{stem}{SIDECAR_SUFFIX}")


def result_key(study: str, stem: str) -> str:
    """``results/{study}/{stem}.json``."""
    return f"{RESULTS}{study}/{stem}.json"


def failure_key(study: str, stem: str) -> str:
    """``failed/{study}/{stem}.json``."""
    return f"{FAILED}{study}/{stem}.json"


def tensor_key(execution_id: str) -> str:
    """``tensors/{execution}.npy``."""
    return f"{TENSORS}{execution_id}.npy"


def claim_key(digest: str) -> str:
    """``claims/{digest}``."""
    return f"{CLAIMS}{digest}"


def model_key(file_name: str) -> str:
    """``models/{file}``."""
    return f"{MODELS}{file_name}"


def is_sidecar(key: str) -> bool:
    """Whether ``key`` is a sidecar upload: ``incoming/{study}/{stem}.json``, any case."""
    parts = key.split("/")
    return (
        len(parts) == 3 and f"{parts[0]}/" == INCOMING and parts[2].lower().endswith(SIDECAR_SUFFIX)
    )


def is_dicom_drop(key: str) -> bool:
    """Whether ``key`` is a sidecar-less DICOM upload: ``dicom/{folder}/{file}``."""
    parts = key.split("/")
    return len(parts) == 3 and f"{parts[0]}/" == DICOM_DROP and bool(parts[1]) and bool(parts[2])


def dicom_drop_key(folder: str, name: str) -> str:
    """``dicom/{folder}/{name}``: where a DICOM file without a sidecar is uploaded."""
    return f"{DICOM_DROP}{folder}/{name}"


def outcome_kind(key: str) -> str | None:
    """``"result"`` or ``"failure"`` for an outcome key, else None."""
    if key.startswith(RESULTS):
        return "result"
    if key.startswith(FAILED):
        return "failure"
    return None


def sidecar_key_for(outcome_key: str) -> str | None:
    """``results/{s}/{stem}.json`` or ``failed/{s}/{stem}.json`` → ``incoming/{s}/{stem}.json``."""
    parts = outcome_key.split("/")
    if len(parts) != 3 or outcome_kind(outcome_key) is None:
        return None
    return f"{INCOMING}{parts[1]}/{parts[2]}"


# --- key safety -------------------------------------------------------------------------

_SEGMENT_RE = re.compile(r"[^\x00-\x1f/\\]+")


def check_key(key: str) -> str:
    """Return ``key`` if it is a safe relative key, else raise ``StoreKeyInvalid``.

    Both stores check every key here: a key may never name a path outside its bucket
    folder (locally), nor carry control characters or empty segments (on S3).
    """
    if not key or len(key) > 1024 or key.startswith("/"):
        raise StoreKeyInvalid(f"object key {key!r} is empty, too long or absolute")
    for segment in key.split("/"):
        if segment in ("", ".", "..") or not _SEGMENT_RE.fullmatch(segment):
            raise StoreKeyInvalid(f"object key {key!r} has an unsafe segment {segment!r}")
    return key


def check_bucket(bucket: str, known: tuple[str, ...]) -> str:
    """Return ``bucket`` if it is one of ``known``, else raise ``StoreKeyInvalid``."""
    if bucket not in known:
        raise StoreKeyInvalid(f"unknown bucket {bucket!r}; buckets are {', '.join(known)}")
    return bucket
