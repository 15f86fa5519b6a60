"""Bad images fail with the right typed error, before any pixel is decoded where possible."""

from __future__ import annotations

import io
import json
import struct

import cv2
import numpy as np
import pytest
from pydicom.encaps import encapsulate
from pydicom.uid import UID

from radstream.errors import (
    DicomNoPixelData,
    DicomUnsupportedTransferSyntax,
    ImageEmpty,
    ImageFileTooLarge,
    ImageFormatMismatch,
    ImageSizeMismatch,
    ImageTooLarge,
    ImageTooSmall,
    ImageTruncated,
    ImageUndecodable,
    ImageUnsupportedFormat,
    RadStreamError,
)
from radstream.imaging import ImagingLimits, Preprocessing, prepare_image
from radstream.loadgen.bad_inputs import BAD_KINDS, huge_png_header, make_bad_study
from radstream.loadgen.encoders import dicom_dataset, encode, encode_jpeg, to_uint8
from radstream.loadgen.phantom import synthetic_cxr

IMAGE_KINDS = [
    kind
    for kind, code in BAD_KINDS.items()
    if code.startswith(("IMAGE_", "DICOM_")) and code != "IMAGE_MISSING"
]


@pytest.fixture(scope="module")
def pixels16() -> np.ndarray:
    return synthetic_cxr(600, 700, np.random.default_rng(3))


@pytest.fixture(scope="module")
def png(pixels16: np.ndarray) -> bytes:
    return encode(pixels16, "png", rng=np.random.default_rng(0))[0]


@pytest.fixture(scope="module")
def jpeg(pixels16: np.ndarray) -> bytes:
    return encode_jpeg(to_uint8(pixels16))


@pytest.fixture(scope="module")
def dicom(pixels16: np.ndarray) -> bytes:
    return encode(pixels16, "dicom", rng=np.random.default_rng(0))[0]


@pytest.mark.parametrize("kind", IMAGE_KINDS)
def test_bad_study_images_raise_their_expected_code(kind: str) -> None:
    study = make_bad_study(kind, "bad-1", np.random.default_rng(9))
    size = json.loads(study.sidecar).get("image_size") or {}
    with pytest.raises(RadStreamError) as caught:
        prepare_image(
            study.image,
            filename=study.image_name,
            expected_size=(size.get("width"), size.get("height")),
        )
    assert caught.value.code == BAD_KINDS[kind]


def test_huge_png_header_is_refused_before_decoding() -> None:
    data = huge_png_header(100_000, 100_000)
    assert len(data) < 200
    with pytest.raises(ImageTooLarge) as caught:
        prepare_image(data, filename="huge.png")
    assert caught.value.details["width"] == 100_000


def test_huge_jpeg_and_dicom_headers_are_refused() -> None:
    sof = struct.pack(">BHHB", 8, 60_000, 60_000, 1) + b"\x01\x11\x00"
    jpeg = b"\xff\xd8" + b"\xff\xc0" + struct.pack(">H", 2 + len(sof)) + sof + b"\xff\xd9"
    with pytest.raises(ImageTooLarge):
        prepare_image(jpeg)
    ds = dicom_dataset(np.random.default_rng(0))
    ds.Rows, ds.Columns = 60_000, 60_000
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 12, 11, 0
    ds.PixelData = b"\x00" * 64
    buffer = io.BytesIO()
    ds.save_as(buffer, enforce_file_format=True)
    with pytest.raises(ImageTooLarge):
        prepare_image(buffer.getvalue())


def test_pixel_limit_is_configurable(png: bytes) -> None:
    with pytest.raises(ImageTooLarge):
        prepare_image(png, limits=ImagingLimits(max_pixels=600 * 700 - 1))
    assert prepare_image(png, limits=ImagingLimits(max_pixels=600 * 700)).width == 600
    huge = huge_png_header(20_000, 20_000)  # 400 M pixels: fine for the guard if allowed
    with pytest.raises(RadStreamError) as caught:
        prepare_image(huge, limits=ImagingLimits(max_pixels=10**9))
    assert not isinstance(caught.value, ImageTooLarge)  # it got past the guard


def test_file_size_limit_comes_before_format_checks(png: bytes) -> None:
    with pytest.raises(ImageFileTooLarge):
        prepare_image(png, limits=ImagingLimits(max_file_bytes=len(png) - 1))
    with pytest.raises(ImageFileTooLarge):
        prepare_image(b"not an image at all", limits=ImagingLimits(max_file_bytes=4))
    with pytest.raises(ImageEmpty):
        prepare_image(b"", limits=ImagingLimits(max_file_bytes=1))


def test_extension_must_match_content(png: bytes, jpeg: bytes, dicom: bytes) -> None:
    with pytest.raises(ImageFormatMismatch):
        prepare_image(png, filename="x.jpg")
    with pytest.raises(ImageFormatMismatch):
        prepare_image(jpeg, filename="x.PNG")
    with pytest.raises(ImageFormatMismatch):
        prepare_image(dicom, filename="x.jpeg")
    assert prepare_image(dicom, filename="IM000001").format == "dicom"
    assert prepare_image(jpeg, filename="x.JPG").format == "jpeg"


def test_text_is_unsupported() -> None:
    with pytest.raises(ImageUnsupportedFormat):
        prepare_image(b"Impression: normal chest.\n" * 10, filename="x.png")


def test_expected_size_is_checked_per_side(png: bytes) -> None:
    assert prepare_image(png, expected_size=(600, 700)).height == 700
    assert prepare_image(png, expected_size=(600, None)).height == 700
    assert prepare_image(png, expected_size=(None, None)).height == 700
    with pytest.raises(ImageSizeMismatch) as caught:
        prepare_image(png, expected_size=(700, 600))
    assert "700x600" in caught.value.message and "600x700" in caught.value.message
    with pytest.raises(ImageSizeMismatch):
        prepare_image(png, expected_size=(None, 701))


def test_too_small_image(pixels16: np.ndarray) -> None:
    small = cv2.imencode(".png", to_uint8(pixels16)[:200, :300])[1].tobytes()
    with pytest.raises(ImageTooSmall):
        prepare_image(small)
    assert prepare_image(small, preprocessing=Preprocessing(size=128)).tensor.shape[-1] == 128


@pytest.mark.filterwarnings("ignore:End of file reached before delimiter")
@pytest.mark.parametrize("fmt", ["png", "png16", "jpeg", "dicom", "dicom-rle", "dicom-jpeg"])
@pytest.mark.parametrize("keep", [0.3, 0.9])
def test_truncated_files_are_reported_as_truncated(
    pixels16: np.ndarray, fmt: str, keep: float
) -> None:
    data, ext = encode(pixels16, fmt, rng=np.random.default_rng(2))  # type: ignore[arg-type]
    with pytest.raises(ImageTruncated):
        prepare_image(data[: int(len(data) * keep)], filename=f"x{ext}")


def test_corrupt_png_is_undecodable(png: bytes) -> None:
    corrupt = bytearray(png)
    idat = png.index(b"IDAT")
    corrupt[idat + 100 : idat + 400] = b"\x00" * 300
    with pytest.raises(ImageUndecodable):
        prepare_image(bytes(corrupt))


def test_dicom_without_pixel_data() -> None:
    study = make_bad_study("dicom_no_pixel_data", "x", np.random.default_rng(0))
    with pytest.raises(DicomNoPixelData):
        prepare_image(study.image)


def test_unsupported_transfer_syntax(pixels16: np.ndarray) -> None:
    ds = dicom_dataset(np.random.default_rng(0))
    ds.file_meta.TransferSyntaxUID = UID("1.2.840.10008.1.2.4.100")  # MPEG-2: never decodable
    ds.Rows, ds.Columns = 700, 600
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 8, 8, 7, 0
    ds.PixelData = encapsulate([b"\x00\x00\x01\xb3" + b"\x00" * 60])
    ds["PixelData"].VR = "OB"
    buffer = io.BytesIO()
    ds.save_as(buffer, enforce_file_format=True)
    with pytest.raises(DicomUnsupportedTransferSyntax) as caught:
        prepare_image(buffer.getvalue())
    assert caught.value.details["transfer_syntax"] == "1.2.840.10008.1.2.4.100"


@pytest.mark.parametrize("keep", [0.3, 0.6, 0.95])
def test_cut_jpeg_patched_with_an_end_marker_is_truncated(jpeg: bytes, keep: float) -> None:
    # OpenCV decoded this with grey padding; the stream's entropy data ends early.
    patched = jpeg[: int(len(jpeg) * keep)] + b"\xff\xd9"
    with pytest.raises(ImageTruncated):
        prepare_image(patched, filename="x.jpg")


def test_jpeg_with_a_benign_warning_still_decodes(jpeg: bytes) -> None:
    # Stray bytes before the end marker make libjpeg warn ("extraneous bytes"), but
    # every block is there; such files exist in archives and must keep decoding.
    eoi = jpeg.rindex(b"\xff\xd9")
    noisy = jpeg[:eoi] + b"\x00\x00" + jpeg[eoi:]
    np.testing.assert_array_equal(prepare_image(noisy).tensor, prepare_image(jpeg).tensor)
