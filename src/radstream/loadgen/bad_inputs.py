"""Studies built to fail, each with the error code the pipeline must report.

Every kind breaks exactly one thing; everything else about the study is valid, so the
expected code is unambiguous. Images are small (600x700) unless size is the point.
"""

from __future__ import annotations

import io
import json
import struct
import zlib
from collections.abc import Callable
from typing import Final

import numpy as np

from radstream.loadgen.encoders import dicom_dataset, encode
from radstream.loadgen.phantom import synthetic_cxr
from radstream.loadgen.study import Study, patient_id, sidecar_bytes, sidecar_fields

BAD_WIDTH: Final = 600
BAD_HEIGHT: Final = 700
HUGE_SIDE: Final = 100_000
_SIDECAR_LIMIT: Final = 1024 * 1024
_DEEP_NESTING: Final = 40

# Ordered so that any prefix mixes sidecar, image and DICOM problems: make_studies
# cycles through this order, and a run with few invalid studies still sees variety.
BAD_KINDS: Final[dict[str, str]] = {
    "sidecar_invalid_json": "SIDECAR_INVALID_JSON",
    "image_truncated_jpeg": "IMAGE_TRUNCATED",
    "sidecar_missing_field": "SIDECAR_MISSING_FIELD",
    "image_empty": "IMAGE_EMPTY",
    "study_id_invalid": "STUDY_ID_INVALID",
    "image_not_an_image": "IMAGE_UNSUPPORTED_FORMAT",
    "sidecar_wrong_type_view": "SIDECAR_INVALID_FIELD",
    "image_too_large": "IMAGE_TOO_LARGE",
    "dicom_no_pixel_data": "DICOM_NO_PIXEL_DATA",
    "image_never_arrives": "IMAGE_MISSING",
    "sidecar_not_utf8": "SIDECAR_NOT_UTF8",
    "image_format_mismatch": "IMAGE_FORMAT_MISMATCH",
    "sidecar_too_large": "SIDECAR_TOO_LARGE",
    "image_size_mismatch": "IMAGE_SIZE_MISMATCH",
    "sidecar_too_deep": "SIDECAR_TOO_DEEP",
    "image_truncated_png": "IMAGE_TRUNCATED",
    "sidecar_wrong_type_size": "SIDECAR_INVALID_FIELD",
}


def make_bad_study(kind: str, study_id: str, rng: np.random.Generator) -> Study:
    """Build a study of ``kind`` (a key of ``BAD_KINDS``) under the safe id ``study_id``.

    ``Study.study_id`` is always ``study_id``, usable as an upload folder; for
    ``study_id_invalid`` the sidecar itself carries the unsafe id.
    """
    try:
        builder = _BUILDERS[kind]
    except KeyError:
        known = ", ".join(BAD_KINDS)
        raise ValueError(f"unknown bad kind {kind!r}; expected one of {known}") from None
    image_name, image, sidecar = builder(study_id, rng)
    return Study(
        study_id=study_id,
        image_name=image_name,
        image=image,
        sidecar=sidecar,
        expected_code=BAD_KINDS[kind],
    )


# Each builder returns (image_name, image bytes, sidecar bytes).
_Parts = tuple[str, bytes, bytes]


def _valid_parts(
    study_id: str, rng: np.random.Generator, fmt: str = "jpeg"
) -> tuple[str, bytes, dict[str, object]]:
    """A valid small image and the sidecar fields that describe it."""
    pixels = synthetic_cxr(BAD_WIDTH, BAD_HEIGHT, rng)
    image, ext = encode(pixels, "png" if fmt == "png" else "jpeg", rng=rng)
    fields = sidecar_fields(study_id, rng, width=BAD_WIDTH, height=BAD_HEIGHT)
    return f"{study_id}{ext}", image, fields


def _sidecar_invalid_json(study_id: str, rng: np.random.Generator) -> _Parts:
    name, image, fields = _valid_parts(study_id, rng)
    text = sidecar_bytes(fields).rstrip()
    return name, image, text[:-1] + b",\n"  # closing brace replaced by a dangling comma


def _sidecar_missing_field(study_id: str, rng: np.random.Generator) -> _Parts:
    name, image, fields = _valid_parts(study_id, rng)
    # study_id stays: without it the pipeline could not tell whose sidecar failed.
    del fields[str(rng.choice(["view", "timestamp"]))]
    return name, image, sidecar_bytes(fields)


def _sidecar_wrong_type_view(study_id: str, rng: np.random.Generator) -> _Parts:
    name, image, fields = _valid_parts(study_id, rng)
    fields["view"] = 5
    return name, image, sidecar_bytes(fields)


def _sidecar_wrong_type_size(study_id: str, rng: np.random.Generator) -> _Parts:
    name, image, fields = _valid_parts(study_id, rng)
    fields["image_size"] = {"width": "wide", "height": BAD_HEIGHT}
    return name, image, sidecar_bytes(fields)


def _sidecar_not_utf8(study_id: str, rng: np.random.Generator) -> _Parts:
    name, image, fields = _valid_parts(study_id, rng)
    fields["referring_physician"] = "Dr. José Müller"
    text = json.dumps(fields, indent=2, ensure_ascii=False)
    return name, image, text.encode("latin-1")  # é and ü become lone bytes, invalid UTF-8


def _sidecar_too_large(study_id: str, rng: np.random.Generator) -> _Parts:
    name, image, fields = _valid_parts(study_id, rng)
    fields["annotations"] = {"notes": "x" * (_SIDECAR_LIMIT + 1024)}
    return name, image, sidecar_bytes(fields)


def _sidecar_too_deep(study_id: str, rng: np.random.Generator) -> _Parts:
    name, image, fields = _valid_parts(study_id, rng)
    nested: object = "deep"
    for _ in range(_DEEP_NESTING):
        nested = [nested]
    fields["annotations"] = {"nested": nested}
    return name, image, sidecar_bytes(fields)


def _study_id_invalid(study_id: str, rng: np.random.Generator) -> _Parts:
    name, image, fields = _valid_parts(study_id, rng)
    fields["study_id"] = f"../{study_id}" if rng.random() < 0.5 else f"{study_id}/evil"
    return name, image, sidecar_bytes(fields)


def _image_empty(study_id: str, rng: np.random.Generator) -> _Parts:
    name, _, fields = _valid_parts(study_id, rng)
    return name, b"", sidecar_bytes(fields)


def _image_truncated_jpeg(study_id: str, rng: np.random.Generator) -> _Parts:
    name, image, fields = _valid_parts(study_id, rng, "jpeg")
    cut = int(len(image) * rng.uniform(0.4, 0.8))
    return name, image[:cut], sidecar_bytes(fields)


def _image_truncated_png(study_id: str, rng: np.random.Generator) -> _Parts:
    name, image, fields = _valid_parts(study_id, rng, "png")
    cut = int(len(image) * rng.uniform(0.4, 0.8))
    return name, image[:cut], sidecar_bytes(fields)


def _image_not_an_image(study_id: str, rng: np.random.Generator) -> _Parts:
    fields = sidecar_fields(study_id, rng, width=BAD_WIDTH, height=BAD_HEIGHT)
    text = b"This is a radiology report, not an image.\nImpression: no acute findings.\n"
    return f"{study_id}.png", text * 20, sidecar_bytes(fields)


def _image_too_large(study_id: str, rng: np.random.Generator) -> _Parts:
    fields = sidecar_fields(study_id, rng, width=HUGE_SIDE, height=HUGE_SIDE)
    return f"{study_id}.png", huge_png_header(HUGE_SIDE, HUGE_SIDE), sidecar_bytes(fields)


def huge_png_header(width: int, height: int) -> bytes:
    """A structurally valid PNG that declares ``width`` x ``height`` 8-bit gray pixels.

    Only a few bytes of image data follow, so a decoder that trusts the header before
    checking it would try to allocate ``width * height`` bytes.
    """
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    idat = zlib.compress(b"\x00" * 64)
    return (
        b"\x89PNG\r\n\x1a\n"
        + _png_chunk(b"IHDR", ihdr)
        + _png_chunk(b"IDAT", idat)
        + (_png_chunk(b"IEND", b""))
    )


def _png_chunk(kind: bytes, payload: bytes) -> bytes:
    crc = zlib.crc32(kind + payload) & 0xFFFFFFFF
    return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", crc)


def _image_format_mismatch(study_id: str, rng: np.random.Generator) -> _Parts:
    _, image, fields = _valid_parts(study_id, rng, "png")
    return f"{study_id}.jpg", image, sidecar_bytes(fields)


def _dicom_no_pixel_data(study_id: str, rng: np.random.Generator) -> _Parts:
    patient = patient_id(rng)
    ds = dicom_dataset(rng, patient_id=patient)
    # A complete image pixel module without the pixel data itself, as a broken export
    # (or a report mislabelled as an image) produces.
    ds.Rows, ds.Columns = BAD_HEIGHT, BAD_WIDTH
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 12, 11, 0
    buffer = io.BytesIO()
    ds.save_as(buffer, enforce_file_format=True)
    fields = sidecar_fields(study_id, rng, width=BAD_WIDTH, height=BAD_HEIGHT, patient=patient)
    return f"{study_id}.dcm", buffer.getvalue(), sidecar_bytes(fields)


def _image_size_mismatch(study_id: str, rng: np.random.Generator) -> _Parts:
    name, image, fields = _valid_parts(study_id, rng)
    # Width and height swapped: the classic mix-up of (rows, columns) and (width, height).
    fields["image_size"] = {"width": BAD_HEIGHT, "height": BAD_WIDTH}
    return name, image, sidecar_bytes(fields)


def _image_never_arrives(study_id: str, rng: np.random.Generator) -> _Parts:
    fields = sidecar_fields(study_id, rng, width=BAD_WIDTH, height=BAD_HEIGHT)
    return "", b"", sidecar_bytes(fields)


_BUILDERS: Final[dict[str, Callable[[str, np.random.Generator], _Parts]]] = {
    "sidecar_invalid_json": _sidecar_invalid_json,
    "image_truncated_jpeg": _image_truncated_jpeg,
    "sidecar_missing_field": _sidecar_missing_field,
    "image_empty": _image_empty,
    "study_id_invalid": _study_id_invalid,
    "image_not_an_image": _image_not_an_image,
    "sidecar_wrong_type_view": _sidecar_wrong_type_view,
    "image_too_large": _image_too_large,
    "dicom_no_pixel_data": _dicom_no_pixel_data,
    "image_never_arrives": _image_never_arrives,
    "sidecar_not_utf8": _sidecar_not_utf8,
    "image_format_mismatch": _image_format_mismatch,
    "sidecar_too_large": _sidecar_too_large,
    "image_size_mismatch": _image_size_mismatch,
    "sidecar_too_deep": _sidecar_too_deep,
    "image_truncated_png": _image_truncated_png,
    "sidecar_wrong_type_size": _sidecar_wrong_type_size,
}
