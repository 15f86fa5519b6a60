"""The sidecar a DICOM header gives: study id, view, timestamp, size; never a patient field."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta, timezone

import pytest
from dicom_samples import dataset

from radstream.errors import SidecarInvalidField, SidecarMissingField
from radstream.schema.dicom_sidecar import (
    image_stem_from_header,
    safe_uid,
    sidecar_from_header,
    study_id_from_header,
    view_from_position,
)
from radstream.schema.sidecar import Sidecar, View, is_safe_study_id

UID = "1.2.840.113619.2.55.3.604688119.969.1268071029.320"
BASE = {
    "StudyInstanceUID": UID,
    "SOPInstanceUID": UID + ".1",
    "StudyDate": "20240315",
    "StudyTime": "143005.25",
    "ViewPosition": "PA",
    "Rows": 2500,
    "Columns": 2048,
    "Modality": "DX",
    "BodyPartExamined": "CHEST",
}


def test_a_real_radiograph_header() -> None:
    ds = dataset("RG1_UNCR.dcm")
    sidecar = sidecar_from_header(ds)
    assert sidecar.study_id == str(ds.StudyInstanceUID).replace(".", "-")
    assert sidecar.view is View.PA
    assert sidecar.image_size is not None
    assert (sidecar.image_size.width, sidecar.image_size.height) == (1841, 1955)
    assert (sidecar.modality, sidecar.body_part) == ("CR", "CHEST")
    # It validates as an uploaded sidecar would.
    again = Sidecar.model_validate_json(sidecar.model_dump_json(exclude_none=True))
    assert again == sidecar


def test_every_field_from_a_plain_mapping() -> None:
    sidecar = sidecar_from_header(BASE)
    assert sidecar.study_id == UID.replace(".", "-") and is_safe_study_id(sidecar.study_id)
    assert sidecar.timestamp == datetime(2024, 3, 15, 14, 30, 5, 250000, tzinfo=UTC)
    assert sidecar.study_date is not None and sidecar.study_date.isoformat() == "2024-03-15"
    assert image_stem_from_header(BASE) == (UID + ".1").replace(".", "-")


def test_timezone_offset_moves_the_timestamp_to_utc() -> None:
    sidecar = sidecar_from_header({**BASE, "TimezoneOffsetFromUTC": "+0130"})
    assert sidecar.timestamp == datetime(2024, 3, 15, 13, 0, 5, 250000, tzinfo=UTC)
    west = sidecar_from_header({**BASE, "TimezoneOffsetFromUTC": "-0500", "StudyTime": "2200"})
    assert west.timestamp == datetime(2024, 3, 16, 3, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("time", "expected"),
    [(None, (0, 0, 0)), ("07", (7, 0, 0)), ("0712", (7, 12, 0)), ("07:12:30", (7, 12, 30))],
)
def test_partial_study_times(time: str | None, expected: tuple[int, int, int]) -> None:
    header = {**BASE, "StudyTime": time}
    stamp = sidecar_from_header(header).timestamp
    assert (stamp.hour, stamp.minute, stamp.second) == expected


def test_without_a_study_date_the_arrival_time_is_used() -> None:
    header = {**BASE, "StudyDate": None}
    arrived = datetime(2025, 1, 2, 3, 4, 5, tzinfo=timezone(timedelta(hours=2)))
    assert sidecar_from_header(header, received_at=arrived).timestamp == arrived.astimezone(UTC)
    with pytest.raises(SidecarMissingField):
        sidecar_from_header(header)


@pytest.mark.parametrize(
    "bad",
    [
        {"StudyDate": "2024-13-40"},
        {"StudyDate": "yesterday"},
        {"StudyTime": "25"},
        {"TimezoneOffsetFromUTC": "CET"},
    ],
)
def test_unreadable_dates_fail_with_a_code(bad: dict[str, str]) -> None:
    with pytest.raises(SidecarInvalidField):
        sidecar_from_header({**BASE, **bad})


def test_accession_number_is_used_hashed_never_as_it_is() -> None:
    header = {**BASE, "StudyInstanceUID": None, "AccessionNumber": "ACC-SECRET-4711"}
    study_id = study_id_from_header(header)
    assert study_id.startswith("acc-") and is_safe_study_id(study_id)
    assert "4711" not in study_id and "SECRET" not in study_id
    assert study_id == study_id_from_header(dict(header))  # stable
    with pytest.raises(SidecarMissingField):
        study_id_from_header({**header, "AccessionNumber": None})


@pytest.mark.parametrize("uid", ["1." * 40 + "1", "1.2.abc/../x", " "])
def test_a_uid_that_does_not_fit_is_hashed(uid: str) -> None:
    if not uid.strip():
        with pytest.raises(SidecarMissingField):
            study_id_from_header({"StudyInstanceUID": uid})
        return
    safe = safe_uid(uid)
    assert safe.startswith("uid-") and is_safe_study_id(safe)
    assert safe_uid(uid) == safe and safe_uid(uid + "9") != safe


@pytest.mark.parametrize(
    ("position", "view"),
    [
        ("PA", View.PA),
        ("ap", View.AP),
        ("LL", View.LATERAL),
        ("RL", View.LATERAL),
        ("LATERAL", View.LATERAL),
        ("RLO", View.OBLIQUE),
        ("RLD", View.OTHER),
        ("", None),
        (None, None),
    ],
)
def test_view_from_view_position(position: str | None, view: View | None) -> None:
    assert view_from_position(position) == view
    if view is None:
        assert sidecar_from_header({**BASE, "ViewPosition": position}).view is View.OTHER


def test_size_only_from_positive_rows_and_columns() -> None:
    assert sidecar_from_header({**BASE, "Rows": None}).image_size is None
    assert sidecar_from_header({**BASE, "Columns": 0}).image_size is None


def test_no_patient_field_is_ever_read() -> None:
    ds = dataset("RG1_UNCR.dcm")
    ds.PatientName = "DOE^JANE^DISTINCTIVE"
    ds.PatientID = "PID-7731-DISTINCTIVE"
    ds.PatientBirthDate = "19330412"
    ds.AccessionNumber = "ACC-DISTINCT-99"
    text = sidecar_from_header(ds).model_dump_json()
    for value in ("DISTINCT", "7731", "19330412", "1933-04-12"):
        assert value not in text
    assert json.loads(text)["patient_id"] is None
