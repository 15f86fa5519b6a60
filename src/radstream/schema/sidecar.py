"""The study sidecar: the JSON document uploaded next to each image.

Sidecars in the wild vary: ``Z`` or offset timestamps, naive timestamps, lower-case views,
partial ``image_size`` objects and extra keys all occur. Every one of those validates here;
the model normalises them (UTC timestamps, upper-case view) so downstream code sees one shape.
"""

from __future__ import annotations

import re
from datetime import UTC, date, datetime
from enum import StrEnum
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator

STUDY_ID_PATTERN = r"^(?!.*\.\.)[A-Za-z0-9_-](?:[A-Za-z0-9._-]{0,62}[A-Za-z0-9_-])?$"
"""1-64 of ``A-Z a-z 0-9 _ - .``, neither starting nor ending with a dot and without ``..``:
a DICOM StudyInstanceUID (``1.2.840.113619.2.55.3.604688119.868``) is a valid study id as it
is, and no id can name a path outside its folder."""
STUDY_ID_RULE = (
    "1-64 of A-Z a-z 0-9 _ - . (a DICOM UID fits), not starting or ending with '.', no '..'"
)
# fullmatch, not match: Python's "$" also matches before a trailing newline.
_STUDY_ID_RE = re.compile(STUDY_ID_PATTERN.removeprefix("^").removesuffix("$"))

# DICOM DA (YYYYMMDD) and DT (YYYYMMDDHHMMSS.FFFFFF&ZZXX, every part after the date optional).
_DICOM_DATE_RE = re.compile(r"(\d{4})(\d{2})(\d{2})")
_DICOM_DT_RE = re.compile(
    r"(\d{4})(\d{2})(\d{2})(?:(\d{2})(?:(\d{2})(?:(\d{2})(?:\.(\d{1,6}))?)?)?)?([+-]\d{4})?"
)

# Fields that identify a patient. They may appear in sidecars, but never leave them: not in
# results, failures, telemetry or logs (tests/unit/test_runner_outcome_claims.py).
PATIENT_FIELDS: frozenset[str] = frozenset(
    {"patient_id", "patient_name", "patient_birth_date", "patient_sex", "patient_age"}
)


class View(StrEnum):
    """Radiographic projection."""

    PA = "PA"
    AP = "AP"
    LATERAL = "LATERAL"
    OBLIQUE = "OBLIQUE"
    OTHER = "OTHER"


class ImageSize(BaseModel):
    """Declared pixel size; either side may be unknown (null)."""

    model_config = ConfigDict(extra="allow")

    width: int | None = Field(default=None, ge=1)
    height: int | None = Field(default=None, ge=1)


def is_safe_study_id(value: str) -> bool:
    """True if ``value`` is a valid study id (see :data:`STUDY_ID_PATTERN`): no path
    characters, no ``..``; a DICOM UID is one."""
    return bool(_STUDY_ID_RE.fullmatch(value))


def dicom_date(value: object) -> object:
    """``20040826`` (DICOM DA) → ``2004-08-26``; anything else unchanged, for pydantic."""
    if isinstance(value, str) and _DICOM_DATE_RE.fullmatch(value.strip()):
        text = value.strip()
        return f"{text[:4]}-{text[4:6]}-{text[6:8]}"
    return value


def dicom_datetime(value: object) -> object:
    """``20040826093000.5+0100`` (DICOM DT) → ISO 8601; anything else unchanged."""
    if not isinstance(value, str):
        return value
    found = _DICOM_DT_RE.fullmatch(value.strip())
    if found is None:
        return value
    year, month, day, hour, minute, second, fraction, offset = found.groups()
    iso = f"{year}-{month}-{day}T{hour or '00'}:{minute or '00'}:{second or '00'}"
    if fraction:
        iso += "." + fraction
    if offset:
        iso += f"{offset[:3]}:{offset[3:]}"
    return iso


class Sidecar(BaseModel):
    """A validated study sidecar. Unknown keys are kept (``model_extra``) but never trusted."""

    model_config = ConfigDict(extra="allow", str_strip_whitespace=True)

    study_id: str = Field(
        description=STUDY_ID_RULE, json_schema_extra={"pattern": STUDY_ID_PATTERN}
    )
    view: View = Field(description="PA, AP, LATERAL, OBLIQUE or OTHER; any case on input")
    timestamp: datetime = Field(
        description="ISO 8601 (Z or offset; naive is read as UTC) or DICOM DT "
        "(YYYYMMDDHHMMSS.FFFFFF&ZZXX, parts after the date optional)"
    )
    patient_id: str | None = None
    study_date: date | None = Field(
        default=None, description="ISO 8601 (2004-08-26) or DICOM DA (20040826)"
    )
    modality: str | None = None
    body_part: str | None = None
    image_size: ImageSize | None = None
    annotations: list[Any] | dict[str, Any] | None = None

    @field_validator("study_id", mode="after")
    @classmethod
    def _safe_study_id(cls, value: str) -> str:
        # Checked here, not as a Field pattern: pydantic's regex engine has no lookahead.
        if not is_safe_study_id(value):
            raise ValueError(STUDY_ID_RULE)
        return value

    @field_validator("study_date", mode="before")
    @classmethod
    def _dicom_date(cls, value: object) -> object:
        return dicom_date(value)

    @field_validator("timestamp", mode="before")
    @classmethod
    def _dicom_datetime(cls, value: object) -> object:
        return dicom_datetime(value)

    @field_validator("view", mode="before")
    @classmethod
    def _upper_view(cls, value: object) -> object:
        return value.upper() if isinstance(value, str) else value

    @field_validator("timestamp", mode="after")
    @classmethod
    def _utc(cls, value: datetime) -> datetime:
        if value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        try:
            return value.astimezone(UTC)
        except OverflowError:  # 9999-12-31T23:59-05:00 is past the end of time in UTC
            raise ValueError("timestamp is out of range once converted to UTC") from None

    def expected_size(self) -> tuple[int | None, int | None] | None:
        """The (width, height) the sidecar declares, or None when it declares none."""
        if self.image_size is None:
            return None
        return (self.image_size.width, self.image_size.height)
