"""Decode work is bounded: JPEG scans are counted before decoding, and the size inside a
compressed DICOM frame must agree with the header that passed the pixel guard."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.encaps import encapsulate
from pydicom.uid import JPEGBaseline8Bit, SecondaryCaptureImageStorage, generate_uid

from radstream.errors import RadStreamError
from radstream.imaging import prepare_image
from radstream.imaging.jpeg import MAX_JPEG_SCANS, check_scan_count

_SOS = b"\xff\xda"


def _progressive(width: int = 640, height: int = 720) -> bytes:
    rng = np.random.default_rng(4)
    pixels = (rng.random((height, width)) * 255).astype(np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, "JPEG", progressive=True, quality=90)
    return buffer.getvalue()


def _with_repeated_scans(data: bytes, copies: int) -> bytes:
    """The stream with its shortest scan repeated ``copies`` times (as the issue's probe
    did: 1,500 scans in 300 KB), inserted before the end-of-image marker."""
    starts = [i for i in range(len(data) - 1) if data[i : i + 2] == _SOS]
    spans = [data[a:b] for a, b in zip(starts, [*starts[1:], len(data) - 2], strict=True)]
    return data[:-2] + min(spans, key=len) * copies + data[-2:]


def test_a_jpeg_with_too_many_scans_fails_before_decoding() -> None:
    data = _with_repeated_scans(_progressive(), 1_500)
    with pytest.raises(RadStreamError) as caught:
        prepare_image(data, filename="x.jpg")
    assert caught.value.code == "IMAGE_TOO_COMPLEX"
    assert caught.value.details["limit"] == MAX_JPEG_SCANS
    assert caught.value.details["scans"] > MAX_JPEG_SCANS
    assert "baseline" in caught.value.hint


def test_an_ordinary_progressive_jpeg_is_well_within_the_limit() -> None:
    data = _progressive()
    assert 1 < check_scan_count(data) <= 12
    prepared = prepare_image(data, filename="x.jpg")
    assert prepared.tensor.shape[-1] == 224


def _jpeg_dicom(rows: int, columns: int, frame: bytes) -> bytes:
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = SecondaryCaptureImageStorage
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = JPEGBaseline8Bit
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID = SecondaryCaptureImageStorage
    ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
    ds.Modality = "DX"
    ds.Rows, ds.Columns = rows, columns
    ds.SamplesPerPixel = 3
    ds.PhotometricInterpretation = "YBR_FULL_422"
    ds.PlanarConfiguration = 0
    ds.BitsAllocated = ds.BitsStored = 8
    ds.HighBit = 7
    ds.PixelRepresentation = 0
    ds.PixelData = encapsulate([frame])
    ds["PixelData"].VR = "OB"
    buffer = io.BytesIO()
    ds.save_as(buffer, enforce_file_format=True, implicit_vr=False, little_endian=True)
    return buffer.getvalue()


def _rgb_jpeg(width: int, height: int) -> bytes:
    pixels = np.zeros((height, width, 3), dtype=np.uint8)
    pixels[..., 0] = 200
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, "JPEG", quality=80)
    return buffer.getvalue()


def _forge_size(jpeg: bytes, width: int, height: int) -> bytes:
    """The same stream with its frame header claiming ``width`` x ``height``."""
    sof = jpeg.index(b"\xff\xc0")
    patched = bytearray(jpeg)
    patched[sof + 5 : sof + 7] = height.to_bytes(2, "big")
    patched[sof + 7 : sof + 9] = width.to_bytes(2, "big")
    return bytes(patched)


def test_a_dicom_frame_larger_than_its_header_fails_before_decoding() -> None:
    # The header says 1000x1000 (passes the 50 MP guard); the frame says 13000x13000 RGB,
    # which a decoder would allocate half a gigabyte for before finding the data short.
    frame = _forge_size(_rgb_jpeg(1000, 1000), 13_000, 13_000)
    with pytest.raises(RadStreamError) as caught:
        prepare_image(_jpeg_dicom(1000, 1000, frame), filename="x.dcm")
    assert caught.value.code == "IMAGE_SIZE_MISMATCH"
    assert (caught.value.details["frame_width"], caught.value.details["frame_height"]) == (
        13_000,
        13_000,
    )
    assert "PACS" in caught.value.details["hint"]


def test_a_dicom_frame_that_matches_its_header_decodes() -> None:
    prepared = prepare_image(_jpeg_dicom(400, 500, _rgb_jpeg(500, 400)), filename="x.dcm")
    assert prepared.tensor.shape[-1] == 224
