"""Telling PNG, JPEG and DICOM apart by content and by file name."""

from __future__ import annotations

from pathlib import PurePath
from typing import Final, Literal

from radstream.errors import ImageEmpty, ImageUnsupportedFormat

ImageFormat = Literal["png", "jpeg", "dicom"]

PNG_SIGNATURE: Final = b"\x89PNG\r\n\x1a\n"
JPEG_SOI: Final = b"\xff\xd8\xff"
DICOM_PREAMBLE_LENGTH: Final = 128
DICOM_MAGIC: Final = b"DICM"

_EXTENSIONS: Final[dict[str, ImageFormat]] = {
    ".png": "png",
    ".jpg": "jpeg",
    ".jpeg": "jpeg",
    ".jpe": "jpeg",
    ".dcm": "dicom",
    ".dicom": "dicom",
}

# Value representations of the DICOM standard, for recognising explicit-VR data sets
# written without the 128-byte preamble.
_DICOM_VRS: Final = frozenset(
    b"AE AS AT CS DA DS DT FD FL IS LO LT OB OD OF OL OV OW PN SH SL SQ SS ST SV TM UC UI "
    b"UL UN UR US UT UV".split()
)


def sniff_format(data: bytes) -> ImageFormat:
    """Return the image format of ``data`` judged by its leading bytes.

    Raises ``ImageEmpty`` for zero bytes and ``ImageUnsupportedFormat`` when the bytes are
    not recognisably PNG, JPEG or DICOM.
    """
    if not data:
        raise ImageEmpty("the image file has zero bytes")
    if data.startswith(PNG_SIGNATURE):
        return "png"
    if data.startswith(JPEG_SOI):
        return "jpeg"
    if data[DICOM_PREAMBLE_LENGTH : DICOM_PREAMBLE_LENGTH + 4] == DICOM_MAGIC:
        return "dicom"
    if _looks_like_bare_dicom(data):
        return "dicom"
    # The name of what it looks like, never its bytes: a failure object must not carry
    # the content of a file uploaded by mistake (a password file, a DICOM header's name).
    found = signature_name(data)
    raise ImageUnsupportedFormat(
        f"the content is not PNG, JPEG or DICOM (it looks like {found})", looks_like=found
    )


_SIGNATURES: tuple[tuple[bytes, str], ...] = (
    (b"GIF87a", "GIF"),
    (b"GIF89a", "GIF"),
    (b"BM", "BMP"),
    (b"II*\x00", "TIFF"),
    (b"MM\x00*", "TIFF"),
    (b"%PDF", "PDF"),
    (b"PK\x03\x04", "ZIP"),
    (b"\x1f\x8b", "gzip"),
    (b"\x7fELF", "ELF executable"),
    (b"\x00\x00\x00\x0cjP  ", "JPEG 2000"),
    (b"\xff\x4f\xff\x51", "JPEG 2000 codestream"),
)


def signature_name(data: bytes) -> str:
    """What ``data`` looks like by its first bytes: a format name, "text" or "unknown data"."""
    for magic, name in _SIGNATURES:
        if data.startswith(magic):
            return name
    if data.startswith(b"RIFF") and data[8:12] == b"WEBP":
        return "WebP"
    head = data[:512]
    try:
        text = head.decode("utf-8")
    except UnicodeDecodeError:
        return "unknown data"
    return "text" if all(c.isprintable() or c in "\r\n\t" for c in text) else "unknown data"


def _looks_like_bare_dicom(data: bytes) -> bool:
    """Cheap test for a DICOM data set stored without preamble (seen from old PACS exports).

    Such files start directly with a little-endian element of group 0x0002 (file meta) or
    0x0008 (identification). Requiring a valid VR, or for implicit VR a length that fits
    the file, keeps random bytes from passing; anything that slips through still fails
    cleanly in the DICOM decoder.
    """
    if len(data) < 8 or data[1] != 0 or data[0] not in (0x02, 0x08) or data[3] != 0:
        return False
    if data[4:6] in _DICOM_VRS:
        return True
    return int.from_bytes(data[4:8], "little") <= len(data) - 8


def extension_format(filename: str) -> ImageFormat | None:
    """Return the format that ``filename``'s extension promises, case-insensitively.

    ``None`` means the name carries no known image extension (DICOM files often have
    none), so the content is not checked against the name.
    """
    return _EXTENSIONS.get(PurePath(filename).suffix.lower())
