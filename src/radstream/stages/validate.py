"""Stage 1, validate: parse the sidecar, check it against its upload key, find its image."""

from __future__ import annotations

import hashlib
from dataclasses import asdict, dataclass
from datetime import UTC, datetime

from radstream.errors import (
    ImageAmbiguous,
    ImageFileTooLarge,
    ImageMissing,
    ImageNotYetPresent,
    SidecarTooLarge,
    StudyIdInvalid,
    StudyIdMismatch,
)
from radstream.layout import (
    INCOMING,
    SIDECAR_SUFFIX,
    Bucket,
    is_dicom_drop,
    is_sidecar,
    upload_key,
)
from radstream.schema.dicom_sidecar import image_stem_from_header, sidecar_from_header
from radstream.schema.sidecar_parse import MAX_SIDECAR_BYTES, parse_sidecar
from radstream.stages.context import ExecutionContext, study_folder
from radstream.stages.ports import ObjectStore, StagePorts

__all__ = ["UploadKey", "ValidatedStudy", "parse_upload_key", "run", "study_folder", "validate"]


@dataclass(frozen=True)
class UploadKey:
    """The parts of ``incoming/{folder}/{stem}.json``."""

    folder: str
    stem: str
    key: str


def parse_upload_key(key: str) -> UploadKey:
    """Split a sidecar key; raise ``StudyIdInvalid`` if it is not ``incoming/{id}/{stem}.json``."""
    if not is_sidecar(key):
        raise StudyIdInvalid(
            f"sidecar key {key!r} is not {INCOMING}{{study_id}}/{{name}}{SIDECAR_SUFFIX}"
        )
    _, folder, name = key.split("/")
    return UploadKey(folder=folder, stem=name[: -len(SIDECAR_SUFFIX)], key=key)


@dataclass(frozen=True)
class ValidatedStudy:
    """What later stages need from the sidecar (no patient fields)."""

    study_id: str
    image_id: str
    sidecar_key: str
    image_key: str
    view: str
    study_timestamp: str
    expected_size: tuple[int | None, int | None] | None
    sidecar_sha256: str
    sidecar_bytes: int


def run(ports: StagePorts, context: ExecutionContext) -> ExecutionContext:
    """The ``validate`` stage: claim the upload, validate its sidecar, locate its image.

    An execution that loses the upload's claim (a duplicate event on AWS) is marked
    ``duplicate`` and touches nothing.
    """
    if not ports.claims.claim(context):
        return context.model_copy(update={"duplicate": True})
    waited = 0.0 if context.arrived_at is None else ports.clock() - context.arrived_at
    study = validate(
        ports.store,
        Bucket.IMAGES,
        context.key,
        waited_s=waited,
        image_wait_s=ports.options.image_wait_s,
        max_dicom_bytes=ports.options.max_file_bytes,
    )
    return context.model_copy(update={**asdict(study), "duplicate": False})


def validate(
    store: ObjectStore,
    bucket: str,
    key: str,
    *,
    waited_s: float,
    image_wait_s: float,
    max_dicom_bytes: int = 64 * 1024 * 1024,
) -> ValidatedStudy:
    """Validate the sidecar at ``bucket/key`` and locate its image.

    A DICOM file uploaded without a sidecar (``dicom/{folder}/{file}``) is its own
    trigger: see :func:`validate_dicom_drop`.

    ``waited_s`` is how long ago the sidecar arrived: while it is under ``image_wait_s`` a
    missing image is transient (``ImageNotYetPresent``, retried), after that it is final
    (``ImageMissing``).
    """
    if is_dicom_drop(key):
        return validate_dicom_drop(store, bucket, key, max_bytes=max_dicom_bytes)
    upload = parse_upload_key(key)
    size = store.size(bucket, key)
    if size is not None and size > MAX_SIDECAR_BYTES:
        # Checked before reading: a multi-gigabyte "sidecar" must not reach memory.
        raise SidecarTooLarge(f"sidecar is {size} bytes; the limit is {MAX_SIDECAR_BYTES}")
    data = store.get(bucket, key)
    sidecar = parse_sidecar(data)
    if sidecar.study_id != upload.folder:
        raise StudyIdMismatch(
            f"sidecar says study_id {sidecar.study_id!r} but was uploaded under "
            f"{upload_key(upload.folder, '')}"
        )
    image_key = _find_image(store, bucket, upload, waited_s=waited_s, image_wait_s=image_wait_s)
    return ValidatedStudy(
        study_id=sidecar.study_id,
        image_id=upload.stem,
        sidecar_key=key,
        image_key=image_key,
        view=sidecar.view.value,
        study_timestamp=sidecar.timestamp.isoformat(),
        expected_size=sidecar.expected_size(),
        sidecar_sha256=hashlib.sha256(data).hexdigest(),
        sidecar_bytes=len(data),
    )


def validate_dicom_drop(
    store: ObjectStore, bucket: str, key: str, *, max_bytes: int
) -> ValidatedStudy:
    """The study of a DICOM file that arrived without a sidecar: its header is the sidecar.

    Study id from StudyInstanceUID (or a hash of the AccessionNumber), image id from
    SOPInstanceUID, view from ViewPosition, timestamp from StudyDate/StudyTime
    (:mod:`radstream.schema.dicom_sidecar`). Never a patient field. A file that is not
    DICOM, or whose header lacks those UIDs, fails here with its code.
    """
    from radstream.imaging.dicom import read_dicom_header

    size = store.size(bucket, key)
    if size is not None and size > max_bytes:
        raise ImageFileTooLarge(
            f"the DICOM file has {size} bytes, the limit is {max_bytes}",
            file_bytes=size,
            max_file_bytes=max_bytes,
        )
    data = store.get(bucket, key)
    _, header = read_dicom_header(data, max_inflated_bytes=max_bytes)
    # Without a StudyDate the upload's own time stands in: the same on every re-run.
    info = store.head(bucket, key)
    received = datetime.fromtimestamp(info.modified, UTC) if info is not None else None
    sidecar = sidecar_from_header(header, received_at=received)
    document = sidecar.model_dump_json(exclude_none=True).encode()
    return ValidatedStudy(
        study_id=sidecar.study_id,
        image_id=image_stem_from_header(header),
        sidecar_key=key,
        image_key=key,
        view=sidecar.view.value,
        study_timestamp=sidecar.timestamp.isoformat(),
        expected_size=sidecar.expected_size(),
        # What the result records as the sidecar's checksum: the one the header gave.
        sidecar_sha256=hashlib.sha256(document).hexdigest(),
        sidecar_bytes=0,
    )


def _find_image(
    store: ObjectStore, bucket: str, upload: UploadKey, *, waited_s: float, image_wait_s: float
) -> str:
    base = upload_key(upload.folder, upload.stem)
    candidates = [
        k
        for k in store.list(bucket, base + ".")
        if k.rsplit(".", 1)[0] == base and not k.lower().endswith(SIDECAR_SUFFIX)
    ]
    if len(candidates) > 1:
        raise ImageAmbiguous(f"several images match {base}.*: {', '.join(candidates)}")
    if candidates:
        return candidates[0]
    if waited_s < image_wait_s:
        raise ImageNotYetPresent(f"no image {base}.* yet ({waited_s:.1f}s after the sidecar)")
    raise ImageMissing(
        f"no image {base}.* arrived within {image_wait_s:.0f}s of the sidecar",
        waited_s=round(waited_s, 1),
    )
