"""A deflated DICOM is inflated by pydicom in one piece: its size is bounded before that."""

from __future__ import annotations

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
