"""A real CR chest radiograph in every encoding archives hold decodes to the same tensor.

The radiograph and how each encoding is made are described in `real_radiographs`.
"""

from __future__ import annotations

import io

import imagecodecs
import numpy as np
import pydicom
import pytest
from pydicom.encaps import encapsulate, generate_frames
from pydicom.pixels.processing import apply_color_lut
from pydicom.pixels.utils import pixel_array
from pydicom.uid import (
    JPEG2000,
    DeflatedExplicitVRLittleEndian,
    ExplicitVRBigEndian,
    ExplicitVRLittleEndian,
    HTJ2KLossless,
    ImplicitVRLittleEndian,
    JPEG2000Lossless,
    JPEGBaseline8Bit,
    JPEGExtended12Bit,
    JPEGLossless,
    JPEGLosslessSV1,
    JPEGLSLossless,
    JPEGLSNearLossless,
    RLELossless,
)
from real_radiographs import ENCODINGS, LOSSLESS, LOSSY, encoded, path_of, source_pixels
from real_radiographs import transfer_syntax as syntax_of

from radstream.errors import ImageTooLarge, ImageTruncated, RadStreamError
from radstream.imaging import ImagingLimits, Preprocessing, prepare_image
from radstream.imaging.dicom import decode_dicom, read_dicom_header
from radstream.imaging.dicom_codecs import decode_frame, ends_predictably, plugin_for

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")

EXPECTED_SYNTAX = {
    "explicit-le": ExplicitVRLittleEndian,
    "implicit-le": ImplicitVRLittleEndian,
    "explicit-be": ExplicitVRBigEndian,
    "deflated": DeflatedExplicitVRLittleEndian,
    "rle": RLELossless,
    "jpeg-lossless-sv1": JPEGLosslessSV1,
    **{f"jpeg-lossless-p{k}": JPEGLossless for k in range(2, 8)},
    "jpeg-ls-lossless": JPEGLSLossless,
    "jpeg-ls-near": JPEGLSNearLossless,
    "j2k-lossless": JPEG2000Lossless,
    "j2k-lossy": JPEG2000,
    "htj2k-lossless": HTJ2KLossless,
    "jpeg-baseline": JPEGBaseline8Bit,
    "jpeg-extended-12": JPEGExtended12Bit,
}


@pytest.fixture(scope="module")
def reference() -> np.ndarray:
    """The tensor of the radiograph as shipped (explicit VR little endian)."""
    return prepare_image(encoded("explicit-le")).tensor


def stored_values(data: bytes) -> np.ndarray:
    """The first frame's stored values as `prepare_image` decodes them."""
    header, ds = read_dicom_header(data)
    return decode_dicom(ds, header, size=max(header.width, header.height)).pixels


def test_every_encoding_is_covered() -> None:
    assert set(EXPECTED_SYNTAX) == set(ENCODINGS)
    assert set(EXPECTED_SYNTAX.values()) >= {
        ImplicitVRLittleEndian,
        ExplicitVRLittleEndian,
        ExplicitVRBigEndian,
        DeflatedExplicitVRLittleEndian,
        RLELossless,
        JPEGBaseline8Bit,
        JPEGExtended12Bit,
        JPEGLossless,
        JPEGLosslessSV1,
        JPEGLSLossless,
        JPEGLSNearLossless,
        JPEG2000Lossless,
        JPEG2000,
        HTJ2KLossless,
    }


@pytest.mark.parametrize("name", ENCODINGS)
def test_every_encoding_decodes_to_a_model_tensor(name: str) -> None:
    data = encoded(name)
    assert syntax_of(data) == EXPECTED_SYNTAX[name]
    prepared = prepare_image(data, filename="IM0001.dcm", expected_size=(1841, 1955))
    assert prepared.tensor.shape == (1, 1, 224, 224)
    assert np.isfinite(prepared.tensor).all()
    assert prepared.photometric == "MONOCHROME1"
    assert (prepared.width, prepared.height) == (1841, 1955)


@pytest.mark.parametrize("name", LOSSLESS)
def test_lossless_encodings_give_identical_pixels_and_tensors(
    name: str, reference: np.ndarray
) -> None:
    data = encoded(name)
    assert np.array_equal(stored_values(data), source_pixels())
    # Identical tensors mean identical probabilities from any model.
    assert np.array_equal(prepare_image(data).tensor, reference)


@pytest.mark.parametrize("name", LOSSY)
def test_lossy_encodings_stay_close(name: str, reference: np.ndarray) -> None:
    tensor = prepare_image(encoded(name)).tensor
    difference = np.abs(tensor - reference)
    assert not np.array_equal(tensor, reference)
    # Of a 2048-wide input range: under 0.5 % on average, 2 % at worst.
    assert difference.mean() < 10.0
    assert difference.max() < 40.0


def test_preferred_plugins_are_the_permissive_ones() -> None:
    assert plugin_for(JPEGLosslessSV1) == "gdcm"
    assert plugin_for(JPEGLossless) == "gdcm"
    assert plugin_for(JPEGExtended12Bit) == "radstream-gdcm"
    assert plugin_for(JPEGLSLossless) == "pyjpegls"
    assert plugin_for(JPEG2000Lossless) == "gdcm"
    assert plugin_for(JPEG2000) == "pylibjpeg"
    assert plugin_for(RLELossless) == "pylibjpeg"
    assert plugin_for(HTJ2KLossless) == "pylibjpeg"


@pytest.mark.parametrize("source", ["generated", "JPEG-lossy.dcm", "JPGExtended.dcm"])
def test_12_bit_jpeg_through_gdcm_matches_libjpeg_turbo(source: str) -> None:
    if source == "generated":
        ds = pydicom.dcmread(io.BytesIO(encoded("jpeg-extended-12")))
    else:
        ds = pydicom.dcmread(path_of(source))
    assert ds.file_meta.TransferSyntaxUID == JPEGExtended12Bit and ds.BitsStored == 12
    frame = next(generate_frames(ds.PixelData, number_of_frames=1))
    expected = imagecodecs.jpeg8_decode(frame)
    decoded = decode_frame(ds)
    assert decoded.dtype == np.uint16
    assert np.array_equal(decoded, expected)


def _cut(name: str, keep: float, patch: bytes) -> bytes:
    ds = pydicom.dcmread(io.BytesIO(encoded(name)))
    frame = next(generate_frames(ds.PixelData, number_of_frames=1))
    ds.PixelData = encapsulate([frame[: int(len(frame) * keep)] + patch])
    buffer = io.BytesIO()
    ds.save_as(buffer)
    return buffer.getvalue()


@pytest.mark.parametrize(
    "name", ["jpeg-baseline", "jpeg-extended-12", "jpeg-lossless-sv1", "jpeg-lossless-p7"]
)
@pytest.mark.parametrize("patch", [b"", b"\xff\xd9"], ids=["cut", "cut+EOI"])
def test_cut_jpeg_in_dicom_is_truncated(name: str, patch: bytes) -> None:
    with pytest.raises(ImageTruncated):
        prepare_image(_cut(name, 0.6, patch))


@pytest.mark.parametrize("name", ["jpeg-ls-lossless", "j2k-lossless", "htj2k-lossless", "rle"])
def test_cut_frames_of_other_codecs_fail_with_a_code(name: str) -> None:
    for patch in (b"", b"\xff\xd9"):
        with pytest.raises(RadStreamError) as caught:
            prepare_image(_cut(name, 0.6, patch))
        assert caught.value.code in ("IMAGE_TRUNCATED", "IMAGE_UNDECODABLE")


def test_blank_last_row_is_not_mistaken_for_padding() -> None:
    pixels = source_pixels().copy()
    pixels[-3:] = 0  # a blank border, as collimated exports have
    assert ends_predictably(pixels)
    frame = imagecodecs.jpeg8_encode(pixels, lossless=True, predictor=1, bitspersample=15)
    ds = pydicom.dcmread(io.BytesIO(encoded("jpeg-lossless-sv1")))
    ds.PixelData = encapsulate([bytes(frame)])
    buffer = io.BytesIO()
    ds.save_as(buffer)
    assert np.array_equal(stored_values(buffer.getvalue()), pixels)


def _with_header(name: str, **elements: int) -> bytes:
    ds = pydicom.dcmread(io.BytesIO(encoded(name)))
    for keyword, value in elements.items():
        setattr(ds, keyword, value)
    buffer = io.BytesIO()
    ds.save_as(buffer)
    return buffer.getvalue()


@pytest.mark.parametrize("name", ["rle", "j2k-lossless", "jpeg-lossless-sv1", "explicit-le"])
def test_pixel_guard_uses_the_header_before_decoding(name: str) -> None:
    with pytest.raises(ImageTooLarge) as caught:
        prepare_image(_with_header(name, Rows=60_000, Columns=60_000))
    assert caught.value.details["width"] == 60_000
    # 3.6 M pixels a frame, 100 frames declared: 360 M pixels, refused.
    with pytest.raises(ImageTooLarge) as caught:
        prepare_image(_with_header(name, NumberOfFrames=100))
    assert caught.value.details["frames"] == 100


# For RLE this is also a panic inside pylibjpeg-rle (a BaseException), which must
# come out as a typed error. The codestreams carry their own size: compared with the
# header before decoding, so a small header cannot smuggle a large frame past the guard.
@pytest.mark.parametrize(
    ("name", "code"),
    [
        ("rle", "IMAGE_UNDECODABLE"),
        ("j2k-lossless", "IMAGE_SIZE_MISMATCH"),
        ("jpeg-lossless-sv1", "IMAGE_SIZE_MISMATCH"),
        ("jpeg-ls-lossless", "IMAGE_SIZE_MISMATCH"),
    ],
)
def test_header_smaller_than_the_frame_fails_with_a_code(name: str, code: str) -> None:
    with pytest.raises(RadStreamError) as caught:
        prepare_image(_with_header(name, Rows=300, Columns=300))
    assert caught.value.code == code


# Colour and multi-frame objects: pydicom-data's and pydicom's own test files.

SMALL = Preprocessing(size=64)


def luma(rgb: np.ndarray) -> np.ndarray:
    weights = np.array([0.299, 0.587, 0.114])
    return rgb.astype(np.float64) @ weights


def _tensor_of(name: str, size: Preprocessing = SMALL) -> np.ndarray:
    with open(path_of(name), "rb") as handle:
        return prepare_image(handle.read(), preprocessing=size).tensor


@pytest.fixture(scope="module")
def rgb_reference() -> np.ndarray:
    return _tensor_of("SC_rgb.dcm")


def test_rgb_becomes_luma(rgb_reference: np.ndarray) -> None:
    rgb = pydicom.dcmread(path_of("SC_rgb.dcm")).pixel_array
    grey = luma(rgb)
    assert np.ptp(grey) > 0
    # The same picture stored as grey (PNG path) gives the same tensor.
    import cv2

    png = cv2.imencode(".png", np.round(grey).astype(np.uint8))[1].tobytes()
    tensor = prepare_image(png, preprocessing=SMALL).tensor
    # Min..max scaling (DICOM) and 0..255 scaling (PNG) differ; compare shapes of value.
    assert np.corrcoef(tensor.ravel(), rgb_reference.ravel())[0, 1] > 0.999


@pytest.mark.parametrize(
    ("name", "tolerance"),
    [
        ("SC_ybr_full_uncompressed.dcm", 12.0),
        ("SC_ybr_full_422_uncompressed.dcm", 40.0),
        ("SC_rgb_dcmtk_+eb+cy+np.dcm", 60.0),
    ],
)
def test_ybr_becomes_the_same_grey_as_rgb(
    name: str, tolerance: float, rgb_reference: np.ndarray
) -> None:
    ds = pydicom.dcmread(path_of(name), stop_before_pixels=True)
    assert str(ds.PhotometricInterpretation).startswith("YBR_FULL")
    tensor = _tensor_of(name)
    assert np.abs(tensor - rgb_reference).mean() < tolerance / 4
    assert np.abs(tensor - rgb_reference).max() < tolerance * 2


def test_colour_jpeg_2000_lossless_equals_uncompressed_rgb() -> None:
    size = Preprocessing(size=224)
    assert np.array_equal(_tensor_of("US1_J2KR.dcm", size), _tensor_of("US1_UNCR.dcm", size))


def _palette_reference(name: str) -> np.ndarray:
    ds = pydicom.dcmread(path_of(name))
    rgb = apply_color_lut(pixel_array(ds, index=0), ds)
    return luma(rgb)


@pytest.mark.parametrize("name", ["OBXXXX1A.dcm", "OBXXXX1A_rle.dcm", "OBXXXX1A_expb.dcm"])
def test_palette_colour_becomes_grey(name: str) -> None:
    size = Preprocessing(size=224)
    header, ds = read_dicom_header(open(path_of(name), "rb").read())  # noqa: SIM115
    assert header.photometric == "PALETTE COLOR"
    decoded = decode_dicom(ds, header, 224)
    np.testing.assert_allclose(decoded.pixels, _palette_reference(name), rtol=1e-5)
    # The big-endian copy's palette reads as 0..255 where the others read 0..65280;
    # min..max scaling makes that vanish.
    np.testing.assert_allclose(_tensor_of(name, size), _tensor_of("OBXXXX1A.dcm", size), atol=0.01)


@pytest.mark.parametrize(
    ("multi", "single"),
    [
        ("OBXXXX1A_2frame.dcm", "OBXXXX1A.dcm"),
        ("OBXXXX1A_rle_2frame.dcm", "OBXXXX1A_rle.dcm"),
        ("OBXXXX1A_expb_2frame.dcm", "OBXXXX1A_expb.dcm"),
    ],
)
def test_multi_frame_uses_the_first_frame(multi: str, single: str) -> None:
    size = Preprocessing(size=224)
    ds = pydicom.dcmread(path_of(multi))
    assert int(ds.NumberOfFrames) == 2
    assert not np.array_equal(pixel_array(ds, index=0), pixel_array(ds, index=1))
    assert np.array_equal(_tensor_of(multi, size), _tensor_of(single, size))
    # The guard counts both frames: 600 x 800 x 2.
    data = open(path_of(multi), "rb").read()  # noqa: SIM115
    with pytest.raises(ImageTooLarge):
        prepare_image(data, preprocessing=size, limits=ImagingLimits(max_pixels=600 * 800))
    prepare_image(data, preprocessing=size, limits=ImagingLimits(max_pixels=2 * 600 * 800))


def test_multi_frame_radiograph_uses_its_first_frame(reference: np.ndarray) -> None:
    ds = pydicom.dcmread(io.BytesIO(encoded("explicit-le")))
    first = source_pixels()
    ds.NumberOfFrames = 2
    ds.PixelData = first.tobytes() + (first.max() - first).tobytes()
    buffer = io.BytesIO()
    ds.save_as(buffer)
    assert np.array_equal(prepare_image(buffer.getvalue()).tensor, reference)
    ds.compress(RLELossless, generate_instance_uid=False)
    buffer = io.BytesIO()
    ds.save_as(buffer)
    assert np.array_equal(prepare_image(buffer.getvalue()).tensor, reference)
