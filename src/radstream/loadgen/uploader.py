"""Upload studies into the pipeline: image first, then its sidecar (the trigger).

The uploader never decides validity: a sidecar it cannot parse is uploaded all the same,
under the file stem as study folder, so that the pipeline records the failure.

It never loses or leaks a file either:

* A study id and file name that already hold a *different* image are refused as
  ``STUDY_CONFLICT`` when that image was uploaded earlier in the same upload, or is stored
  without an outcome yet (in flight): an overwritten image would never be processed, and
  its study would report another's result. An image whose study has an outcome may be
  replaced (a fixed image sent again); ``replace`` allows any replacement.
* Symbolic links are not followed unless asked (``follow_symlinks``), and never to a file
  outside the folders given: a link to ``/etc/passwd`` is not an X-ray to copy.
* Files that cannot be uploaded (a name with a newline, a FIFO, an unreadable file) are
  reported and the rest goes on; files of one stem that compete (``a.jpg`` beside ``a.png``,
  ``a.JSON`` beside ``a.json``) are all listed: competing images are all uploaded, so that
  the pipeline answers ``IMAGE_AMBIGUOUS``; competing sidecars are skipped.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import stat
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from radstream.errors import RadStreamError, StoreAccessDenied, StoreKeyInvalid, StudyConflict
from radstream.layout import (
    Bucket,
    check_key,
    dicom_drop_key,
    failure_key,
    result_key,
    sidecar_key,
    upload_key,
)
from radstream.loadgen.study import Study
from radstream.schema.sidecar import is_safe_study_id
from radstream.schema.sidecar_parse import MAX_SIDECAR_BYTES, MAX_SIDECAR_DEPTH, json_depth
from radstream.stages.ports import ObjectInfo, ObjectStore

IMAGE_SUFFIXES = frozenset({".png", ".jpg", ".jpeg", ".jpe", ".dcm", ".dicom"})
_UNSAFE = re.compile(r"[^A-Za-z0-9_-]")


@dataclass(frozen=True)
class StudyFiles:
    """An image and its sidecar on disk (``image`` is None for an orphan sidecar).

    ``rivals`` are further images of the same stem (``a.jpg`` beside ``a.png``): they are
    uploaded too, so that the pipeline fails the study ``IMAGE_AMBIGUOUS`` with its hint.
    """

    image: Path | None
    sidecar: Path
    rivals: tuple[Path, ...] = ()


@dataclass(frozen=True)
class Skipped:
    """A file that was not uploaded, or not as it stands, and why (for the user's list)."""

    path: Path
    reason: str
    code: str | None = None


@dataclass
class FoundFiles:
    """What :func:`find_studies` found under the paths it was given."""

    studies: list[StudyFiles] = field(default_factory=list)
    orphans: list[Path] = field(default_factory=list)
    """Images without a sidecar (a DICOM one can still be uploaded on its own)."""
    skipped: list[Skipped] = field(default_factory=list)
    """Files left out: links, special files, unusable names, competing sidecars."""
    ambiguous: list[Skipped] = field(default_factory=list)
    """Images that compete for one sidecar: uploaded, and reported by the pipeline."""


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


def upload_dicom_drop(
    store: ObjectStore, path: Path, written: dict[str, str] | None = None
) -> ObjectInfo:
    """Upload a DICOM file that has no sidecar to ``dicom/{folder}/{name}``, where it is its
    own trigger (its header gives the study). The folder is the file's parent, made safe.

    ``written`` (key → digest, shared across one upload) refuses a second, different file
    that would land on the same key (``pacs/IM0001`` from two folders named ``pacs``):
    ``StudyConflict``, and nothing is put.
    """
    folder = _UNSAFE.sub("_", path.parent.name)[:64] or "drop"
    name = re.sub(r"[^A-Za-z0-9._-]", "_", path.name)[:128].lstrip(".") or "image"
    key = dicom_drop_key(folder, name)
    data = path.read_bytes()
    if written is not None:
        _claim(written, key, data)
    return store.put(Bucket.IMAGES, key, data)


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


_NOT_FOLLOWED = "a symbolic link, not followed (pass --follow-symlinks to follow links)"
_OUTSIDE = "a symbolic link to outside the folders given, never followed"


def usable_name(name: str) -> bool:
    """Whether a file name can be part of an object key (no control characters, no '/')."""
    try:
        check_key(upload_key("study", name))
    except StoreKeyInvalid:
        return False
    return True


def _inside(path: Path, roots: list[Path]) -> bool:
    return any(path == root or path.is_relative_to(root) for root in roots)


def _walk(path: Path, roots: list[Path], follow: bool, found: FoundFiles) -> list[Path]:
    """Regular files under ``path`` (itself if it is one), sorted; the rest into skipped."""
    if not path.is_dir() or (path.is_symlink() and not follow):
        return _regular([path], roots, follow, found)
    files: list[Path] = []
    seen: set[Path] = set()
    for dirpath, dirnames, filenames in os.walk(path, followlinks=follow):
        here = Path(dirpath)
        real = here.resolve()
        if real in seen or not _inside(real, roots):
            if not _inside(real, roots):
                found.skipped.append(Skipped(here, _OUTSIDE))
            dirnames[:] = []  # a loop of links, or outside: do not descend
            continue
        seen.add(real)
        dirnames.sort()
        links = [here / d for d in dirnames if (here / d).is_symlink()]
        if not follow:
            found.skipped.extend(Skipped(p, _NOT_FOLLOWED) for p in links)
        files.extend(here / name for name in sorted(filenames))
    return _regular(files, roots, follow, found)


def _regular(
    candidates: list[Path], roots: list[Path], follow: bool, found: FoundFiles
) -> list[Path]:
    files: list[Path] = []
    for path in candidates:
        if path.is_symlink():
            if not follow:
                found.skipped.append(Skipped(path, _NOT_FOLLOWED))
                continue
            if not _inside(path.resolve(), roots):
                found.skipped.append(Skipped(path, _OUTSIDE))
                continue
        try:
            mode = path.stat().st_mode
        except OSError as exc:
            found.skipped.append(Skipped(path, f"cannot be read: {exc.strerror or exc}"))
            continue
        if not stat.S_ISREG(mode):
            found.skipped.append(Skipped(path, "not a regular file"))
            continue
        if not usable_name(path.name):
            found.skipped.append(
                Skipped(
                    path,
                    "its name cannot be an object key (control characters such as a "
                    "newline, or over 255 characters): rename it",
                    StoreKeyInvalid.code,
                )
            )
            continue
        files.append(path)
    return files


def find_studies(paths: Iterable[Path], *, follow_symlinks: bool = False) -> FoundFiles:
    """Pairs ``{stem}.{png,jpg,dcm}`` + ``{stem}.json`` under files or folders.

    A file with another extension, or none (``IM0001``, as PACS exports name them), is an
    image when its content is DICOM (the ``DICM`` preamble); its sidecar is ``IM0001.json``.
    Returns the studies, the images that have no sidecar (nothing to trigger them), and
    every file left out or competing with another, each with its reason. A sidecar with no
    image is still a study: the pipeline reports it as ``IMAGE_MISSING``.

    Symbolic links are skipped unless ``follow_symlinks``; even then a link is followed only
    to a file or folder inside the paths given.
    """
    given = list(paths)
    roots = [p.resolve() if p.is_dir() else p.resolve().parent for p in given]
    found = FoundFiles()
    files: list[Path] = []
    for path in given:
        files.extend(_walk(path, roots, follow_symlinks, found))
    sidecars: dict[Path, list[Path]] = {}
    images: dict[Path, list[Path]] = {}
    for p in files:
        if p.suffix.lower() == ".json":
            sidecars.setdefault(p.with_suffix(""), []).append(p)
        elif p.suffix.lower() in IMAGE_SUFFIXES or is_dicom_file(p):
            images.setdefault(_pairing_stem(p), []).append(p)
    for stem, group in sidecars.items():
        if len(group) > 1:
            # Both would be uploaded as {stem}.json: one would silently replace the other.
            names = ", ".join(p.name for p in group)
            found.skipped.extend(
                Skipped(p, f"competing sidecars for one image ({names}): keep one") for p in group
            )
            continue
        pictures = images.get(stem, [])
        if len(pictures) > 1:
            names = ", ".join(p.name for p in pictures)
            found.ambiguous.extend(
                Skipped(p, f"several images for one sidecar ({names})", "IMAGE_AMBIGUOUS")
                for p in pictures
            )
        found.studies.append(
            StudyFiles(
                image=pictures[0] if pictures else None,
                sidecar=group[0],
                rivals=tuple(pictures[1:]),
            )
        )
    found.orphans = [img for stem, group in images.items() if stem not in sidecars for img in group]
    return found


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
    replace: bool = True,
) -> ObjectInfo:
    """Put the image (unless None), then the sidecar named after the image's stem.

    Returns the sidecar's object info: its key and ETag identify the execution. Without
    ``replace``, an image key that already holds different bytes raises ``StudyConflict``
    and nothing is put.
    """
    stem = (
        Path(image_name).stem if Path(image_name).suffix.lower() in IMAGE_SUFFIXES else image_name
    )
    if image is not None:
        key = upload_key(folder, image_name)
        if not replace:
            check_no_conflict(store, key, image)
        store.put(Bucket.IMAGES, key, image)
    return store.put(Bucket.IMAGES, sidecar_key(folder, stem), sidecar)


def check_no_conflict(store: ObjectStore, key: str, data: bytes) -> None:
    """Raise ``StudyConflict`` if ``key`` holds bytes other than ``data`` that were never
    processed.

    A stored image whose study already has an outcome (a result or a failure) may be
    replaced: that is how a fixed image is sent again, and its new execution replaces the
    outcome. One without an outcome is in flight or waiting for its sidecar; replacing it
    would leave it never processed, under another file's result.
    """
    info = store.head(Bucket.IMAGES, key)
    if info is None:
        return
    if info.size == len(data) and store.get(Bucket.IMAGES, key) == data:
        return  # the same image again: a re-upload, not a conflict
    folder, name = key.split("/")[-2:]
    stem = _pairing_stem(Path(name)).name
    try:
        processed = any(
            store.head(Bucket.RESULTS, outcome) is not None
            for outcome in (result_key(folder, stem), failure_key(folder, stem))
        )
    except StoreAccessDenied:
        processed = True  # cannot tell (no read access to results): keep the old behaviour
    if not processed:
        raise StudyConflict(
            f"{key} already holds a different image that has no outcome yet; it was not replaced",
            key=key,
        )


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


@dataclass
class Uploaded:
    """What :func:`upload_files` put, and what it refused or could not put."""

    infos: list[ObjectInfo] = field(default_factory=list)
    """Each uploaded study's sidecar (its key and ETag identify the execution)."""
    refused: list[Skipped] = field(default_factory=list)


def upload_files(
    store: ObjectStore, studies: Iterable[StudyFiles], *, replace: bool = False
) -> Uploaded:
    """Upload studies found on disk; a study that cannot be uploaded is reported, not fatal.

    An image whose study folder and name already hold a different image earlier in this
    upload is refused (``STUDY_CONFLICT``), and so, without ``replace``, is a stored one
    that has no outcome yet (see :func:`check_no_conflict`).
    """
    done = Uploaded()
    written: dict[str, str] = {}  # key -> digest of what this upload put there
    for study in studies:
        try:
            info = _upload_one(store, study, written, replace=replace)
        except RadStreamError as exc:
            done.refused.append(Skipped(study.sidecar, exc.message, exc.code))
            continue
        except OSError as exc:
            done.refused.append(Skipped(study.sidecar, f"cannot be read: {exc.strerror or exc}"))
            continue
        done.infos.append(info)
    return done


def _upload_one(
    store: ObjectStore, study: StudyFiles, written: dict[str, str], *, replace: bool
) -> ObjectInfo:
    sidecar = study.sidecar.read_bytes()
    folder = study_folder_for(sidecar, study.sidecar.stem)
    if study.image is None:
        _claim(written, sidecar_key(folder, study.sidecar.stem), sidecar)
        return upload_study(
            store, folder=folder, image_name=study.sidecar.stem, image=None, sidecar=sidecar
        )
    images = [(_upload_name(p), p.read_bytes()) for p in (study.image, *study.rivals)]
    # The sidecar too: a second one under the same key would re-point the first study.
    _claim(written, sidecar_key(folder, _pairing_stem(Path(images[0][0])).name), sidecar)
    for name, data in images:
        # Two folders of one upload that name the same study and file: refused, not merged.
        _claim(written, upload_key(folder, name), data)
        if not replace:
            check_no_conflict(store, upload_key(folder, name), data)
    for name, data in images[1:]:
        store.put(Bucket.IMAGES, upload_key(folder, name), data)
    name, data = images[0]
    return upload_study(
        store, folder=folder, image_name=name, image=data, sidecar=sidecar, replace=True
    )


def _upload_name(path: Path) -> str:
    name = path.name
    if path.suffix.lower() not in IMAGE_SUFFIXES:  # DICOM recognised by content
        name += DICOM_UPLOAD_SUFFIX
    return name


def _claim(written: dict[str, str], key: str, data: bytes) -> None:
    digest = hashlib.sha256(data).hexdigest()
    previous = written.setdefault(key, digest)
    if previous != digest:
        raise StudyConflict(
            f"{key} was already uploaded from another file in this upload, with different "
            "content; this one was not uploaded",
            key=key,
        )
