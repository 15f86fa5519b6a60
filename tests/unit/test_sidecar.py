"""Sidecar validation: every shape seen in the wild passes; each bad one gets its code."""

from __future__ import annotations

import contextlib
import json
from datetime import UTC, datetime

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from radstream.errors import RadStreamError
from radstream.schema import PATIENT_FIELDS, TelemetryRecord
from radstream.schema.sidecar_parse import parse_sidecar

BASE = {"study_id": "s-1", "view": "PA", "timestamp": "2024-03-01T10:20:30Z"}


def _sidecar(**changes: object) -> bytes:
    body = {**BASE, **changes}
    return json.dumps({k: v for k, v in body.items() if v is not ...}).encode()


@pytest.mark.parametrize(
    ("timestamp", "expected"),
    [
        ("2024-03-01T10:20:30Z", datetime(2024, 3, 1, 10, 20, 30, tzinfo=UTC)),
        ("2024-03-01T12:20:30+02:00", datetime(2024, 3, 1, 10, 20, 30, tzinfo=UTC)),
        ("2024-03-01T10:20:30.123456Z", datetime(2024, 3, 1, 10, 20, 30, 123456, tzinfo=UTC)),
        ("2024-03-01T10:20:30", datetime(2024, 3, 1, 10, 20, 30, tzinfo=UTC)),
        ("2024-03-01T10:20:30.5", datetime(2024, 3, 1, 10, 20, 30, 500000, tzinfo=UTC)),
    ],
)
def test_timestamps_in_the_wild_are_read_as_utc(timestamp: str, expected: datetime) -> None:
    assert parse_sidecar(_sidecar(timestamp=timestamp)).timestamp == expected


def test_lower_case_view_is_canonicalised() -> None:
    assert parse_sidecar(_sidecar(view="lateral")).view.value == "LATERAL"


@pytest.mark.parametrize("size", [{"width": None, "height": 2500}, {"width": 2000, "height": None}])
def test_image_size_with_null_side(size: dict[str, int | None]) -> None:
    sidecar = parse_sidecar(_sidecar(image_size=size))
    assert sidecar.expected_size() == (size["width"], size["height"])


def test_unknown_keys_are_kept_not_trusted() -> None:
    sidecar = parse_sidecar(_sidecar(scanner={"vendor": "x"}, site="north"))
    assert sidecar.model_extra == {"scanner": {"vendor": "x"}, "site": "north"}


@pytest.mark.parametrize(
    ("data", "code"),
    [
        (_sidecar(study_id=...), "SIDECAR_MISSING_FIELD"),
        (_sidecar(view=5), "SIDECAR_INVALID_FIELD"),
        (_sidecar(view="SIDEWAYS"), "SIDECAR_INVALID_FIELD"),
        (_sidecar(timestamp="yesterday"), "SIDECAR_INVALID_FIELD"),
        (_sidecar(image_size={"width": "wide"}), "SIDECAR_INVALID_FIELD"),
        (b'{"study_id": "a",', "SIDECAR_INVALID_JSON"),
        ('{"study_id": "é"}'.encode("latin-1"), "SIDECAR_NOT_UTF8"),
        (b"[1, 2]", "SIDECAR_NOT_OBJECT"),
        (b"{" + b'"k": ' * 0 + b'"pad": "' + b"x" * (1024 * 1024) + b'"}', "SIDECAR_TOO_LARGE"),
        (b'{"a": ' + b"[" * 40 + b"]" * 40 + b"}", "SIDECAR_TOO_DEEP"),
        (_sidecar(study_id="../etc"), "STUDY_ID_INVALID"),
        (_sidecar(study_id="a/b"), "STUDY_ID_INVALID"),
        (_sidecar(study_id="x" * 65), "STUDY_ID_INVALID"),
        (_sidecar(study_id="S1\nS2"), "STUDY_ID_INVALID"),
        (b'{"study_id": "a", "n": ' + b"1" * 5000 + b"}", "SIDECAR_INVALID_JSON"),
        (_sidecar(timestamp="9999-12-31T23:59:59-05:00"), "SIDECAR_INVALID_FIELD"),
        (_sidecar(timestamp="0001-01-01T00:00:00+05:00"), "SIDECAR_INVALID_FIELD"),
    ],
)
def test_bad_sidecars_get_specific_codes(data: bytes, code: str) -> None:
    with pytest.raises(RadStreamError) as info:
        parse_sidecar(data)
    assert info.value.code == code
    assert info.value.message and info.value.hint


def test_brackets_inside_strings_do_not_count_as_nesting() -> None:
    assert parse_sidecar(_sidecar(note="[" * 100)).model_extra == {"note": "[" * 100}


def test_telemetry_record_has_no_patient_field() -> None:
    fields = set(TelemetryRecord.model_fields)
    assert not fields & PATIENT_FIELDS
    assert not any("patient" in f for f in fields)


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=256))
def test_arbitrary_bytes_give_only_typed_errors(data: bytes) -> None:
    with contextlib.suppress(RadStreamError):
        parse_sidecar(data)


@settings(max_examples=100, deadline=None)
@given(
    st.recursive(
        st.none() | st.integers() | st.text(), lambda c: st.lists(c) | st.dictionaries(st.text(), c)
    )
)
def test_arbitrary_json_gives_only_typed_errors(value: object) -> None:
    with contextlib.suppress(RadStreamError):
        parse_sidecar(json.dumps(value).encode())


def test_study_id_check_rejects_a_trailing_newline() -> None:
    from radstream.schema import is_safe_study_id

    assert is_safe_study_id("S1")
    assert not is_safe_study_id("S1\n")
