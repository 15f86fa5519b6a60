"""Stage 1, validate: parse the sidecar, check it against its upload key, find its image."""

from __future__ import annotations

import hashlib
from dataclasses import asdict, dataclass
from typing import Any

from radstream.errors import (
    ImageAmbiguous,
    ImageMissing,
    ImageNotYetPresent,
    SidecarTooLarge,
    StudyIdInvalid,
    StudyIdMismatch,
)
from radstream.schema.sidecar import is_safe_study_id
from radstream.schema.sidecar_parse import MAX_SIDECAR_BYTES, parse_sidecar
from radstream.stages.ports import ObjectStore

INCOMING = "incoming"


@dataclass(frozen=True)
class UploadKey:
    """The parts of ``incoming/{folder}/{stem}.json``."""

    folder: str
    stem: str
    key: str


def parse_upload_key(key: str) -> UploadKey:
    """Split a sidecar key; raise ``StudyIdInvalid`` if it is not ``incoming/{id}/{stem}.json``."""
    parts = key.split("/")
    if len(parts) != 3 or parts[0] != INCOMING or not parts[2].lower().endswith(".json"):
        raise StudyIdInvalid(f"sidecar key {key!r} is not incoming/{{study_id}}/{{name}}.json")
    stem = parts[2][: -len(".json")]
    return UploadKey(folder=parts[1], stem=stem, key=key)


def study_folder(key: str) -> str:
    """Best-effort study folder of a key, for naming failure objects of unparseable sidecars.

    An unsafe folder name is replaced by ``invalid-{hash}``: still distinct per folder, so
    two such uploads never share (and overwrite) one failure object.
    """
    parts = key.split("/")
    folder = parts[1] if len(parts) >= 3 else key
    if is_safe_study_id(folder):
        return folder
    return "invalid-" + hashlib.sha256(folder.encode()).hexdigest()[:16]


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

    def to_context(self) -> dict[str, Any]:
        """JSON-safe checkpoint form."""
        return asdict(self)

    @classmethod
    def from_context(cls, context: dict[str, Any]) -> ValidatedStudy:
        """Rebuild from a checkpoint."""
        size = context.get("expected_size")
        fields = {k: context[k] for k in cls.__dataclass_fields__ if k != "expected_size"}
        return cls(**fields, expected_size=tuple(size) if size is not None else None)


def validate(
    store: ObjectStore,
    bucket: str,
    key: str,
    *,
    waited_s: float,
    image_wait_s: float,
) -> ValidatedStudy:
    """Validate the sidecar at ``bucket/key`` and locate its image.

    ``waited_s`` is how long ago the sidecar arrived: while it is under ``image_wait_s`` a
    missing image is transient (``ImageNotYetPresent``, retried), after that it is final
    (``ImageMissing``).
    """
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
            f"incoming/{upload.folder}/"
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


def _find_image(
    store: ObjectStore, bucket: str, upload: UploadKey, *, waited_s: float, image_wait_s: float
) -> str:
    base = f"{INCOMING}/{upload.folder}/{upload.stem}"
    candidates = [
        k
        for k in store.list(bucket, base + ".")
        if k.rsplit(".", 1)[0] == base and not k.lower().endswith(".json")
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
