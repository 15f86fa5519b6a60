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
    raise ImageUnsupportedFormat(
        "the content is not PNG, JPEG or DICOM", leading_bytes=data[:16].hex()
    )


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
