"""One synthetic study: an encoded image plus the sidecar that describes it."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any, Final, Literal, cast

import numpy as np

from radstream.loadgen.encoders import ENCODE_FORMATS, EncodeFormat, encode
from radstream.loadgen.phantom import synthetic_cxr

_VIEWS: Final = ("PA", "AP", "LATERAL")
_EPOCH: Final = datetime(2023, 1, 1, 8, 0, 0)
_TWO_YEARS_S: Final = 2 * 365 * 24 * 3600


@dataclass(frozen=True)
class Study:
    """Files for one upload under ``incoming/{study_id}/``.

    ``image_name`` is ``"{stem}{ext}"`` and the sidecar is uploaded as ``{stem}.json``; an
    empty ``image_name`` (with empty ``image``) means no image is uploaded at all.
    ``expected_code`` is the error code the pipeline should fail with, ``None`` for a study
    that should succeed.
    """

    study_id: str
    image_name: str
    image: bytes
    sidecar: bytes
    expected_code: str | None

    def renamed(self, study_id: str) -> Study:
        """The same files under another study id: a distinct upload, identical pixels.

        The sidecar's ``"study_id"`` value is rewritten in place (bytes, not re-encoded),
        so bad sidecars stay exactly as bad; the image stem follows the new id when it
        was the old id.
        """
        sidecar = self.sidecar.replace(f'"{self.study_id}"'.encode(), f'"{study_id}"'.encode(), 1)
        stem, dot, ext = self.image_name.rpartition(".")
        image_name = f"{study_id}.{ext}" if dot and stem == self.study_id else self.image_name
        return Study(study_id, image_name, self.image, sidecar, self.expected_code)


def check_format(fmt: str) -> EncodeFormat:
    """Return ``fmt`` typed as an encoder format, or raise ValueError."""
    if fmt not in ENCODE_FORMATS:
        raise ValueError(f"unknown format {fmt!r}; expected one of {', '.join(ENCODE_FORMATS)}")
    return cast(EncodeFormat, fmt)


SidecarFields = dict[str, Any]
"""A sidecar's JSON object before it is serialised. A JSON boundary, and deliberately loose:
the bad inputs break its shape and types on purpose."""


def patient_id(rng: np.random.Generator) -> str:
    """A synthetic patient id such as ``SYN-000123`` (never a real identifier)."""
    return f"SYN-{int(rng.integers(0, 1_000_000)):06d}"


def sidecar_fields(
    study_id: str,
    rng: np.random.Generator,
    *,
    width: int | None,
    height: int | None,
    patient: str | None = None,
    modality: str | None = None,
) -> SidecarFields:
    """A valid sidecar as a dict, with the variety real sidecars show.

    Views are sometimes lower-case, timestamps end in ``Z``, an offset or nothing, the
    height is sometimes null and an unknown key sometimes appears; all of that must be
    accepted. ``study_id`` comes first so that it is the first quoted occurrence of the
    id in the JSON text, which callers that re-home a study rely on.
    """
    view = str(rng.choice(_VIEWS))
    if rng.random() < 0.25:
        view = view.lower()
    fields: SidecarFields = {
        "study_id": study_id,
        "view": view,
        "timestamp": _timestamp(rng),
        "patient_id": patient or patient_id(rng),
        "modality": modality or str(rng.choice(["CR", "DX"])),
        "body_part": "CHEST",
        "image_size": {
            "width": width,
            "height": None if height is None or rng.random() < 0.2 else height,
        },
    }
    if rng.random() < 0.2:
        fields["x_site_note"] = "synthetic study; unknown keys must be ignored"
    return fields


def _timestamp(rng: np.random.Generator) -> str:
    moment = _EPOCH + timedelta(seconds=int(rng.integers(0, _TWO_YEARS_S)))
    style = int(rng.integers(0, 3))
    if style == 0:
        return moment.strftime("%Y-%m-%dT%H:%M:%SZ")
    if style == 1:
        offset = timezone(timedelta(hours=int(rng.integers(-8, 10))))
        return moment.replace(tzinfo=offset).isoformat()
    return moment.isoformat()  # naive: read as UTC by the pipeline


def sidecar_bytes(fields: SidecarFields) -> bytes:
    """Serialise sidecar fields as pretty UTF-8 JSON."""
    return json.dumps(fields, indent=2, ensure_ascii=False).encode("utf-8")


def make_study(
    study_id: str,
    fmt: str,
    rng: np.random.Generator,
    *,
    width: int = 2000,
    height: int = 2500,
) -> Study:
    """A valid study: a synthetic chest image encoded as ``fmt`` and a matching sidecar."""
    encode_format = check_format(fmt)
    patient = patient_id(rng)
    modality: Literal["CR", "DX"] = "CR" if rng.random() < 0.5 else "DX"
    pixels = synthetic_cxr(width, height, rng)
    image, ext = encode(pixels, encode_format, rng=rng, patient_id=patient, modality=modality)
    fields = sidecar_fields(
        study_id, rng, width=width, height=height, patient=patient, modality=modality
    )
    return Study(
        study_id=study_id,
        image_name=f"{study_id}{ext}",
        image=image,
        sidecar=sidecar_bytes(fields),
        expected_code=None,
    )
