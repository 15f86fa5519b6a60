"""The NumPy area resize against OpenCV's INTER_AREA, which it replaces in preprocessing.

OpenCV stays installed for the load generator, so it is the reference here. Integer
samples give bit-identical results (the block sums are exact); float samples differ in
the block-mean step only by the summation order, a few float32 ulps.
"""

from __future__ import annotations

import subprocess
import sys

import cv2
import numpy as np
import pytest

from radstream.imaging.area import area_resize_2d, block_mean
from radstream.imaging.dicom import rgb_to_grey
from radstream.imaging.preprocess import area_resize

SOURCES = (223, 224, 225, 231, 245, 248, 250, 256, 313, 447, 448, 640, 893, 1000, 1841, 2000)
TARGETS = (100, 128, 223, 224, 250, 299)
DTYPES = (np.uint8, np.uint16, np.float32)


def _sample(shape: tuple[int, int], dtype: type[np.generic], seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    if dtype is np.float32:
        return (rng.random(shape) * 4096).astype(np.float32)
    return rng.integers(0, np.iinfo(dtype).max + 1, shape).astype(dtype)


def _reference(pixels: np.ndarray, height: int, width: int) -> np.ndarray:
    work = pixels.astype(np.float32)
    return cv2.resize(work, (width, height), interpolation=cv2.INTER_AREA)


@pytest.mark.parametrize("dtype", DTYPES)
def test_area_resize_matches_opencv_over_many_shapes(dtype: type[np.generic]) -> None:
    worst = 0.0
    checked = 0
    for i, source in enumerate(SOURCES):
        for target in TARGETS:
            for columns in (source, source + 7) if source > target else (source,):
                pixels = _sample((source, columns), dtype, seed=i * 1000 + target)
                width = target if columns == source else target + 3
                ours = area_resize_2d(pixels, target, width)
                theirs = _reference(pixels, target, width)
                assert ours.dtype == np.float32
                assert ours.shape == theirs.shape == (target, width)
                block = source % target == 0 and columns % width == 0 and source > target
                if dtype is np.float32 and block:
                    # float32 block sums: OpenCV adds in its own order, we in float64.
                    np.testing.assert_allclose(ours, theirs, rtol=2e-6, atol=0)
                    worst = max(worst, float(np.abs(ours - theirs).max() / 4096))
                else:
                    np.testing.assert_array_equal(ours, theirs, err_msg=f"{source}->{target}")
                checked += 1
    assert checked > 60
    assert worst < 1e-6


@pytest.mark.parametrize("factor", [2, 3, 4, 8, 10])
@pytest.mark.parametrize("dtype", [np.uint8, np.uint16, np.int16])
def test_block_mean_is_the_exact_mean(factor: int, dtype: type[np.generic]) -> None:
    info = np.iinfo(dtype)
    pixels = np.random.default_rng(factor).integers(info.min, info.max, (40 * factor, 30 * factor))
    pixels = pixels.astype(dtype)
    exact = pixels.reshape(40, factor, 30, factor).astype(np.float64).mean(axis=(1, 3))
    ours = block_mean(pixels, factor, factor)
    np.testing.assert_allclose(ours, exact, rtol=1e-6)
    np.testing.assert_array_equal(ours, _reference(pixels, 40, 30))


def test_upscale_by_a_pixel_matches_opencv() -> None:
    # A JPEG whose short side is 893..895 decodes at 1/4 to a 223-pixel square.
    pixels = _sample((223, 223), np.uint8, seed=3)
    np.testing.assert_array_equal(area_resize_2d(pixels, 224, 224), _reference(pixels, 224, 224))
    assert area_resize(np.zeros((1000, 893), np.uint8), 224, decode_scale=4).shape == (224, 224)


def test_shrinking_one_axis_and_growing_the_other_is_refused() -> None:
    with pytest.raises(ValueError, match="shrinks one axis"):
        area_resize_2d(np.zeros((300, 200), np.uint8), 250, 250)


def test_result_is_a_new_array_even_at_the_target_size() -> None:
    pixels = np.ones((224, 224), np.float32)
    out = area_resize(pixels, 224)
    out += 1
    assert float(pixels.max()) == 1.0


@pytest.mark.parametrize("scale", [255.0, 4095.0, 65535.0, 1.0])
def test_rgb_to_grey_matches_opencv_within_an_ulp(scale: float) -> None:
    rgb = (np.random.default_rng(int(scale)).random((301, 257, 3)) * scale).astype(np.float32)
    theirs = cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY)
    ours = rgb_to_grey(rgb)
    assert ours.dtype == np.float32
    np.testing.assert_allclose(ours, theirs, rtol=2.5e-7, atol=0)


@pytest.mark.slow
def test_preparing_images_does_not_load_opencv() -> None:
    code = """
import io, sys
import numpy as np
from PIL import Image
from radstream.imaging import prepare_image
pixels = (np.arange(600 * 700) % 4093).astype(np.uint16).reshape(700, 600)
for image in (Image.fromarray(pixels), Image.fromarray((pixels >> 4).astype(np.uint8))):
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    assert prepare_image(buffer.getvalue()).tensor.shape == (1, 1, 224, 224)
buffer = io.BytesIO()
Image.fromarray((pixels >> 4).astype(np.uint8)).save(buffer, format="JPEG")
assert prepare_image(buffer.getvalue()).tensor.shape == (1, 1, 224, 224)
assert "cv2" not in sys.modules, "radstream.imaging loaded OpenCV"
"""
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)
