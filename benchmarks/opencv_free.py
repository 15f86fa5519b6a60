"""`prepare_image` with OpenCV (before) and without it (after), interleaved in one process.

The prepare Lambda dropped OpenCV (issue 11 item 7); its area resize, PNG decode and
colour conversion moved to NumPy and Pillow. This puts OpenCV's versions back (copied
here from the code before the change: ``cv2.resize(INTER_AREA)`` on a float32 copy,
``cv2.imdecode(IMREAD_GRAYSCALE | IMREAD_ANYDEPTH)``) and times both on the same bytes,
alternating call by call, so load from other processes falls on both alike. Per image:
p50 and p95 wall time, p50 CPU time of the process (all threads; OpenCV resizes on a
thread pool), the change of the p50s, and the largest difference of the model inputs.

Images: the pipeline's synthetic 2000x2500 chest as JPEG (decoded at 1/8: the reduced-
size JPEG path, which may not get more than 10 % slower), 8-bit and 16-bit PNG, and the
real radiograph RG1 (pydicom-data) as 8-bit JPEG and as uncompressed DICOM.

Run:  .venv/bin/python benchmarks/opencv_free.py [--repeat 40] [--json]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import cv2
import numpy as np

import radstream.imaging.prepare as prepare_module
import radstream.imaging.preprocess as preprocess_module
from radstream.errors import ImageUndecodable
from radstream.imaging import prepare_image
from radstream.imaging.decoded import DecodedPixels, ImageHeader
from radstream.loadgen.encoders import encode, encode_jpeg
from radstream.loadgen.phantom import synthetic_cxr

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests" / "imaging"))
from real_radiographs import encoded, source_pixels

_PNG_FLAGS = cv2.IMREAD_GRAYSCALE | cv2.IMREAD_ANYDEPTH | cv2.IMREAD_IGNORE_ORIENTATION


def opencv_area_resize(
    pixels: np.ndarray,
    size: int,
    *,
    decode_scale: int = 1,
    source_shape: tuple[int, int] | None = None,
) -> np.ndarray:
    """`radstream.imaging.preprocess.area_resize` as it was, with OpenCV."""
    if decode_scale > 1 and source_shape is not None:
        top, left, side = preprocess_module.square_geometry(source_shape, size)
        reduced = max(1, round(side / decode_scale))
        top, left = top // decode_scale, left // decode_scale
        pixels = pixels[top : top + reduced, left : left + reduced]
    short = min(pixels.shape[:2])
    factor = short // size
    side = short - short % factor if factor >= 2 else short
    grid = max(1, preprocess_module.BLOCK // decode_scale)
    work = preprocess_module.centre_square(pixels, side, grid).astype(np.float32)
    if factor >= 2:
        reduced = side // factor
        work = cv2.resize(work, (reduced, reduced), interpolation=cv2.INTER_AREA)
    if work.shape[0] != size:
        work = cv2.resize(work, (size, size), interpolation=cv2.INTER_AREA)
    return work


def opencv_decode_png(data: bytes, header: ImageHeader) -> DecodedPixels:
    """`radstream.imaging.png.decode_png` as it was, with OpenCV (errors simplified)."""
    pixels = cv2.imdecode(np.frombuffer(data, dtype=np.uint8), _PNG_FLAGS)
    if pixels is None or pixels.size == 0:
        raise ImageUndecodable("the PNG data is corrupt and could not be decoded")
    maxval = 65535.0 if pixels.dtype == np.uint16 else 255.0
    return DecodedPixels(pixels=pixels, gain=1.0, offset=0.0, low=0.0, high=maxval)


@contextmanager
def with_opencv() -> Iterator[None]:
    """Route preprocessing and PNG decoding through the OpenCV versions meanwhile."""
    resize, decode = preprocess_module.area_resize, prepare_module.decode_png
    preprocess_module.area_resize = opencv_area_resize  # type: ignore[assignment]
    prepare_module.decode_png = opencv_decode_png
    try:
        yield
    finally:
        preprocess_module.area_resize = resize  # type: ignore[assignment]
        prepare_module.decode_png = decode


def images() -> dict[str, bytes]:
    """The images timed, by label."""
    synthetic = synthetic_cxr(2000, 2500, np.random.default_rng(0))
    rng = np.random.default_rng(1)
    return {
        "synthetic 2000x2500 JPEG (1/8)": encode(synthetic, "jpeg", rng=rng)[0],
        "RG1 1841x1955 JPEG (1/8)": encode_jpeg((source_pixels() >> 7).astype(np.uint8)),
        "synthetic 2000x2500 PNG 8-bit": encode(synthetic, "png", rng=rng)[0],
        "synthetic 2000x2500 PNG 16-bit": encode(synthetic, "png16", rng=rng)[0],
        "RG1 1841x1955 DICOM explicit LE": encoded("explicit-le"),
    }


def measure(data: bytes, repeat: int) -> dict[str, object]:
    """Interleaved before/after timings of ``prepare_image(data)`` and the input difference."""
    with with_opencv():
        before_tensor = prepare_image(data).tensor
    after_tensor = prepare_image(data).tensor
    wall: dict[str, list[float]] = {"before": [], "after": []}
    cpu: dict[str, list[float]] = {"before": [], "after": []}
    for i in range(repeat):
        # Alternate which goes first, so neither always runs on a warmer cache.
        order = ("before", "after") if i % 2 == 0 else ("after", "before")
        for key in order:
            run: Callable[[], object] = lambda: prepare_image(data)  # noqa: E731
            if key == "before":
                with with_opencv():
                    w0, c0 = time.perf_counter(), time.process_time()
                    run()
                    w1, c1 = time.perf_counter(), time.process_time()
            else:
                w0, c0 = time.perf_counter(), time.process_time()
                run()
                w1, c1 = time.perf_counter(), time.process_time()
            wall[key].append((w1 - w0) * 1e3)
            cpu[key].append((c1 - c0) * 1e3)
    row: dict[str, object] = {}
    for key in ("before", "after"):
        p50, p95 = np.percentile(wall[key], [50, 95])
        row[key] = {
            "p50_ms": round(float(p50), 2),
            "p95_ms": round(float(p95), 2),
            "cpu_p50_ms": round(float(np.median(cpu[key])), 2),
        }
    before, after = row["before"], row["after"]
    assert isinstance(before, dict) and isinstance(after, dict)
    row["change_p50"] = round(after["p50_ms"] / before["p50_ms"] - 1.0, 3)
    row["change_cpu_p50"] = round(after["cpu_p50_ms"] / before["cpu_p50_ms"] - 1.0, 3)
    row["max_abs_input_diff"] = float(np.abs(after_tensor.astype(np.float64) - before_tensor).max())
    return row


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeat", type=int, default=40)
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    args = parser.parse_args()
    report = {}
    for label, data in images().items():
        # PNG decodes are 10-40x slower than the JPEG path; fewer runs keep it short.
        repeat = args.repeat if "JPEG" in label else max(5, args.repeat // 4)
        report[label] = measure(data, repeat)
    if args.json:
        print(json.dumps(report))
        return 0
    print("prepare_image, OpenCV (before) vs NumPy/Pillow (after), interleaved")
    print(f"  {'image':<34} {'before p50/p95 (cpu)':>24} {'after p50/p95 (cpu)':>24}  change")
    for label, row in report.items():
        b, a = row["before"], row["after"]
        assert isinstance(b, dict) and isinstance(a, dict)
        print(
            f"  {label:<34} {b['p50_ms']:>8} / {b['p95_ms']:>6} ({b['cpu_p50_ms']:>6}) "
            f"{a['p50_ms']:>8} / {a['p95_ms']:>6} ({a['cpu_p50_ms']:>6})  "
            f"{row['change_p50']:+.1%} (cpu {row['change_cpu_p50']:+.1%})  "
            f"max |input diff| {row['max_abs_input_diff']}"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
