"""Format sniffing by content and by file name."""

from __future__ import annotations

import pytest

from radstream.errors import ImageEmpty, ImageUnsupportedFormat
from radstream.imaging import extension_format, sniff_format


def test_sniff_recognises_magic_bytes() -> None:
    assert sniff_format(b"\x89PNG\r\n\x1a\n" + b"\x00" * 30) == "png"
    assert sniff_format(b"\xff\xd8\xff\xe0" + b"\x00" * 30) == "jpeg"
    assert sniff_format(b"\x00" * 128 + b"DICM" + b"\x02\x00") == "dicom"


def test_sniff_recognises_dicom_without_preamble() -> None:
    explicit = b"\x08\x00\x05\x00CS\x0a\x00ISO_IR 100"
    implicit = b"\x08\x00\x16\x00\x1a\x00\x00\x00" + b"1.2.840.10008.5.1.4.1.1.1\x00"
    assert sniff_format(explicit) == "dicom"
    assert sniff_format(implicit) == "dicom"


def test_sniff_refuses_empty_and_unknown() -> None:
    with pytest.raises(ImageEmpty):
        sniff_format(b"")
    for data in (b"GIF89a" + b"\x00" * 20, b"hello world", b"\xff\xd8", b"\x08\x00"):
        with pytest.raises(ImageUnsupportedFormat):
            sniff_format(data)


@pytest.mark.parametrize(
    ("name", "fmt"),
    [
        ("a.png", "png"),
        ("A.PNG", "png"),
        ("x.jpg", "jpeg"),
        ("X.JPG", "jpeg"),
        ("x.Jpeg", "jpeg"),
        ("x.jpe", "jpeg"),
        ("scan.dcm", "dicom"),
        ("scan.DICOM", "dicom"),
        ("folder.v2/IM000001", None),
        ("noext", None),
        ("notes.txt", None),
    ],
)
def test_extension_format_is_case_insensitive(name: str, fmt: str | None) -> None:
    assert extension_format(name) == fmt
