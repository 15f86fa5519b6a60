"""PNG: header parsing without decoding, and decoding to grayscale.

Decoding goes through Pillow (zlib and its own PNG reader), which the prepare Lambda
carries anyway, rather than OpenCV's libpng (OpenCV is 160 MB unpacked and would not
leave room for the DICOM codecs). The result is what OpenCV's ``IMREAD_GRAYSCALE |
IMREAD_ANYDEPTH`` gave: grey samples as stored (1, 2 and 4 bits expanded to 8, 16 bits
kept), colour folded into luminance with libpng's integer weights, alpha dropped. One
difference: Pillow reads 16-bit colour (and 16-bit grey with alpha) at 8 bits per
sample, so those rare files lose their low byte.
"""

from __future__ import annotations

import io
import zlib
from typing import Final

import numpy as np
from PIL import Image, PngImagePlugin

from radstream.errors import ImageTruncated, ImageUndecodable
from radstream.imaging.decoded import DecodedPixels, ImageHeader
from radstream.imaging.formats import PNG_SIGNATURE

_IHDR_END: Final = 33  # signature (8) + length (4) + type (4) + IHDR data (13) + CRC (4)
# Allowed bit depths per colour type (PNG specification, table 11.1).
_VALID_BIT_DEPTHS: Final = {
    0: (1, 2, 4, 8, 16),
    2: (8, 16),
    3: (1, 2, 4, 8),
    4: (8, 16),
    6: (8, 16),
}

# libpng's rgb_to_gray weights (png_set_rgb_to_gray(..., 0.299, 0.587), 15-bit fixed
# point, blue takes the rest), which OpenCV used for IMREAD_GRAYSCALE; libpng truncates.
_LUMA_RED: Final = 9797
_LUMA_GREEN: Final = 19234
_LUMA_BLUE: Final = 32768 - _LUMA_RED - _LUMA_GREEN
_LUMA_SHIFT: Final = 15
# Pillow modes a PNG opens in that hold grey samples as they are.
_GREY_MODES: Final = frozenset({"L", "I;16", "I;16B", "I;16L", "I"})


def read_png_header(data: bytes) -> ImageHeader:
    """Parse the IHDR chunk of a PNG; no pixel data is touched.

    Raises ``ImageTruncated`` if the file ends inside IHDR and ``ImageUndecodable`` if the
    IHDR chunk is malformed.
    """
    if len(data) < _IHDR_END:
        raise ImageTruncated("the PNG ends before its IHDR header is complete")
    if data[8:16] != b"\x00\x00\x00\x0dIHDR":
        raise ImageUndecodable("the PNG does not start with a valid IHDR chunk")
    width = int.from_bytes(data[16:20], "big")
    height = int.from_bytes(data[20:24], "big")
    bit_depth, colour_type = data[24], data[25]
    if width == 0 or height == 0:
        raise ImageUndecodable(f"the PNG declares an empty image ({width}x{height})")
    if bit_depth not in _VALID_BIT_DEPTHS.get(colour_type, ()):
        raise ImageUndecodable(
            f"the PNG declares bit depth {bit_depth} with colour type {colour_type}"
        )
    return ImageHeader(width=width, height=height, bit_depth=bit_depth)


def decode_png(data: bytes, header: ImageHeader) -> DecodedPixels:
    """Decode a PNG to grayscale (colour becomes luminance, alpha is dropped).

    Values are scaled by the decoded sample range (255 or 65535): lower bit depths are
    expanded to 8 bits, so 255 is right for them too. Raises ``ImageTruncated`` when
    the chunk sequence ends before IEND and ``ImageUndecodable`` for corrupt data,
    including a critical chunk whose CRC does not match (libpng's rule; Pillow does not
    check image data CRCs).
    """
    if ends_early(data):
        raise ImageTruncated("the PNG stream ends before its IEND chunk")
    if not critical_crcs_match(data):
        raise ImageUndecodable("a critical PNG chunk fails its CRC check")
    try:
        # The plugin class rather than Image.open: the pixel guard is imaging.max_pixels,
        # checked on the header before this, and Image.open would add Pillow's own
        # process-wide decompression-bomb limit (179 MP) on top of it.
        with PngImagePlugin.PngImageFile(io.BytesIO(data)) as image:
            image.load()
            pixels = grey_samples(image)
    except (OSError, SyntaxError, ValueError, EOFError) as exc:
        # Pillow reports zlib errors, bad filters and short data with these types.
        raise ImageUndecodable(f"the PNG data is corrupt and could not be decoded: {exc}") from exc
    if pixels.shape != (header.height, header.width):
        raise ImageUndecodable(
            f"the PNG decoded to {pixels.shape[1]}x{pixels.shape[0]}, "
            f"but its header declares {header.width}x{header.height}"
        )
    maxval = 65535.0 if pixels.dtype == np.uint16 else 255.0
    return DecodedPixels(pixels=pixels, gain=1.0, offset=0.0, low=0.0, high=maxval)


def grey_samples(image: Image.Image) -> np.ndarray:
    """A decoded PNG image as a 2-D uint8 or uint16 array of grey samples.

    Grey stays as stored; grey with alpha keeps the grey channel; palette, RGB and RGBA
    become luminance ``(9797 R + 19234 G + 3737 B) >> 15``, bit for bit what libpng's
    rgb_to_gray gave OpenCV.
    """
    if image.mode == "1":
        return np.asarray(image.convert("L"))
    if image.mode in _GREY_MODES:
        grey = np.asarray(image)
        # Pillow may hold 16-bit grey as 32-bit "I"; the samples still fit 16 bits.
        return grey if grey.dtype == np.uint8 else grey.astype(np.uint16, copy=False)
    if image.mode == "LA":
        return np.ascontiguousarray(np.asarray(image)[..., 0])
    rgb = np.asarray(image if image.mode in ("RGB", "RGBA") else image.convert("RGB"))
    red, green, blue = (rgb[..., i].astype(np.uint32) for i in range(3))
    luma = red * _LUMA_RED
    luma += green * _LUMA_GREEN
    luma += blue * _LUMA_BLUE
    luma >>= _LUMA_SHIFT
    return luma.astype(np.uint8)


def critical_crcs_match(data: bytes) -> bool:
    """True if every critical chunk (IHDR, PLTE, IDAT, IEND) has the CRC it carries.

    A few milliseconds for a large image (zlib's CRC runs at gigabytes a second).
    """
    pos = len(PNG_SIGNATURE)
    end = len(data)
    view = memoryview(data)
    while pos + 12 <= end:
        length = int.from_bytes(data[pos : pos + 4], "big")
        stop = pos + 8 + length
        if stop + 4 > end:
            return True  # ends_early reports this
        kind = data[pos + 4 : pos + 8]
        # Bit 5 of the first type byte clear: a critical chunk.
        if not kind[0] & 0x20:
            crc = int.from_bytes(data[stop : stop + 4], "big")
            if zlib.crc32(view[pos + 4 : stop]) != crc:
                return False
        if kind == b"IEND":
            return True
        pos = stop + 4
    return True


def ends_early(data: bytes) -> bool:
    """True if the PNG's chunk sequence runs past the end of ``data`` before IEND.

    Walks chunk headers only (a few hundred for a large image), so it is cheap enough to
    run whenever decoding fails.
    """
    pos = len(PNG_SIGNATURE)
    end = len(data)
    while pos + 8 <= end:
        length = int.from_bytes(data[pos : pos + 4], "big")
        kind = data[pos + 4 : pos + 8]
        pos += 12 + length  # length, type, payload, CRC
        if pos > end:
            return True
        if kind == b"IEND":
            return False
    return True
