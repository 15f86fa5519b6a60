"""Every supported encoding decodes to the right tensor, with the right values."""

from __future__ import annotations

import io

import cv2
import numpy as np
import pydicom
import pytest
from pydicom.dataset import Dataset
from pydicom.encaps import encapsulate
from pydicom.pixels.utils import pixel_array
from pydicom.uid import JPEGBaseline8Bit, RLELossless

from radstream.imaging import Preprocessing, prepare_image
from radstream.imaging.dicom import decode_dicom, read_dicom_header
from radstream.imaging.dicom_jpeg import decode_jpeg_frame
from radstream.imaging.jpeg import choose_decode_scale
from radstream.imaging.rle import decode_rle_frame
from radstream.loadgen.encoders import dicom_dataset, encode, encode_jpeg, to_uint8
from radstream.loadgen.phantom import synthetic_cxr

WIDTH, HEIGHT = 600, 700


@pytest.fixture(scope="module")
def pixels16() -> np.ndarray:
    return synthetic_cxr(WIDTH, HEIGHT, np.random.default_rng(11))


def png_bytes(pixels: np.ndarray) -> bytes:
    ok, buffer = cv2.imencode(".png", pixels)
    assert ok
    return buffer.tobytes()


def dicom_bytes(
    stored: np.ndarray,
    *,
    photometric: str = "MONOCHROME2",
    slope: float | None = None,
    intercept: float | None = None,
    bits_stored: int = 12,
    signed: bool = False,
    compress: str | None = None,
) -> bytes:
    """A Part-10 file holding ``stored`` as given (no inversion done here)."""
    ds = dicom_dataset(np.random.default_rng(0))
    ds.Rows, ds.Columns = stored.shape
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = photometric
    ds.BitsAllocated = stored.dtype.itemsize * 8
    ds.BitsStored = bits_stored
    ds.HighBit = bits_stored - 1
    ds.PixelRepresentation = 1 if signed else 0
    if compress == JPEGBaseline8Bit:
        ok, jpeg = cv2.imencode(".jpg", stored, [cv2.IMWRITE_JPEG_QUALITY, 95])
        assert ok
        ds.file_meta.TransferSyntaxUID = JPEGBaseline8Bit
        ds.PixelData = encapsulate([jpeg.tobytes()])
        ds["PixelData"].VR = "OB"
    else:
        ds.PixelData = stored.tobytes()
        ds["PixelData"].VR = "OW" if ds.BitsAllocated > 8 else "OB"
    if slope is not None:
        ds.RescaleSlope = slope
        ds.RescaleIntercept = intercept or 0.0
    if compress == RLELossless:
        ds.compress(RLELossless, generate_instance_uid=False)
    buffer = io.BytesIO()
    ds.save_as(buffer, enforce_file_format=True)
    return buffer.getvalue()


@pytest.mark.parametrize("fmt", ["png", "png16", "jpeg", "dicom", "dicom-rle", "dicom-jpeg"])
def test_every_format_gives_a_model_tensor(pixels16: np.ndarray, fmt: str) -> None:
    data, ext = encode(pixels16, fmt, rng=np.random.default_rng(1))  # type: ignore[arg-type]
    prepared = prepare_image(data, filename=f"study{ext}", expected_size=(WIDTH, HEIGHT))
    tensor = prepared.tensor
    assert tensor.shape == (1, 1, 224, 224)
    assert tensor.dtype == np.float32
    assert tensor.flags.c_contiguous
    assert np.isfinite(tensor).all()
    assert -1024.0 <= tensor.min() < -500.0  # the air around the body is dark
    assert 0.0 < tensor.max() <= 1024.0
    assert (prepared.width, prepared.height) == (WIDTH, HEIGHT)
    assert prepared.format == {".png": "png", ".jpg": "jpeg", ".dcm": "dicom"}[ext]


def test_three_channels_and_custom_range(pixels16: np.ndarray) -> None:
    data = png_bytes(to_uint8(pixels16))
    prepared = prepare_image(
        data, preprocessing=Preprocessing(size=128, input_min=0.0, input_max=1.0, channels=3)
    )
    tensor = prepared.tensor
    assert tensor.shape == (1, 3, 128, 128)
    assert tensor.flags.c_contiguous
    assert np.array_equal(tensor[0, 0], tensor[0, 2])
    assert tensor.min() >= 0.0 and tensor.max() <= 1.0


def test_png_values_follow_the_torchxrayvision_formula() -> None:
    gray = np.full((300, 300), 51, dtype=np.uint8)
    tensor = prepare_image(png_bytes(gray)).tensor
    np.testing.assert_allclose(tensor, (2 * (51 / 255) - 1) * 1024, rtol=1e-5)
    white16 = np.full((300, 300), 65535, dtype=np.uint16)
    np.testing.assert_allclose(prepare_image(png_bytes(white16)).tensor, 1024.0)


def test_16_bit_png_matches_8_bit_within_quantisation(pixels16: np.ndarray) -> None:
    t16 = prepare_image(png_bytes(pixels16)).tensor
    t8 = prepare_image(png_bytes(to_uint8(pixels16))).tensor
    # Dropping the low byte loses at most one 8-bit step: 2048 / 255 input units.
    assert np.abs(t16 - t8).max() <= 2048 / 255 + 1e-3
    assert prepare_image(png_bytes(pixels16)).bit_depth == 16


def test_colour_png_becomes_luminance(pixels16: np.ndarray) -> None:
    gray = to_uint8(pixels16)
    rgb = np.dstack([gray, gray, gray])
    rgba = np.dstack([gray, gray, gray, np.full_like(gray, 255)])
    reference = prepare_image(png_bytes(gray)).tensor
    np.testing.assert_allclose(prepare_image(png_bytes(rgb)).tensor, reference, atol=1e-3)
    np.testing.assert_allclose(prepare_image(png_bytes(rgba)).tensor, reference, atol=1e-3)
    red = np.zeros((300, 300, 3), dtype=np.uint8)
    red[..., 2] = 255  # OpenCV writes BGR
    value = float(prepare_image(png_bytes(red)).tensor.mean())
    assert value == pytest.approx((2 * 0.299 - 1) * 1024, abs=10)


@pytest.mark.parametrize(
    ("width", "height", "scale"),
    [(2000, 2500, 8), (1800, 2000, 8), (1700, 2000, 4), (600, 700, 2), (300, 400, 1)],
)
def test_jpeg_decode_scale_keeps_short_side_above_model_size(
    width: int, height: int, scale: int
) -> None:
    from radstream.imaging.decoded import ImageHeader

    assert choose_decode_scale(ImageHeader(width, height, 8), 224) == scale


def test_reduced_jpeg_decode_is_close_to_full_decode() -> None:
    pixels8 = to_uint8(synthetic_cxr(1800, 2000, np.random.default_rng(5)))
    reduced = prepare_image(encode_jpeg(pixels8), filename="CHEST.JPG")
    lossless_full = prepare_image(png_bytes(pixels8))
    assert reduced.decode_scale == 8
    assert lossless_full.decode_scale == 1
    difference = np.abs(reduced.tensor - lossless_full.tensor)
    assert difference.mean() < 4.0  # of a 2048-wide range: 0.2 %
    assert difference.max() < 30.0


def test_monochrome1_is_inverted(pixels16: np.ndarray) -> None:
    stored = pixels16 >> 4
    normal = prepare_image(dicom_bytes(stored))
    inverted = prepare_image(dicom_bytes(4095 - stored, photometric="MONOCHROME1"))
    assert inverted.photometric == "MONOCHROME1"
    np.testing.assert_allclose(inverted.tensor, normal.tensor, atol=0.05)
    # ... and the body is bright, as in every other format.
    png = prepare_image(png_bytes(pixels16)).tensor
    assert np.corrcoef(inverted.tensor.ravel(), png.ravel())[0, 1] > 0.99


def test_rescale_slope_and_intercept_are_applied(pixels16: np.ndarray) -> None:
    stored = pixels16 >> 4
    header, ds = read_dicom_header(dicom_bytes(stored, slope=2.0, intercept=-1024.0))
    decoded = decode_dicom(ds, header, 224)
    assert decoded.low == pytest.approx(2.0 * float(stored.min()) - 1024.0)
    assert decoded.high == pytest.approx(2.0 * float(stored.max()) - 1024.0)
    plain = prepare_image(dicom_bytes(stored)).tensor
    # Min/max scaling makes a positive affine rescale vanish from the tensor...
    rescaled = prepare_image(dicom_bytes(stored, slope=2.0, intercept=-1024.0)).tensor
    np.testing.assert_allclose(rescaled, plain, atol=0.05)
    # ... but a negative slope flips what is dense, and that must show.
    flipped = prepare_image(dicom_bytes(stored, slope=-1.0, intercept=4095.0)).tensor
    np.testing.assert_allclose(flipped, -plain, atol=0.05)


def test_signed_dicom_and_bit_depth(pixels16: np.ndarray) -> None:
    stored = ((pixels16 >> 4).astype(np.int32) - 2048).astype(np.int16)
    prepared = prepare_image(dicom_bytes(stored, signed=True, slope=1.0, intercept=0.0))
    unsigned = prepare_image(dicom_bytes(pixels16 >> 4))
    assert prepared.bit_depth == 12
    np.testing.assert_allclose(prepared.tensor, unsigned.tensor, atol=0.05)


@pytest.mark.parametrize("layout", ["uint16-12", "uint8-8", "int16-16"])
def test_rle_fast_path_matches_pydicom(pixels16: np.ndarray, layout: str) -> None:
    small = pixels16[:300, :250]
    if layout == "uint16-12":
        stored, bits, signed = small >> 4, 12, False
    elif layout == "uint8-8":
        stored, bits, signed = to_uint8(small), 8, False
    else:
        stored, bits, signed = (small.astype(np.int32) - 32768).astype(np.int16), 16, True
    data = dicom_bytes(stored, bits_stored=bits, signed=signed, compress=RLELossless)
    ds = pydicom.dcmread(io.BytesIO(data))
    fast = decode_rle_frame(ds)
    assert fast is not None
    assert fast.dtype == pixel_array(ds, index=0).dtype
    assert np.array_equal(fast, pixel_array(ds, index=0))
    assert np.array_equal(fast, stored)


def test_dicom_jpeg_fast_path_matches_pydicom(pixels16: np.ndarray) -> None:
    stored = to_uint8(pixels16)
    data = dicom_bytes(stored, bits_stored=8, compress=JPEGBaseline8Bit)
    header, ds = read_dicom_header(data)
    fast = decode_jpeg_frame(ds, header, size=WIDTH)  # model size = short side: scale 1
    assert fast is not None
    pixels, scale = fast
    assert scale == 1
    reference = pixel_array(ds, index=0)
    assert np.abs(pixels.astype(int) - reference.astype(int)).max() <= 2
    assert prepare_image(data).decode_scale == 2


def test_dicom_without_preamble_decodes(pixels16: np.ndarray) -> None:
    ds = Dataset()
    ds.update(pydicom.dcmread(io.BytesIO(dicom_bytes(pixels16 >> 4))))
    buffer = io.BytesIO()
    ds.save_as(buffer, implicit_vr=True, little_endian=True)
    bare = buffer.getvalue()
    assert bare[128:132] != b"DICM"
    reference = prepare_image(dicom_bytes(pixels16 >> 4)).tensor
    np.testing.assert_allclose(prepare_image(bare, filename="IM0001").tensor, reference, atol=1e-4)


def test_upper_case_jpg_is_accepted(pixels16: np.ndarray) -> None:
    data = encode_jpeg(to_uint8(pixels16))
    assert prepare_image(data, filename="STUDY.JPG").format == "jpeg"
    assert prepare_image(data, filename="study.JPEG").format == "jpeg"
