"""JPEG: frame-header parsing and decoding at reduced size through DCT scaling.

Decoding goes through simplejpeg (libjpeg-turbo's TurboJPEG API, MIT, ~1 MB) rather
than OpenCV's ``imdecode``: both scale inside the IDCT and give identical pixels at
the same speed (benchmarks/decode.py), but libjpeg only *warns* when the entropy-coded
data runs out ("premature end of data segment") and fills the rest of the image with
mid-grey. OpenCV prints that warning to stderr and returns the padded image, also when
a cut stream was patched with an end-of-image marker; TurboJPEG's stop-on-warning mode
(simplejpeg ``strict=True``) turns it into an error, so a cut file fails
``IMAGE_TRUNCATED`` instead of getting a result.

Decode work is bounded. A progressive JPEG may repeat its scans: each scan makes the
decoder pass over every coefficient again, so 1,500 scans in 300 KB take about a minute.
libjpeg-turbo offers a scan limit (TJPARAM_SCANLIMIT, djpeg ``-maxscans``) that neither
simplejpeg nor Pillow exposes; the scans are therefore counted before decoding (every
``FF DA`` is a start-of-scan marker: entropy-coded data stuffs a zero after each ``FF``),
and a stream with more than :data:`MAX_JPEG_SCANS` fails ``IMAGE_TOO_COMPLEX``.
"""

from __future__ import annotations

import io
from typing import Final

import numpy as np
import simplejpeg  # type: ignore[import-untyped]  # stubs without py.typed
from PIL import Image

from radstream.errors import ImageTooComplex, ImageTooLarge, ImageTruncated, ImageUndecodable
from radstream.imaging.decoded import DecodedPixels, ImageHeader

_EOI: Final = b"\xff\xd9"
_SOS: Final = 0xDA
_SOS_MARKER: Final = b"\xff\xda"
MAX_JPEG_SCANS: Final = 100
"""Most scans a JPEG may have: encoders write 1 (baseline) to about 10 (progressive)."""
# JPEG-LS start of frame (SOF55), read by `jpeg_frame_size` for DICOM JPEG-LS frames.
_SOF55: Final = 0xF7
# Start-of-frame markers SOF0..SOF15, less DHT (C4), JPG (C8) and DAC (CC) which share
# the range but are not frame headers.
_SOF_MARKERS: Final = frozenset(range(0xC0, 0xD0)) - {0xC4, 0xC8, 0xCC}
# Markers without a length field.
_STANDALONE_MARKERS: Final = frozenset({0x01, *range(0xD0, 0xD8)})
_SCALES: Final = (8, 4, 2, 1)
# libjpeg warnings that mean the entropy-coded data ended before the last block: the
# decoder would fill the rest with grey. Other warnings (extraneous bytes between
# markers, say) are benign and seen in real archives; those streams decode leniently.
_TRUNCATION_WARNINGS: Final = ("premature end",)


def read_jpeg_header(data: bytes) -> tuple[ImageHeader, int]:
    """Walk the JPEG markers up to the frame header (SOFn) and read its dimensions.

    Returns the header and the offset of the frame header, after which the end-of-image
    marker must appear. Parsing by hand is microseconds and, unlike ``Image.open``, is
    not subject to Pillow's global decompression-bomb settings.
    """
    end = len(data)
    pos = 2  # after SOI
    while True:
        if pos >= end:
            raise ImageTruncated("the JPEG ends before its frame header")
        if data[pos] != 0xFF:
            raise ImageUndecodable(f"the JPEG has no marker where one is due (offset {pos})")
        while pos < end and data[pos] == 0xFF:  # fill bytes may precede a marker
            pos += 1
        if pos >= end:
            raise ImageTruncated("the JPEG ends before its frame header")
        marker = data[pos]
        pos += 1
        if marker in _STANDALONE_MARKERS:
            continue
        if marker == _SOS or marker == _EOI[1]:
            raise ImageUndecodable("the JPEG has no frame header before its image data")
        if pos + 2 > end:
            raise ImageTruncated("the JPEG ends inside a marker segment")
        length = int.from_bytes(data[pos : pos + 2], "big")
        if length < 2:
            raise ImageUndecodable(f"the JPEG has a marker segment of length {length}")
        if marker in _SOF_MARKERS:
            if pos + 8 > end:
                raise ImageTruncated("the JPEG ends inside its frame header")
            precision = data[pos + 2]
            height = int.from_bytes(data[pos + 3 : pos + 5], "big")
            width = int.from_bytes(data[pos + 5 : pos + 7], "big")
            if width == 0 or height == 0:
                # Height 0 defers it to a DNL marker, which no common decoder supports.
                raise ImageUndecodable(f"the JPEG declares an empty image ({width}x{height})")
            return ImageHeader(width=width, height=height, bit_depth=precision), pos
        pos += length


def check_scan_count(data: bytes) -> int:
    """The number of scans of a JPEG stream; ``ImageTooComplex`` above :data:`MAX_JPEG_SCANS`.

    A byte count in C: about a millisecond for a 10 MB file.
    """
    scans = data.count(_SOS_MARKER)
    if scans > MAX_JPEG_SCANS:
        raise ImageTooComplex(
            f"the JPEG has {scans} scans; at most {MAX_JPEG_SCANS} are decoded",
            scans=scans,
            limit=MAX_JPEG_SCANS,
        )
    return scans


def jpeg_frame_size(data: bytes) -> tuple[int, int] | None:
    """``(width, height)`` of a JPEG or JPEG-LS stream's frame header, or None if not found.

    Lenient where :func:`read_jpeg_header` is strict: it only tells a caller (the DICOM
    pixel guard) what the stream will decode to; a stream it cannot read is left to the
    decoder, which reports it.
    """
    end = len(data)
    pos = 2
    while pos + 4 <= end:
        if data[pos] != 0xFF:
            return None
        while pos < end and data[pos] == 0xFF:
            pos += 1
        if pos >= end:
            return None
        marker = data[pos]
        pos += 1
        if marker in _STANDALONE_MARKERS:
            continue
        if marker in (_SOS, _EOI[1]) or pos + 2 > end:
            return None
        if (marker in _SOF_MARKERS or marker == _SOF55) and pos + 7 <= end:
            height = int.from_bytes(data[pos + 3 : pos + 5], "big")
            width = int.from_bytes(data[pos + 5 : pos + 7], "big")
            return width, height
        pos += int.from_bytes(data[pos : pos + 2], "big")
    return None


def choose_decode_scale(header: ImageHeader, size: int) -> int:
    """Largest DCT reduction in {1, 2, 4, 8} that keeps the short side at least ``size``.

    libjpeg rounds reduced dimensions up, hence the ceiling division.
    """
    short = min(header.width, header.height)
    for scale in _SCALES:
        if -(-short // scale) >= size:
            return scale
    return 1


def decode_jpeg(data: bytes, header: ImageHeader, frame_offset: int, size: int) -> DecodedPixels:
    """Decode a JPEG to grayscale at the reduced size chosen for model size ``size``.

    The reduction happens inside the IDCT, so a 2000x2500 image destined for 224x224 is
    decoded as 250x313 for a fraction of the cost. A stream whose entropy-coded data
    ends early fails ``ImageTruncated`` (whether or not an end marker was patched on);
    streams TurboJPEG cannot decode at all (CMYK, 12-bit) go through Pillow.
    """
    check_scan_count(data)
    scale = choose_decode_scale(header, size)
    expected = (-(-header.height // scale), -(-header.width // scale))
    pixels = _decode_with_turbojpeg(data, expected)
    if pixels is None:
        if data.find(_EOI, frame_offset) < 0:
            raise ImageTruncated("the JPEG stream ends early (no end-of-image marker)")
        pixels = _decode_with_pillow(data, header, scale)
    if pixels.shape != expected:
        raise ImageUndecodable(
            f"the JPEG decoded to {pixels.shape[1]}x{pixels.shape[0]} at 1/{scale}, "
            f"expected {expected[1]}x{expected[0]}"
        )
    # 12-bit JPEG (rare, from some DICOM exports) decodes to uint16 when supported.
    maxval = 255.0 if pixels.dtype == np.uint8 else float((1 << header.bit_depth) - 1)
    return DecodedPixels(
        pixels=pixels,
        gain=1.0,
        offset=0.0,
        low=0.0,
        high=maxval,
        decode_scale=scale,
        source_shape=(header.height, header.width),
    )


def _decode_with_turbojpeg(data: bytes, expected: tuple[int, int]) -> np.ndarray | None:
    """Grey decode at the size ``expected`` (rows, columns), or ``None`` to defer.

    ``min_height``/``min_width`` make TurboJPEG pick the smallest DCT scale that still
    covers them, which is the scale `choose_decode_scale` chose. Libjpeg's grey
    conversion keeps the luma channel, as OpenCV's IMREAD_GRAYSCALE did.
    """
    height, width = expected
    decoded: np.ndarray
    try:
        decoded = simplejpeg.decode_jpeg(
            data, colorspace="GRAY", min_height=height, min_width=width, strict=True
        )
    except ValueError as exc:
        message = str(exc)
        if any(warning in message.lower() for warning in _TRUNCATION_WARNINGS):
            raise ImageTruncated(f"the JPEG stream ends early: {message}") from exc
        if not message.startswith("Corrupt JPEG data"):
            return None  # an error, not a warning: let Pillow try and report it
        try:
            decoded = simplejpeg.decode_jpeg(
                data, colorspace="GRAY", min_height=height, min_width=width, strict=False
            )
        except ValueError:
            return None
    return decoded.reshape(decoded.shape[:2])


def _decode_with_pillow(data: bytes, header: ImageHeader, scale: int) -> np.ndarray:
    """Pillow path for streams TurboJPEG declined: CMYK, corrupt data.

    Pillow raises on a stream that ends early only while ``LOAD_TRUNCATED_IMAGES`` is
    False, a process-wide switch other code may flip; the EOI check in `decode_jpeg`
    therefore refuses cut-off streams before they get here.
    """
    try:
        with Image.open(io.BytesIO(data), formats=["JPEG"]) as image:
            image.draft("L", (header.width // scale, header.height // scale))
            gray = image if image.mode == "L" else image.convert("L")
            gray.load()
            return np.asarray(gray)
    except Image.DecompressionBombError as exc:
        raise ImageTooLarge(f"Pillow refused the JPEG as too large: {exc}") from exc
    except OSError as exc:
        if "truncated" in str(exc):
            raise ImageTruncated(f"the JPEG stream ends early: {exc}") from exc
        raise ImageUndecodable(f"the JPEG could not be decoded: {exc}") from exc
