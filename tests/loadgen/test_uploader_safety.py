"""The uploader never loses or leaks: conflicts refused, links not followed, objects private,
unusable names and competing files reported while the rest goes on."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

import numpy as np
import pytest

from radstream.errors import ImageUnsupportedFormat, RadStreamError
from radstream.imaging.formats import sniff_format
from radstream.loadgen.study import make_study
from radstream.loadgen.uploader import find_studies, upload_dicom_drop, upload_files
from radstream.local.store import FolderStore


def _study(folder: Path, study_id: str, name: str, seed: int) -> bytes:
    """Write ``{name}.png`` and ``{name}.json`` of study ``study_id`` into ``folder``."""
    folder.mkdir(parents=True, exist_ok=True)
    study = make_study(study_id, "png", np.random.default_rng(seed), width=300, height=300)
    (folder / f"{name}.png").write_bytes(study.image)
    (folder / f"{name}.json").write_bytes(study.sidecar)
    return study.image


def test_two_folders_with_one_study_id_and_file_name_do_not_overwrite(tmp_path: Path) -> None:
    first = _study(tmp_path / "a", "same", "x", seed=1)
    _study(tmp_path / "b", "same", "x", seed=2)  # another image, same study and name
    store = FolderStore(tmp_path / "buckets")
    found = find_studies([tmp_path / "a", tmp_path / "b"])
    done = upload_files(store, found.studies)
    assert len(done.infos) == 1
    [refused] = done.refused
    assert refused.code == "STUDY_CONFLICT" and refused.path == tmp_path / "b" / "x.json"
    assert store.get("images", "incoming/same/x.png") == first


def test_a_stored_image_without_outcome_is_not_replaced_by_another(tmp_path: Path) -> None:
    store = FolderStore(tmp_path / "buckets")
    _study(tmp_path / "a", "s1", "x", seed=1)
    assert len(upload_files(store, find_studies([tmp_path / "a"]).studies).infos) == 1
    # The very same files again: a re-upload, not a conflict.
    assert len(upload_files(store, find_studies([tmp_path / "a"]).studies).infos) == 1
    newer = _study(tmp_path / "a", "s1", "x", seed=3)
    # The first image has no outcome yet (in flight): replacing it would lose it.
    again = upload_files(store, find_studies([tmp_path / "a"]).studies)
    assert [r.code for r in again.refused] == ["STUDY_CONFLICT"] and not again.infos
    assert store.get("images", "incoming/s1/x.png") != newer
    replaced = upload_files(store, find_studies([tmp_path / "a"]).studies, replace=True)
    assert len(replaced.infos) == 1
    assert store.get("images", "incoming/s1/x.png") == newer


def test_a_processed_image_may_be_sent_again_fixed(tmp_path: Path) -> None:
    store = FolderStore(tmp_path / "buckets")
    _study(tmp_path / "a", "s1", "x", seed=1)
    upload_files(store, find_studies([tmp_path / "a"]).studies)
    store.put("results", "failed/s1/x.json", b"{}")  # its study failed: the user fixes it
    fixed = _study(tmp_path / "a", "s1", "x", seed=3)
    done = upload_files(store, find_studies([tmp_path / "a"]).studies)
    assert len(done.infos) == 1 and not done.refused
    assert store.get("images", "incoming/s1/x.png") == fixed


def test_symlinks_are_not_followed_and_never_outside(tmp_path: Path) -> None:
    folder = tmp_path / "up"
    _study(folder, "s1", "ok", seed=1)
    secret = tmp_path / "secret.txt"
    secret.write_text("root:x:0:0:root:/root:/bin/bash\n")
    (folder / "x.png").symlink_to(secret)
    (folder / "x.json").write_text(json.dumps({"study_id": "s2"}))
    (folder / "alias.png").symlink_to(folder / "ok.png")
    found = find_studies([folder])
    skipped = {s.path.name: s.reason for s in found.skipped}
    assert "not followed" in skipped["x.png"] and "not followed" in skipped["alias.png"]
    followed = find_studies([folder], follow_symlinks=True)
    skipped = {s.path.name: s.reason for s in followed.skipped}
    assert "outside" in skipped["x.png"]
    assert "alias.png" not in skipped  # inside the folder given: followed when asked
    store = FolderStore(tmp_path / "buckets")
    upload_files(store, followed.studies)
    for key in store.list("images"):
        assert b"root:x" not in store.get("images", key)


def test_stored_objects_are_private_to_the_user(tmp_path: Path) -> None:
    _study(tmp_path / "a", "s1", "x", seed=1)
    root = tmp_path / "buckets"
    upload_files(FolderStore(root), find_studies([tmp_path / "a"]).studies)
    for path in [root, *root.rglob("*")]:
        mode = stat.S_IMODE(path.stat().st_mode)
        assert mode == (0o700 if path.is_dir() else 0o600), (path, oct(mode))


def test_an_unusable_file_name_is_reported_and_the_rest_goes_on(tmp_path: Path) -> None:
    folder = tmp_path / "up"
    _study(folder, "s1", "a", seed=1)
    _study(folder, "s2", "new\nline", seed=2)
    _study(folder, "s3", "z", seed=3)
    found = find_studies([folder])
    assert {s.path.name for s in found.skipped} == {"new\nline.png", "new\nline.json"}
    assert all(s.code == "STORE_KEY_INVALID" for s in found.skipped)
    done = upload_files(FolderStore(tmp_path / "buckets"), found.studies)
    assert sorted(i.key for i in done.infos) == ["incoming/s1/a.json", "incoming/s3/z.json"]


def test_competing_files_are_all_listed(tmp_path: Path) -> None:
    folder = tmp_path / "up"
    _study(folder, "s1", "two", seed=1)
    (folder / "two.JSON").write_bytes((folder / "two.json").read_bytes())
    image = _study(folder, "s2", "amb", seed=2)
    (folder / "amb.jpg").write_bytes(image)
    found = find_studies([folder])
    assert {s.path.name for s in found.skipped} == {"two.json", "two.JSON"}
    assert {s.path.name for s in found.ambiguous} == {"amb.png", "amb.jpg"}
    store = FolderStore(tmp_path / "buckets")
    done = upload_files(store, found.studies)
    # Both images go up beside the sidecar: the pipeline answers IMAGE_AMBIGUOUS.
    assert [i.key for i in done.infos] == ["incoming/s2/amb.json"]
    assert store.list("images", "incoming/s2/") == [
        "incoming/s2/amb.jpg",
        "incoming/s2/amb.json",
        "incoming/s2/amb.png",
    ]


@pytest.mark.parametrize(
    ("data", "looks_like"),
    [
        (b"root:x:0:0:root:/root:/bin/bash\n", "text"),
        # A DICOM data set without preamble that starts with PatientName (0010,0010).
        (b"\x10\x00\x10\x00PN\x10\x00Quixote^Dulcinea", "unknown data"),
        (b"GIF89a" + bytes(10), "GIF"),
    ],
)
def test_an_unsupported_file_leaves_no_bytes_in_the_failure(data: bytes, looks_like: str) -> None:
    with pytest.raises(ImageUnsupportedFormat) as caught:
        sniff_format(data)
    details = json.dumps(caught.value.to_dict())
    assert caught.value.details == {"looks_like": looks_like}
    assert data[:4].hex() not in details and "Quixote" not in details
    assert b"Quixote".hex() not in details


def test_special_files_are_skipped(tmp_path: Path) -> None:
    folder = tmp_path / "up"
    _study(folder, "s1", "a", seed=1)
    os.mkfifo(folder / "pipe.png")  # reading it would block the upload for ever
    found = find_studies([folder])
    assert [(s.path.name, s.reason) for s in found.skipped] == [("pipe.png", "not a regular file")]


def test_two_dicom_drops_on_one_key_do_not_overwrite(tmp_path: Path) -> None:
    store = FolderStore(tmp_path / "buckets")
    for root, content in (("one", b"first"), ("two", b"second")):
        (tmp_path / root / "pacs").mkdir(parents=True)
        (tmp_path / root / "pacs" / "IM0001").write_bytes(b"\0" * 128 + b"DICM" + content)
    written: dict[str, str] = {}
    upload_dicom_drop(store, tmp_path / "one" / "pacs" / "IM0001", written)
    with pytest.raises(RadStreamError) as caught:
        upload_dicom_drop(store, tmp_path / "two" / "pacs" / "IM0001", written)
    assert caught.value.code == "STUDY_CONFLICT"
    assert store.get("images", "dicom/pacs/IM0001").endswith(b"first")
