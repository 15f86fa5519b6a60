"""A deflated DICOM is inflated by pydicom in one piece: its size is bounded before that."""

from __future__ import annotations

import struct
import zlib

import pytest
from hostile_corpus import deflate_bomb
from real_radiographs import encoded

from radstream.errors import RadStreamError
from radstream.imaging import ImagingLimits, prepare_image
from radstream.imaging.deflated import check_inflated_size, deflated_stream_offset

MIB = 1024 * 1024


def _code(data: bytes) -> str:
    with pytest.raises(RadStreamError) as caught:
        prepare_image(data, filename="x.dcm")
    return caught.value.code


def test_a_deflate_bomb_fails_before_pydicom_inflates_it() -> None:
    bomb = deflate_bomb(128 * MIB)  # 128 MiB of zeros in about 130 kB
    assert len(bomb) < MIB
    assert _code(bomb) == "IMAGE_FILE_TOO_LARGE"


def test_the_bound_is_the_file_size_limit() -> None:
    bomb = deflate_bomb(128 * MIB)
    # Allowed an uncompressed file of 256 MiB, the same data set inflates and decodes.
    prepared = prepare_image(bomb, filename="x.dcm", limits=ImagingLimits(max_file_bytes=256 * MIB))
    assert prepared.width == prepared.height == 256
    with pytest.raises(RadStreamError) as caught:
        check_inflated_size(bomb, 64 * MIB)
    assert caught.value.details["max_file_bytes"] == 64 * MIB


def test_a_real_deflated_radiograph_passes_the_guard() -> None:
    data = encoded("deflated")
    assert deflated_stream_offset(data) is not None
    check_inflated_size(data, 64 * MIB)
    assert prepare_image(data, filename="x.dcm").width == 1841


def test_other_encodings_are_not_touched() -> None:
    assert deflated_stream_offset(encoded("explicit-le")) is None


def test_a_cut_or_corrupt_deflated_stream_fails_with_its_code() -> None:
    data = encoded("deflated")
    start = deflated_stream_offset(data)
    assert start is not None
    assert _code(data[: start + (len(data) - start) // 2]) == "IMAGE_TRUNCATED"
    corrupt = data[:start] + b"\xff" * 64 + data[start + 64 :]
    assert _code(corrupt) == "IMAGE_UNDECODABLE"


def _command_set_before_stream(data: bytes) -> bytes:
    """``data`` with a command set element (0000,0002), implicit VR as pydicom reads it,
    between the file meta and the deflated stream: pydicom reads it before it inflates."""
    start = deflated_stream_offset(data)
    assert start is not None
    uid = b"1.2.840.10008.5.1.4.1.1.1\x00"
    element = struct.pack("<HHI", 0x0000, 0x0002, len(uid)) + uid
    return data[:start] + element + data[start:]


def test_a_bomb_with_an_implicit_vr_file_meta_fails_too() -> None:
    # pydicom reads a file meta whose VR bytes are not letters as implicit VR, and still
    # inflates the data set after it: the guard has to find the stream the same way.
    bomb = deflate_bomb(128 * MIB, implicit_meta=True)
    assert bomb[132 + 4 : 132 + 6] == b"\x1a\x00"  # a length where the VR would be
    assert deflated_stream_offset(bomb) is not None
    assert _code(bomb) == "IMAGE_FILE_TOO_LARGE"


def test_the_stream_starts_where_pydicom_starts_inflating() -> None:
    explicit = deflate_bomb(16 * MIB)
    for data in (
        explicit,
        deflate_bomb(16 * MIB, implicit_meta=True),
        _command_set_before_stream(explicit),
    ):
        start = deflated_stream_offset(data)
        assert start is not None
        first = zlib.decompressobj(-zlib.MAX_WBITS).decompress(data[start:], 64)
        assert first.startswith(b"\x08\x00\x16\x00UI")  # (0008,0016) SOP Class UID


def test_a_command_set_before_the_stream_is_read_past() -> None:
    # A real deflated radiograph with a command set still decodes, as pydicom reads it,
    # and a bomb behind one is still refused.
    data = _command_set_before_stream(encoded("deflated"))
    assert prepare_image(data, filename="x.dcm").width == 1841
    assert _code(_command_set_before_stream(deflate_bomb(128 * MIB))) == "IMAGE_FILE_TOO_LARGE"


def test_a_file_meta_pydicom_cannot_read_is_not_inflated() -> None:
    # No transfer syntax pydicom can find: it reads the data set as it is, never inflating.
    assert deflated_stream_offset(b"\x00" * 128 + b"DICM" + b"\x02\x00") is None
    assert deflated_stream_offset(b"") is None
