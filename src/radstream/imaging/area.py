"""Area-averaging resize in NumPy, computing what OpenCV's ``INTER_AREA`` computes.

The prepare Lambda cannot carry OpenCV (about 160 MB unpacked) beside the DICOM codec
plugins, and a resize is all the preprocessing used it for. These functions repeat
OpenCV's arithmetic (OpenCV 4/5 ``resize.cpp``), so a model input is the same with or
without it (tests/imaging/test_imaging_area.py compares them over many shapes):

* shrinking by an exact integer factor ``f`` is the mean of each ``f`` x ``f`` block:
  the block sum times ``float32(1 / f**2)``;
* shrinking by any other factor is separable: each output pixel is the integral of the
  piecewise-constant input over its footprint divided by the footprint, rows first and
  then columns, in float32, with OpenCV's weight table (slivers under 1e-3 of a pixel
  at a footprint's ends are dropped, as OpenCV drops them);
* enlarging (OpenCV then interpolates linearly, with the phase ``INTER_AREA`` uses) is
  reached only when a reduced JPEG decode comes out a pixel short of the model size.

Each pass is a few gathers and multiply-adds over weight tables of at most a few taps
per output pixel, so the reduced-size JPEG path (about 250 x 250 to 224 x 224) costs
well under a millisecond.
"""

from __future__ import annotations

import math
from functools import lru_cache

import numpy as np

# OpenCV ignores a partial source pixel at either end of a footprint when it covers
# less than this much of it (computeResizeAreaTab).
_SLIVER = 1e-3


def area_resize_2d(pixels: np.ndarray, height: int, width: int) -> np.ndarray:
    """Resize a 2-D array to ``height`` x ``width`` as ``cv2.resize(..., INTER_AREA)`` does.

    Returns float32 (integer input is averaged without first rounding, as the float32
    image OpenCV would be given). Both axes must shrink, or both must grow or stay.
    """
    if pixels.ndim != 2:
        raise ValueError(f"area_resize_2d takes a 2-D array, not {pixels.ndim}-D")
    rows, cols = pixels.shape
    if height <= 0 or width <= 0 or rows == 0 or cols == 0:
        raise ValueError(f"cannot resize {rows}x{cols} to {height}x{width}")
    if (rows, cols) == (height, width):
        return pixels.astype(np.float32)
    shrink = rows >= height and cols >= width
    if not shrink and (rows > height or cols > width):
        raise ValueError(f"{rows}x{cols} to {height}x{width} shrinks one axis and grows the other")
    if shrink and rows % height == 0 and cols % width == 0:
        return block_mean(pixels, rows // height, cols // width)
    if shrink:
        weights_rows, weights_cols = area_taps(rows, height), area_taps(cols, width)
    else:
        weights_rows, weights_cols = linear_taps(rows, height), linear_taps(cols, width)
    work = pixels if pixels.dtype == np.float32 else pixels.astype(np.float32)
    across = _apply_taps(work, *weights_cols, axis=1)
    return _apply_taps(across, *weights_rows, axis=0)


def block_mean(pixels: np.ndarray, fy: int, fx: int) -> np.ndarray:
    """Mean of each ``fy`` x ``fx`` block of a 2-D array, as float32.

    OpenCV sums a block in float32 and multiplies by ``float32(1 / area)``. Integer
    samples are summed exactly here instead, which equals OpenCV's float32 sum whenever
    that sum is below 2**24 (a 16-bit image reduced up to 16x, an 8-bit one up to
    256x); above, the exact sum is the nearer one. Float samples are summed in float64
    and rounded once, within an ulp of OpenCV's.
    """
    out_rows, out_cols = pixels.shape[0] // fy, pixels.shape[1] // fx
    pixels = pixels[: out_rows * fy, : out_cols * fx]
    accumulator = _accumulator(pixels.dtype, fy * fx)
    # Whole rows first: adding every fy-th row is contiguous work and leaves 1/fy of the
    # data for the strided pass over columns (several times faster than reshaping and
    # summing the small block axes).
    rows = pixels[0::fy].astype(accumulator)
    for k in range(1, fy):
        rows += pixels[k::fy]
    sums = rows[:, 0::fx].copy()
    for k in range(1, fx):
        sums += rows[:, k::fx]
    out = sums.astype(np.float32)
    out *= np.float32(1.0 / (fy * fx))
    return out


def _accumulator(dtype: np.dtype, count: int) -> type[np.generic]:
    """The narrowest type that sums ``count`` samples of ``dtype`` exactly (float64 for
    floats)."""
    if not np.issubdtype(dtype, np.integer):
        return np.float64
    info = np.iinfo(dtype)
    bound = max(abs(int(info.min)), int(info.max)) * count
    candidates = (
        (np.uint16, np.uint32, np.uint64) if info.min == 0 else (np.int16, np.int32, np.int64)
    )
    return next(t for t in candidates if np.iinfo(t).max >= bound)


@lru_cache(maxsize=64)
def area_taps(source: int, target: int) -> tuple[np.ndarray, np.ndarray]:
    """Source indices and float32 weights ``[target, taps]`` of a fractional area shrink.

    The same table as OpenCV's computeResizeAreaTab, in its order (left partial pixel,
    whole pixels, right partial pixel); unused taps have weight 0 and index 0, which
    adds an exact zero.
    """
    # OpenCV's scale is the reciprocal of target / source, which can differ from
    # source / target in the last bit.
    scale = 1.0 / (target / source)
    per_output: list[list[tuple[int, float]]] = []
    for dx in range(target):
        fsx1 = dx * scale
        fsx2 = fsx1 + scale
        cell = min(scale, source - fsx1)
        sx2 = min(math.floor(fsx2), source - 1)
        sx1 = min(math.ceil(fsx1), sx2)
        taps: list[tuple[int, float]] = []
        if sx1 - fsx1 > _SLIVER:
            taps.append((sx1 - 1, (sx1 - fsx1) / cell))
        taps.extend((sx, 1.0 / cell) for sx in range(sx1, sx2))
        if fsx2 - sx2 > _SLIVER:
            taps.append((sx2, min(fsx2 - sx2, 1.0, cell) / cell))
        per_output.append(taps)
    return _table(per_output)


@lru_cache(maxsize=16)
def linear_taps(source: int, target: int) -> tuple[np.ndarray, np.ndarray]:
    """Indices and weights ``[target, 2]`` of OpenCV's ``INTER_AREA`` enlargement.

    OpenCV interpolates linearly, with the phase ``fx = (dx + 1) - (sx + 1) * target /
    source`` (kept to [0, 1)) for ``sx = floor(dx * source / target)``; the last source
    pixel is repeated past the edge.
    """
    inv_scale = target / source
    scale = 1.0 / inv_scale
    per_output: list[list[tuple[int, float]]] = []
    for dx in range(target):
        sx = math.floor(dx * scale)
        fx = float(np.float32((dx + 1) - (sx + 1) * inv_scale))
        fx = 0.0 if fx <= 0 else fx - math.floor(fx)
        if sx >= source - 1:
            sx, fx = source - 1, 0.0
        per_output.append([(sx, 1.0 - fx), (min(sx + 1, source - 1), fx)])
    return _table(per_output)


def _table(per_output: list[list[tuple[int, float]]]) -> tuple[np.ndarray, np.ndarray]:
    width = max(len(taps) for taps in per_output)
    index = np.zeros((len(per_output), width), dtype=np.intp)
    weight = np.zeros((len(per_output), width), dtype=np.float32)
    for dx, taps in enumerate(per_output):
        for k, (sx, alpha) in enumerate(taps):
            index[dx, k] = sx
            weight[dx, k] = alpha
    # Tables are cached and shared: nothing may write to them.
    index.setflags(write=False)
    weight.setflags(write=False)
    return index, weight


def _apply_taps(pixels: np.ndarray, index: np.ndarray, weight: np.ndarray, axis: int) -> np.ndarray:
    """Sum over taps k of ``pixels[.., index[:, k], ..] * weight[:, k]`` in float32, tap
    by tap in table order: the order OpenCV accumulates in, so the rounding is the same."""
    out: np.ndarray | None = None
    for k in range(index.shape[1]):
        taken = np.take(pixels, index[:, k], axis=axis)
        taken *= weight[:, k] if axis == 1 else weight[:, k, None]
        if out is None:
            out = taken
        else:
            out += taken
    assert out is not None
    return out
