"""Upload studies into the pipeline: image first, then its sidecar (the trigger).

The uploader never decides validity: a sidecar it cannot parse is uploaded all the same,
under the file stem as study folder, so that the pipeline records the failure.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

from radstream.layout import Bucket, dicom_drop_key, sidecar_key, upload_key
from radstream.loadgen.study import Study
from radstream.schema.sidecar import is_safe_study_id
from radstream.schema.sidecar_parse import MAX_SIDECAR_BYTES, MAX_SIDECAR_DEPTH, json_depth
from radstream.stages.ports import ObjectInfo, ObjectStore

IMAGE_SUFFIXES = frozenset({".png", ".jpg", ".jpeg", ".jpe", ".dcm", ".dicom"})
_UNSAFE = re.compile(r"[^A-Za-z0-9_-]")


@dataclass(frozen=True)
class StudyFiles:
    """An image and its sidecar on disk (``image`` is None for an orphan sidecar)."""

    image: Path | None
    sidecar: Path


DICOM_MAGIC_OFFSET = 128
DICOM_MAGIC = b"DICM"
DICOM_UPLOAD_SUFFIX = ".dcm"
"""Added to the upload name of a DICOM file recognised by content (``IM0001`` →
``IM0001.dcm``): the pipeline finds an image by its stem and an extension."""


def is_dicom_file(path: Path) -> bool:
    """True if ``path`` starts with the DICOM preamble: 128 bytes, then ``DICM``."""
    try:
        with open(path, "rb") as fh:
            head = fh.read(DICOM_MAGIC_OFFSET + len(DICOM_MAGIC))
    except OSError:
        return False
    return head[DICOM_MAGIC_OFFSET:] == DICOM_MAGIC


def is_dicom_image(path: Path) -> bool:
    """A DICOM file by extension (``.dcm``, ``.dicom``) or by content (the preamble)."""
    return path.suffix.lower() in (".dcm", ".dicom") or is_dicom_file(path)


def upload_dicom_drop(store: ObjectStore, path: Path) -> ObjectInfo:
    """Upload a DICOM file that has no sidecar to ``dicom/{folder}/{name}``, where it is its
    own trigger (its header gives the study). The folder is the file's parent, made safe."""
    folder = _UNSAFE.sub("_", path.parent.name)[:64] or "drop"
    name = re.sub(r"[^A-Za-z0-9._-]", "_", path.name)[:128].lstrip(".") or "image"
    return store.put(Bucket.IMAGES, dicom_drop_key(folder, name), path.read_bytes())


def _pairing_stem(path: Path) -> Path:
    """What an image pairs with its sidecar on: the name without a known image extension
    (``a.png`` → ``a``), or the whole name of a file recognised by content (``IM0001``, or a
    UID such as ``1.2.840.1.5``, whose last dot does not start an extension)."""
    return path.with_suffix("") if path.suffix.lower() in IMAGE_SUFFIXES else path


def sidecar_path_for(image: Path) -> Path:
    """Where the sidecar of ``image`` is expected: ``a.png`` → ``a.json``, ``IM0001`` →
    ``IM0001.json``."""
    stem = _pairing_stem(image)
    return stem.parent / f"{stem.name}.json"


def find_studies(paths: Iterable[Path]) -> tuple[list[StudyFiles], list[Path]]:
    """Pairs ``{stem}.{png,jpg,dcm}`` + ``{stem}.json`` under files or folders.

    A file with another extension, or none (``IM0001``, as PACS exports name them), is an
    image when its content is DICOM (the ``DICM`` preamble); its sidecar is ``IM0001.json``.
    Returns the studies, and the images that have no sidecar (nothing to trigger them).
    A sidecar with no image is still a study: the pipeline reports it as ``IMAGE_MISSING``.
    """
    files: list[Path] = []
    for path in paths:
        files.extend(sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path])
    sidecars = {p.with_suffix(""): p for p in files if p.suffix.lower() == ".json"}
    images = {
        _pairing_stem(p): p
        for p in files
        if p.suffix.lower() in IMAGE_SUFFIXES or (p.suffix.lower() != ".json" and is_dicom_file(p))
    }
    studies = [StudyFiles(image=images.get(stem), sidecar=sc) for stem, sc in sidecars.items()]
    orphans = [img for stem, img in images.items() if stem not in sidecars]
    return studies, orphans


def study_folder_for(sidecar: bytes, fallback_stem: str) -> str:
    """The upload folder: the sidecar's study_id if it is readable and safe, else the stem."""
    try:
        text = sidecar.decode("utf-8-sig")
        # The same limits as the pipeline, so a hostile file cannot crash the uploader.
        parsed = (
            json.loads(text)
            if len(sidecar) <= MAX_SIDECAR_BYTES and json_depth(text) <= MAX_SIDECAR_DEPTH
            else None
        )
        study_id = parsed.get("study_id") if isinstance(parsed, dict) else None
    except (ValueError, RecursionError):  # UnicodeDecodeError and JSONDecodeError included
        study_id = None
    if isinstance(study_id, str) and is_safe_study_id(study_id):
        return study_id
    return _UNSAFE.sub("_", fallback_stem)[:64] or "study"


def upload_study(
    store: ObjectStore,
    *,
    folder: str,
    image_name: str,
    image: bytes | None,
    sidecar: bytes,
) -> ObjectInfo:
    """Put the image (unless None), then the sidecar named after the image's stem.

    Returns the sidecar's object info: its key and ETag identify the execution.
    """
    stem = (
        Path(image_name).stem if Path(image_name).suffix.lower() in IMAGE_SUFFIXES else image_name
    )
    if image is not None:
        store.put(Bucket.IMAGES, upload_key(folder, image_name), image)
    return store.put(Bucket.IMAGES, sidecar_key(folder, stem), sidecar)


def upload_generated(store: ObjectStore, study: Study) -> ObjectInfo:
    """Upload a generated study under ``incoming/{study_id}/``; an empty ``image_name``
    means its image never arrives (only the sidecar is put)."""
    return upload_study(
        store,
        folder=study.study_id,
        image_name=study.image_name or study.study_id,
        image=study.image if study.image_name else None,
        sidecar=study.sidecar,
    )


def upload_files(store: ObjectStore, studies: Iterable[StudyFiles]) -> Iterator[ObjectInfo]:
    """Upload studies found on disk, yielding each sidecar's object info."""
    for study in studies:
        sidecar = study.sidecar.read_bytes()
        folder = study_folder_for(sidecar, study.sidecar.stem)
        if study.image is None:
            yield upload_study(
                store, folder=folder, image_name=study.sidecar.stem, image=None, sidecar=sidecar
            )
            continue
        name = study.image.name
        if study.image.suffix.lower() not in IMAGE_SUFFIXES:  # DICOM recognised by content
            name += DICOM_UPLOAD_SUFFIX
        yield upload_study(
            store, folder=folder, image_name=name, image=study.image.read_bytes(), sidecar=sidecar
        )
