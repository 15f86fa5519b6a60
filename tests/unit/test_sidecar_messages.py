"""Sidecars as hospitals write them: UIDs as study ids, DICOM dates, and messages that name
the field and show the rejected value (truncated; never a patient field's)."""

from __future__ import annotations

import json
from datetime import UTC, date, datetime

import pytest

from radstream.errors import SidecarInvalidField, StudyIdInvalid
from radstream.schema import is_safe_study_id
from radstream.schema.sidecar import Sidecar
from radstream.schema.sidecar_parse import parse_sidecar

BASE = {"study_id": "s-1", "view": "PA", "timestamp": "2024-03-01T10:20:30Z"}


def _parse(**fields: object) -> Sidecar:
    return parse_sidecar(json.dumps({**BASE, **fields}).encode())


@pytest.mark.parametrize(
    ("value", "ok"),
    [
        ("1.2.840.113619.2.55.3.604688119.868", True),
        ("S_1-a", True),
        ("x" * 64, True),
        ("x" * 65, False),
        ("..", False),
        ("a..b", False),
        (".hidden", False),
        ("trailing.", False),
        ("a/b", False),
        ("S1\n", False),
    ],
)
def test_uids_are_study_ids_and_paths_are_not(value: str, ok: bool) -> None:
    assert is_safe_study_id(value) is ok


def test_dicom_dates_and_times_are_accepted() -> None:
    sidecar = _parse(study_date="20040826", timestamp="20040826093000.5+0100")
    assert sidecar.study_date == date(2004, 8, 26)
    assert sidecar.timestamp == datetime(2004, 8, 26, 8, 30, 0, 500000, tzinfo=UTC)
    assert _parse(timestamp="20040826").timestamp == datetime(2004, 8, 26, tzinfo=UTC)


def test_messages_name_the_field_and_show_the_value_truncated() -> None:
    with pytest.raises(StudyIdInvalid) as caught:
        _parse(study_id="a/" + "b" * 200)
    assert "study_id 'a/bbbb" in caught.value.message
    assert "b" * 60 not in caught.value.message  # truncated
    with pytest.raises(SidecarInvalidField) as invalid:
        _parse(study_date="yesterday")
    assert "study_date" in invalid.value.message and "'yesterday'" in invalid.value.message


def test_a_patient_fields_value_is_never_shown() -> None:
    with pytest.raises(SidecarInvalidField) as caught:
        _parse(patient_id=987654321)
    assert "patient_id" in caught.value.message
    assert "987654321" not in caught.value.message
    assert "not shown" in caught.value.message
