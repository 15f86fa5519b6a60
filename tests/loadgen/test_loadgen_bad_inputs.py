"""Deliberately bad studies, and batches that mix them with good ones."""

from __future__ import annotations

import json
import re
from datetime import datetime
from typing import Any

import numpy as np
import pytest

from radstream.imaging import prepare_image
from radstream.loadgen.bad_inputs import BAD_KINDS, make_bad_study
from radstream.loadgen.synthetic import make_studies

STUDY_ID = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
VIEWS = {"PA", "AP", "LATERAL", "OBLIQUE", "OTHER"}
SIDECAR_CODES = {
    "SIDECAR_INVALID_JSON",
    "SIDECAR_MISSING_FIELD",
    "SIDECAR_INVALID_FIELD",
    "SIDECAR_NOT_UTF8",
    "SIDECAR_TOO_LARGE",
    "SIDECAR_TOO_DEEP",
    "STUDY_ID_INVALID",
}


def assert_valid_sidecar(raw: bytes) -> dict[str, Any]:
    """The sidecar rules the pipeline enforces, checked independently of its code."""
    assert len(raw) <= 1024 * 1024
    fields = json.loads(raw.decode("utf-8"))
    assert isinstance(fields, dict)
    assert isinstance(fields["study_id"], str) and STUDY_ID.match(fields["study_id"])
    assert isinstance(fields["view"], str) and fields["view"].upper() in VIEWS
    datetime.fromisoformat(fields["timestamp"])
    size = fields.get("image_size") or {}
    for side in ("width", "height"):
        assert size.get(side) is None or (isinstance(size[side], int) and size[side] >= 1)
    return fields


def depth(value: Any) -> int:
    if isinstance(value, dict):
        return 1 + max((depth(v) for v in value.values()), default=0)
    if isinstance(value, list):
        return 1 + max((depth(v) for v in value), default=0)
    return 0


@pytest.fixture(scope="module")
def studies() -> dict[str, Any]:
    rng = np.random.default_rng(17)
    return {kind: make_bad_study(kind, f"bad-{i:02d}", rng) for i, kind in enumerate(BAD_KINDS)}


def test_every_kind_has_a_safe_folder_and_unknown_kinds_are_refused(studies: dict[str, Any]) -> None:
    for i, study in enumerate(studies.values()):
        assert study.study_id == f"bad-{i:02d}"
    with pytest.raises(ValueError, match="unknown bad kind"):
        make_bad_study("no-such-kind", "x", np.random.default_rng(0))


def test_sidecar_kinds_break_only_the_sidecar(studies: dict[str, Any]) -> None:
    for kind, study in studies.items():
        if study.expected_code not in SIDECAR_CODES:
            continue
        raw: bytes = study.sidecar
        code = study.expected_code
        prepare_image(study.image, filename=study.image_name)  # the image itself is fine
        if code == "SIDECAR_TOO_LARGE":
            assert len(raw) > 1024 * 1024
            continue
        if code == "SIDECAR_NOT_UTF8":
            with pytest.raises(UnicodeDecodeError):
                raw.decode("utf-8")
            continue
        if code == "SIDECAR_INVALID_JSON":
            with pytest.raises(json.JSONDecodeError):
                json.loads(raw)
            continue
        fields = json.loads(raw)
        if code == "SIDECAR_TOO_DEEP":
            assert depth(fields) > 32
        elif code == "SIDECAR_MISSING_FIELD":
            assert not {"view", "timestamp"} <= set(fields)
        elif code == "SIDECAR_INVALID_FIELD":
            size = fields.get("image_size") or {}
            assert not isinstance(fields["view"], str) or not isinstance(size.get("width"), int)
        elif code == "STUDY_ID_INVALID":
            assert "/" in fields["study_id"]
            assert not STUDY_ID.match(fields["study_id"])
        else:
            pytest.fail(f"{kind}: unchecked code {code}")


def test_image_kinds_have_valid_sidecars(studies: dict[str, Any]) -> None:
    for study in studies.values():
        if study.expected_code not in SIDECAR_CODES:
            fields = assert_valid_sidecar(study.sidecar)
            assert fields["study_id"] == study.study_id


def test_image_never_arrives_uploads_no_image(studies: dict[str, Any]) -> None:
    study = studies["image_never_arrives"]
    assert (study.image_name, study.image, study.expected_code) == ("", b"", "IMAGE_MISSING")


def test_make_studies_mixes_bad_kinds_deterministically() -> None:
    kwargs: dict[str, Any] = {"formats": ["png", "jpeg", "dicom"], "width": 400, "height": 500}
    first = make_studies(12, 5, rng=np.random.default_rng(3), **kwargs)
    again = make_studies(12, 5, rng=np.random.default_rng(3), **kwargs)
    other = make_studies(12, 5, rng=np.random.default_rng(4), **kwargs)
    assert first == again
    assert first != other
    assert [s.study_id for s in first] == [f"syn-{i:05d}" for i in range(1, 13)]
    bad = [s for s in first if s.expected_code is not None]
    assert len(bad) == 5
    assert sorted(str(s.expected_code) for s in bad) == sorted(list(BAD_KINDS.values())[:5])
    # Bad studies are spread out, not bunched at one end.
    positions = [i for i, s in enumerate(first) if s.expected_code is not None]
    assert positions != list(range(7, 12))
    good = [s for s in first if s.expected_code is None]
    assert {s.image_name.rsplit(".", 1)[1] for s in good} == {"png", "jpg", "dcm"}
    for study in good:
        assert_valid_sidecar(study.sidecar)
        assert prepare_image(study.image, filename=study.image_name).width == 400


def test_make_studies_checks_its_arguments() -> None:
    rng = np.random.default_rng(0)
    with pytest.raises(ValueError, match="invalid"):
        make_studies(2, 3, formats=["png"], rng=rng)
    with pytest.raises(ValueError, match="format"):
        make_studies(2, 0, formats=["gif"], rng=rng)
