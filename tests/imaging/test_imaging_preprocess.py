"""Cropping, resizing and value scaling on known arrays."""

from __future__ import annotations

import numpy as np
import pytest

from radstream.errors import ConfigInvalid
from radstream.imaging import ImagingLimits, Preprocessing
from radstream.imaging.decoded import DecodedPixels
from radstream.imaging.preprocess import area_resize, centre_square, to_model_input


def test_integer_area_step_equals_block_mean() -> None:
    pixels = np.random.default_rng(0).integers(0, 4096, (2240, 2240)).astype(np.uint16)
    expected = pixels.reshape(224, 10, 224, 10).astype(np.float64).mean(axis=(1, 3))
    np.testing.assert_allclose(area_resize(pixels, 224), expected, rtol=1e-5)


def test_area_resize_output_is_float32_square() -> None:
    for shape in [(2500, 2000), (700, 600), (225, 250), (224, 224), (300, 1000)]:
        out = area_resize(np.ones(shape, dtype=np.uint8), 224)
        assert out.shape == (224, 224)
        assert out.dtype == np.float32
        np.testing.assert_allclose(out, 1.0)


def test_centre_crop_keeps_the_middle_of_a_wide_image() -> None:
    wide = np.zeros((320, 960), dtype=np.uint8)
    wide[:, 320:640] = 255
    np.testing.assert_array_equal(centre_square(wide, 320), 255)
    assert float(area_resize(wide, 224).min()) == 255.0


def test_crop_offset_snaps_to_the_jpeg_block_grid() -> None:
    rows = np.arange(2000)[:, None] * np.ones((1, 1800), dtype=np.int64)
    # Centred offset 100 is not a multiple of 8; snapping gives 96 at full resolution
    # and 12 (= 96 / 8) in an image decoded at 1/8.
    assert centre_square(rows, 1800, grid=8)[0, 0] == 96
    assert centre_square(rows[::8, ::8], 225, grid=1)[0, 0] == 96


def test_scaling_maps_low_and_high_to_the_input_range() -> None:
    ramp = np.tile(np.linspace(0, 1000, 448, dtype=np.float32), (448, 1))
    decoded = DecodedPixels(pixels=ramp, gain=1.0, offset=0.0, low=0.0, high=1000.0)
    tensor = to_model_input(decoded, Preprocessing(size=224, input_min=-1.0, input_max=1.0))
    assert tensor.min() >= -1.0 and tensor.max() <= 1.0
    assert tensor[0, 0, 0, 0] == pytest.approx(-1.0, abs=0.01)
    assert tensor[0, 0, 0, -1] == pytest.approx(1.0, abs=0.01)


def test_inverting_gain_flips_the_image() -> None:
    ramp = np.tile(np.arange(300, dtype=np.uint16), (300, 1))
    plain = DecodedPixels(pixels=ramp, gain=1.0, offset=0.0, low=0.0, high=299.0)
    flipped = DecodedPixels(pixels=ramp, gain=-1.0, offset=299.0, low=0.0, high=299.0)
    np.testing.assert_allclose(
        to_model_input(flipped, Preprocessing()),
        -to_model_input(plain, Preprocessing()),
        atol=1e-3,
    )


def test_constant_image_maps_to_input_min() -> None:
    flat = DecodedPixels(
        pixels=np.full((300, 300), 7, dtype=np.uint16), gain=1.0, offset=0.0, low=7.0, high=7.0
    )
    np.testing.assert_array_equal(to_model_input(flat, Preprocessing()), -1024.0)


@pytest.mark.parametrize(
    "kwargs",
    [{"size": 0}, {"channels": 2}, {"input_min": 1.0, "input_max": 1.0}],
)
def test_bad_preprocessing_is_a_config_error(kwargs: dict[str, float]) -> None:
    with pytest.raises(ConfigInvalid):
        Preprocessing(**kwargs)  # type: ignore[arg-type]


def test_bad_limits_are_a_config_error() -> None:
    with pytest.raises(ConfigInvalid):
        ImagingLimits(max_pixels=0)
