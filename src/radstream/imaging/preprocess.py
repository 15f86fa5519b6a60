"""Decoded pixels to model input: centre crop, two-step area resize, value scaling."""

from __future__ import annotations

from typing import Final

import numpy as np

from radstream.imaging.area import area_resize_2d, block_mean
from radstream.imaging.decoded import DecodedPixels
from radstream.imaging.options import Preprocessing

# JPEG blocks are 8x8 pixels; see centre_square for why crops snap to them.
BLOCK: Final = 8


def centre_square(pixels: np.ndarray, side: int, grid: int = 1) -> np.ndarray:
    """Return a view of a ``side`` x ``side`` square from the centre of a 2-D array.

    Offsets are rounded down to a multiple of ``grid``. A JPEG decoded at 1/k size
    averages 8/k-pixel-aligned blocks; cropping on that grid keeps the square aligned
    with the same full-resolution pixels whatever the decode scale, so one image gives
    the same tensor as JPEG at 1/8 or as lossless PNG (a half-block shift of the crop
    would otherwise move every edge by half an output pixel).
    """
    height, width = pixels.shape[:2]
    top = (height - side) // 2 // grid * grid
    left = (width - side) // 2 // grid * grid
    return pixels[top : top + side, left : left + side]


def square_geometry(shape: tuple[int, int], size: int) -> tuple[int, int, int]:
    """``(top, left, side)`` of the square `area_resize` takes from a full-size image.

    The square is the centre one, its side cut to a multiple of the integer reduction
    factor ``short_side // size`` (when that is at least 2) and its corner snapped to
    the 8-pixel JPEG block grid.
    """
    height, width = shape
    short = min(height, width)
    factor = short // size
    side = short - short % factor if factor >= 2 else short
    top = (height - side) // 2 // BLOCK * BLOCK
    left = (width - side) // 2 // BLOCK * BLOCK
    return top, left, side


def area_resize(
    pixels: np.ndarray,
    size: int,
    *,
    decode_scale: int = 1,
    source_shape: tuple[int, int] | None = None,
) -> np.ndarray:
    """Centre-crop to a square and shrink it to ``size`` x ``size`` by area averaging.

    Returns a new float32 array. First an integer block mean by ``f = short_side // size``
    (when f >= 2), then a fractional area resize to the exact size. The square is cropped
    to a multiple of f (losing under f pixels) so that the full-size pass is a plain
    block mean, and the fractional pass runs on an image just above model size. Both
    compute what OpenCV's INTER_AREA computes (`radstream.imaging.area`); the block mean
    sums integer samples exactly, without a float32 copy of the full-size image.
    ``decode_scale`` is the JPEG reduction the pixels were decoded at, which sets the
    crop grid.

    For a reduced decode, ``source_shape`` (the stored image's rows and columns) lets
    the crop cover the same full-resolution square as a full decode: without it, a side
    that is not a multiple of 8 rounds up by a partial block at 1/8 and the whole
    square is resampled about 0.4 % larger, which moves high-contrast edges by a pixel.
    """
    if decode_scale > 1 and source_shape is not None:
        top, left, side = square_geometry(source_shape, size)
        # The corner is on the 8-pixel grid, so it divides exactly; the side may not.
        reduced = max(1, round(side / decode_scale))
        top, left = top // decode_scale, left // decode_scale
        pixels = pixels[top : top + reduced, left : left + reduced]
    short = min(pixels.shape[:2])
    factor = short // size
    side = short - short % factor if factor >= 2 else short
    grid = max(1, BLOCK // decode_scale)
    work = centre_square(pixels, side, grid)
    if factor >= 2:
        work = block_mean(work, factor, factor)
    # area_resize_2d returns a new float32 array even when the size is already right:
    # callers scale the result in place and must not write into the decoded pixels.
    work = area_resize_2d(work, size, size)
    return work


def to_model_input(decoded: DecodedPixels, preprocessing: Preprocessing) -> np.ndarray:
    """Build the float32 ``[1, channels, size, size]`` C-contiguous model input.

    Display values ``low``..``high`` map linearly to ``input_min``..``input_max``: with
    ``low = 0`` and ``high = maxval`` and the range [-1024, 1024] this is TorchXRayVision's
    ``(2 * x / maxval - 1) * 1024``. The whole value chain (rescale, inversion, scaling)
    is one affine map applied after resizing, which is exact because resizing is linear.
    """
    square = area_resize(
        decoded.pixels,
        preprocessing.size,
        decode_scale=decoded.decode_scale,
        source_shape=decoded.source_shape,
    )
    span = decoded.high - decoded.low
    out_span = preprocessing.input_max - preprocessing.input_min
    # A constant image has no range to stretch; it maps to input_min rather than to
    # a division by zero.
    per_unit = out_span / span if span > 0 else 0.0
    gain = np.float32(decoded.gain * per_unit)
    bias = np.float32((decoded.offset - decoded.low) * per_unit + preprocessing.input_min)
    square *= gain
    square += bias
    # float32 rounding can overshoot the range by an ulp; consumers may rely on it.
    np.clip(square, preprocessing.input_min, preprocessing.input_max, out=square)
    image = square.reshape(1, 1, preprocessing.size, preprocessing.size)
    if preprocessing.channels > 1:
        image = np.repeat(image, preprocessing.channels, axis=1)
    return np.ascontiguousarray(image, dtype=np.float32)
