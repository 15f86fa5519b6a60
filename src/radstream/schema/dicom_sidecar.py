"""A study sidecar made from a DICOM header, for DICOM that arrives without one.

Modalities and PACS send DICOM, not sidecars; the DICOM receiver (and a ``.dcm`` uploaded
alone) gets its sidecar from here. One pure function, :func:`sidecar_from_header`, reads
the header's elements by keyword from anything with a ``get(keyword, default)`` method: a
pydicom ``Dataset`` or a plain dict. Nothing here imports pydicom, so the ``validate``
Lambda can use it without the imaging libraries.

The mapping
    ``study_id``
        From StudyInstanceUID, its dots replaced by ``-`` (``1.2.840.1`` becomes
        ``1-2-840-1``): a UID is at most 64 characters of digits and dots, so a
        conformant one always fits ``[A-Za-z0-9_-]{1,64}`` and stays readable. A
        non-conformant UID that does not fit (too long, other characters) becomes
        ``uid-`` and 32 hex characters of its SHA-256: still one folder per study.
        Without a StudyInstanceUID, the AccessionNumber, always hashed (``acc-`` and 32
        hex characters): an accession number is a hospital's identifier of an order and
        so of a patient, and must not appear in results, keys or telemetry.
    image stem (:func:`image_stem_from_header`)
        The SOPInstanceUID, mapped as the StudyInstanceUID is.
    ``view``
        From ViewPosition: PA and AP as they are; LL, RL, LATERAL, LAT as ``LATERAL``;
        the oblique terms (LLO, RLO, LAO, RAO, LPO, RPO, OBLIQUE) as ``OBLIQUE``; any
        other value, or none, as ``OTHER``.
    ``timestamp``
        StudyDate and StudyTime (``HHMMSS.FFFFFF``; ``HHMM`` and ``HH`` too), at the
        offset TimezoneOffsetFromUTC gives (``+HHMM``/``-HHMM``), UTC when it is absent. A
        missing StudyTime is midnight. Without a StudyDate, ``received_at`` (when the file
        arrived) is used, and without that the mapping fails ``SIDECAR_MISSING_FIELD``.
    ``image_size``
        Columns x Rows, so that ``prepare`` checks the pixel data against the header.
    ``modality``, ``body_part``, ``study_date``
        Modality, BodyPartExamined and StudyDate, as they are.

Never a patient field: PatientName, PatientID, PatientBirthDate, PatientSex, PatientAge,
AccessionNumber (other than hashed) and the like are not read at all.
"""

from __future__ import annotations

import hashlib
import re
from datetime import UTC, date, datetime, time, timedelta, timezone
from typing import Any, Final, Protocol

from radstream.errors import SidecarInvalidField, SidecarMissingField
from radstream.schema.sidecar import ImageSize, Sidecar, View, is_safe_study_id

_HASH_CHARS: Final = 32
_LATERAL: Final = frozenset({"LL", "RL", "LATERAL", "LAT", "LLAT", "RLAT"})
_OBLIQUE: Final = frozenset({"LLO", "RLO", "LAO", "RAO", "LPO", "RPO", "OBLIQUE", "OBL"})
_DATE_RE: Final = re.compile(r"(\d{4})\.?(\d{2})\.?(\d{2})")
_TIME_RE: Final = re.compile(r"(\d{2}):?(?:(\d{2}):?(?:(\d{2})(?:\.(\d{1,6}))?)?)?")
_OFFSET_RE: Final = re.compile(r"([+-])(\d{2})(\d{2})")


class DicomHeader(Protocol):
    """Anything that gives header elements by keyword: a pydicom ``Dataset``, a dict."""

    def get(self, key: str, default: Any = None, /) -> Any:
        """The element's value, or ``default`` when absent."""
        ...


def sidecar_from_header(header: DicomHeader, *, received_at: datetime | None = None) -> Sidecar:
    """The sidecar of a DICOM image that arrived without one (see the module docstring).

    Raises ``SidecarMissingField`` when the header has neither StudyInstanceUID nor
    AccessionNumber (or no StudyDate and no ``received_at``), and ``SidecarInvalidField``
    when StudyDate, StudyTime or TimezoneOffsetFromUTC cannot be read.
    """
    study_date = _study_date(header)
    if study_date is None:
        if received_at is None:
            raise SidecarMissingField("the DICOM header has no StudyDate", field="timestamp")
        timestamp = received_at if received_at.tzinfo else received_at.replace(tzinfo=UTC)
    else:
        timestamp = datetime.combine(study_date, _study_time(header), _offset(header))
    return Sidecar(
        study_id=study_id_from_header(header),
        view=view_from_position(_text(header, "ViewPosition")) or View.OTHER,
        timestamp=timestamp,
        study_date=study_date,
        modality=_text(header, "Modality"),
        body_part=_text(header, "BodyPartExamined"),
        image_size=_image_size(header),
    )


def study_id_from_header(header: DicomHeader) -> str:
    """The study id: StudyInstanceUID made safe, else the AccessionNumber hashed."""
    uid = _text(header, "StudyInstanceUID")
    if uid is not None:
        return safe_uid(uid)
    accession = _text(header, "AccessionNumber")
    if accession is not None:
        return "acc-" + _digest(accession)
    raise SidecarMissingField(
        "the DICOM header has neither StudyInstanceUID nor AccessionNumber", field="study_id"
    )


def image_stem_from_header(header: DicomHeader) -> str:
    """The image's stem in its study folder: the SOPInstanceUID made safe."""
    uid = _text(header, "SOPInstanceUID")
    if uid is None:
        raise SidecarMissingField("the DICOM header has no SOPInstanceUID", field="image")
    return safe_uid(uid)


def safe_uid(uid: str) -> str:
    """A UID as a safe id: dots to ``-``, or ``uid-{sha256}`` when that does not fit."""
    dashed = uid.replace(".", "-")
    return dashed if is_safe_study_id(dashed) else "uid-" + _digest(uid)


def view_from_position(position: str | None) -> View | None:
    """The view a DICOM ViewPosition names; None when there is none."""
    if position is None or not position.strip():
        return None
    value = position.strip().upper()
    if value in (View.PA, View.AP):
        return View(value)
    if value in _LATERAL:
        return View.LATERAL
    if value in _OBLIQUE:
        return View.OBLIQUE
    return View.OTHER


def _digest(value: str) -> str:
    return hashlib.sha256(value.encode()).hexdigest()[:_HASH_CHARS]


def _text(header: DicomHeader, keyword: str) -> str | None:
    value = header.get(keyword)
    if value is None:
        return None
    text = str(value).strip().rstrip("\x00").strip()
    return text or None


def _study_date(header: DicomHeader) -> date | None:
    text = _text(header, "StudyDate")
    if text is None:
        return None
    match = _DATE_RE.fullmatch(text)
    try:
        if match is None:
            raise ValueError(text)
        return date(int(match[1]), int(match[2]), int(match[3]))
    except ValueError:
        raise SidecarInvalidField(
            f"the DICOM StudyDate {text!r} is not a YYYYMMDD date", field="timestamp"
        ) from None


def _study_time(header: DicomHeader) -> time:
    text = _text(header, "StudyTime")
    if text is None:
        return time(0, 0)
    match = _TIME_RE.fullmatch(text)
    try:
        if match is None:
            raise ValueError(text)
        hour, minute, second, fraction = match.groups()
        return time(
            int(hour),
            int(minute or 0),
            min(int(second or 0), 59),  # a leap second (60) is allowed in DICOM, not here
            int((fraction or "0").ljust(6, "0")),
        )
    except ValueError:
        raise SidecarInvalidField(
            f"the DICOM StudyTime {text!r} is not an HHMMSS time", field="timestamp"
        ) from None


def _offset(header: DicomHeader) -> timezone:
    text = _text(header, "TimezoneOffsetFromUTC")
    if text is None:
        return UTC
    match = _OFFSET_RE.fullmatch(text)
    try:
        if match is None:
            raise ValueError(text)
        sign = -1 if match[1] == "-" else 1
        return timezone(sign * timedelta(hours=int(match[2]), minutes=int(match[3])))
    except ValueError:
        raise SidecarInvalidField(
            f"the DICOM TimezoneOffsetFromUTC {text!r} is not +HHMM or -HHMM", field="timestamp"
        ) from None


def _image_size(header: DicomHeader) -> ImageSize | None:
    rows, columns = header.get("Rows"), header.get("Columns")
    try:
        width, height = int(columns), int(rows)
    except (TypeError, ValueError):
        return None
    if width < 1 or height < 1:
        return None
    return ImageSize(width=width, height=height)
