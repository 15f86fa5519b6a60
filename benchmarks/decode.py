"""Decode + preprocess time per DICOM encoding on a real radiograph, and the JPEG path.

(a) encodings: `prepare_image` (header checks, first-frame decode, preprocessing to a
    [1,1,224,224] tensor) on pydicom-data's RG1 CR chest PA (1841x1955, 15 bits) in
    each encoding of tests/imaging/real_radiographs.py, with the plugin
    `radstream.imaging.dicom_codecs` prefers. One process, one thread, in memory.
(b) plugins: decode alone with every installed pydicom plugin for the encodings that
    several can decode, which is how the preferences were chosen.
(c) JPEG path before/after: decoding a 2000x2500 chest JPEG (the pipeline's synthetic
    load) and the radiograph as an 8-bit JPEG at the reduced size the pipeline uses,
    with OpenCV's imdecode (before) and simplejpeg in stop-on-warning mode (after), and
    the whole `prepare_image` after.
(d) area resize before/after: the preprocessing's resizes with OpenCV's INTER_AREA
    (before) and with `radstream.imaging.area` (after, NumPy), interleaved in one
    process, for the reduced JPEG path (about 250 x 250 to 224 x 224) and for a full-size
    8- and 16-bit image (2000 x 2000 block mean to 250 x 250, then to 224 x 224); with
    the largest difference between the two.

Times are p50 and p95 over ``--repeat`` runs after one warm-up run.

Run:  .venv/bin/python benchmarks/decode.py [--repeat 15] [--json]
"""

from __future__ import annotations

import argparse
import io
import json
import sys
import time
import warnings
from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np
import pydicom
import simplejpeg
from pydicom.pixels.decoders.base import get_decoder
from pydicom.pixels.utils import pixel_array

from radstream.imaging import prepare_image
from radstream.imaging.area import area_resize_2d, block_mean
from radstream.imaging.dicom_codecs import plugin_for, register_plugins
from radstream.imaging.rle import decode_rle_frame
from radstream.loadgen.encoders import encode_jpeg, to_uint8
from radstream.loadgen.phantom import synthetic_cxr

# The encodings are built by the tests' helper, so benchmark and tests use the same bytes.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests" / "imaging"))
from real_radiographs import ENCODINGS, encoded, source_pixels

Timing = dict[str, float]
# What the pipeline's JPEG path called before: OpenCV's reduced-size grey decode.
CV2_FLAGS = cv2.IMREAD_REDUCED_GRAYSCALE_8 | cv2.IMREAD_IGNORE_ORIENTATION


def time_it(function: Callable[[], object], repeat: int) -> Timing:
    """p50 and p95 in ms over ``repeat`` calls after one warm-up call."""
    function()
    samples = []
    for _ in range(repeat):
        start = time.perf_counter()
        function()
        samples.append(time.perf_counter() - start)
    p50, p95 = np.percentile(np.asarray(samples) * 1000.0, [50, 95])
    return {"p50_ms": round(float(p50), 1), "p95_ms": round(float(p95), 1)}


def encodings(repeat: int) -> list[dict[str, object]]:
    """(a): prepare_image per encoding."""
    rows: list[dict[str, object]] = []
    for name in ENCODINGS:
        data = encoded(name)
        ds = pydicom.dcmread(io.BytesIO(data), stop_before_pixels=True)
        syntax = ds.file_meta.TransferSyntaxUID
        rows.append(
            {
                "encoding": name,
                "transfer_syntax": str(syntax),
                "plugin": _path_label(name, str(syntax)),
                "mb": round(len(data) / 1e6, 2),
                **time_it(lambda data=data: prepare_image(data), repeat),
            }
        )
    return rows


def _path_label(name: str, syntax: str) -> str:
    if name == "rle" and plugin_for(syntax) != "pylibjpeg":
        return "radstream PackBits (Pillow)"
    if name == "jpeg-baseline":
        return "radstream reduced IDCT (simplejpeg)"
    return plugin_for(syntax) or "pydicom native"


def plugins(repeat: int) -> list[dict[str, object]]:
    """(b): decode alone with each installed plugin, where several can decode."""
    rows: list[dict[str, object]] = []
    for name in ("rle", "jpeg-ls-lossless", "jpeg-ls-near", "j2k-lossless", "j2k-lossy"):
        ds = pydicom.dcmread(io.BytesIO(encoded(name)))
        if name == "rle":
            timing = time_it(lambda ds=ds: decode_rle_frame(ds), repeat)
            rows.append({"encoding": name, "plugin": "radstream-packbits", **timing})
        for plugin in get_decoder(ds.file_meta.TransferSyntaxUID).available_plugins:
            rows.append(
                {
                    "encoding": name,
                    "plugin": plugin,
                    **time_it(
                        lambda ds=ds, plugin=plugin: pixel_array(
                            ds, index=0, decoding_plugin=plugin
                        ),
                        repeat,
                    ),
                }
            )
    return rows


def jpeg_path(repeat: int) -> list[dict[str, object]]:
    """(c): the reduced-size JPEG decode with OpenCV (before) and simplejpeg (after)."""
    images = {
        "synthetic 2000x2500": encode_jpeg(
            to_uint8(synthetic_cxr(2000, 2500, np.random.default_rng(0)))
        ),
        "RG1 1841x1955": encode_jpeg((source_pixels() >> 7).astype(np.uint8)),
    }
    rows: list[dict[str, object]] = []
    for label, data in images.items():
        buffer = np.frombuffer(data, dtype=np.uint8)
        height, width = cv2.imdecode(buffer, CV2_FLAGS).shape
        before = time_it(lambda buffer=buffer: cv2.imdecode(buffer, CV2_FLAGS), repeat)
        after = time_it(
            lambda data=data, h=height, w=width: simplejpeg.decode_jpeg(
                data, colorspace="GRAY", min_height=h, min_width=w, strict=True
            ),
            repeat,
        )
        whole = time_it(lambda data=data: prepare_image(data), repeat)
        rows.append(
            {
                "image": label,
                "decoded": f"{width}x{height}",
                "before_cv2": before,
                "after_simplejpeg": after,
                "prepare_image_after": whole,
                "change_p50": round(after["p50_ms"] / before["p50_ms"] - 1.0, 3),
            }
        )
    return rows


def _cv2_area(pixels: np.ndarray, size: int, factor: int) -> np.ndarray:
    """The preprocessing's resizes as they were: float32, then OpenCV's INTER_AREA."""
    work = pixels.astype(np.float32)
    if factor >= 2:
        side = work.shape[0] // factor
        work = cv2.resize(work, (side, side), interpolation=cv2.INTER_AREA)
    return cv2.resize(work, (size, size), interpolation=cv2.INTER_AREA)


def _numpy_area(pixels: np.ndarray, size: int, factor: int) -> np.ndarray:
    """The same with `radstream.imaging.area`, as `area_resize` calls it."""
    work = block_mean(pixels, factor, factor) if factor >= 2 else pixels
    return area_resize_2d(work, size, size)


def area_path(repeat: int) -> list[dict[str, object]]:
    """(d): OpenCV's INTER_AREA against the NumPy area resize, interleaved."""
    rng = np.random.default_rng(0)
    cases = {
        "JPEG 1/8: 250x250 uint8 -> 224": (rng.integers(0, 256, (250, 250), np.uint8), 1),
        "JPEG 1/8: 231x231 uint8 -> 224": (rng.integers(0, 256, (231, 231), np.uint8), 1),
        "full 2000x2000 uint8 -> 224": (rng.integers(0, 256, (2000, 2000), np.uint8), 8),
        "full 2000x2000 uint16 -> 224": (rng.integers(0, 65536, (2000, 2000), np.uint16), 8),
    }
    rows: list[dict[str, object]] = []
    for label, (pixels, factor) in cases.items():
        samples: dict[str, list[float]] = {"before_cv2": [], "after_numpy": []}
        functions = {"before_cv2": _cv2_area, "after_numpy": _numpy_area}
        for function in functions.values():
            function(pixels, 224, factor)  # warm-up
        for _ in range(repeat):
            for key, function in functions.items():
                start = time.perf_counter()
                function(pixels, 224, factor)
                samples[key].append(time.perf_counter() - start)
        timings = {
            key: dict(
                zip(
                    ("p50_ms", "p95_ms"),
                    (round(float(v), 3) for v in np.percentile(np.asarray(s) * 1e3, [50, 95])),
                    strict=True,
                )
            )
            for key, s in samples.items()
        }
        diff = np.abs(
            _numpy_area(pixels, 224, factor).astype(np.float64) - _cv2_area(pixels, 224, factor)
        )
        rows.append({"case": label, **timings, "max_abs_diff": float(diff.max())})
    return rows


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeat", type=int, default=15)
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    args = parser.parse_args()
    # GDCM and pydicom chatter (12-bit probing, VR warnings) is not what is measured.
    warnings.simplefilter("ignore")
    register_plugins()
    report = {
        "encodings": encodings(args.repeat),
        "plugins": plugins(args.repeat),
        "jpeg_path": jpeg_path(args.repeat * 4),
        "area_resize": area_path(args.repeat * 20),
    }
    if args.json:
        print(json.dumps(report))
        return 0
    print(f"(a) prepare_image on RG1 (CR chest, 1841x1955, 15 bits), {args.repeat} runs")
    print(f"  {'encoding':<20} {'plugin':<36} {'MB':>6} {'p50 ms':>8} {'p95 ms':>8}")
    for row in report["encodings"]:
        print(
            f"  {row['encoding']:<20} {row['plugin']:<36} {row['mb']:>6} "
            f"{row['p50_ms']:>8} {row['p95_ms']:>8}"
        )
    print("(b) decode alone, by plugin")
    for row in report["plugins"]:
        print(f"  {row['encoding']:<20} {row['plugin']:<18} {row['p50_ms']:>8} {row['p95_ms']:>8}")
    print("(c) JPEG path at reduced size: p50 / p95 ms")
    for row in report["jpeg_path"]:
        before, after, whole = (
            row["before_cv2"],
            row["after_simplejpeg"],
            row["prepare_image_after"],
        )
        print(
            f"  {row['image']:<20} decoded {row['decoded']:<8} "
            f"cv2 {before['p50_ms']} / {before['p95_ms']}  "
            f"simplejpeg {after['p50_ms']} / {after['p95_ms']}  ({row['change_p50']:+.1%})  "
            f"prepare_image {whole['p50_ms']} / {whole['p95_ms']}"
        )
    print("(d) area resize, interleaved: p50 / p95 ms, largest difference")
    for row in report["area_resize"]:
        before, after = row["before_cv2"], row["after_numpy"]
        print(
            f"  {row['case']:<32} cv2 {before['p50_ms']} / {before['p95_ms']}  "
            f"numpy {after['p50_ms']} / {after['p95_ms']}  max |diff| {row['max_abs_diff']}"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
