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

STUDY_ID_PATTERN = r"^[A-Za-z0-9_-]{1,64}$"
# fullmatch, not match: Python's "$" also matches before a trailing newline.
_STUDY_ID_RE = re.compile(r"[A-Za-z0-9_-]{1,64}")

# Fields that identify a patient. They may appear in sidecars (and are kept in the
# study's own result), but never leave in telemetry or logs.
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
    """True if ``value`` is a valid study id: 1-64 of ``[A-Za-z0-9_-]`` (no path characters)."""
    return bool(_STUDY_ID_RE.fullmatch(value))


class Sidecar(BaseModel):
    """A validated study sidecar. Unknown keys are kept (``model_extra``) but never trusted."""

    model_config = ConfigDict(extra="allow", str_strip_whitespace=True)

    study_id: str = Field(pattern=STUDY_ID_PATTERN, description="1-64 of [A-Za-z0-9_-]")
    view: View = Field(description="PA, AP, LATERAL, OBLIQUE or OTHER; any case on input")
    timestamp: datetime = Field(description="ISO 8601; Z or offset; naive is read as UTC")
    patient_id: str | None = None
    study_date: date | None = None
    modality: str | None = None
    body_part: str | None = None
    image_size: ImageSize | None = None
    annotations: list[Any] | dict[str, Any] | None = None

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
