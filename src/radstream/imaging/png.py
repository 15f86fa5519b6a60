"""PNG: header parsing without decoding, and decoding to grayscale."""

from __future__ import annotations

from typing import Final

import cv2
import numpy as np

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

# GRAYSCALE makes libpng itself fold colour into luminance while it decodes rows, which
# is cheaper than decoding colour and converting; ANYDEPTH keeps 16-bit samples 16-bit.
# Orientation is ignored so decoded dimensions always equal the header's.
_DECODE_FLAGS: Final = cv2.IMREAD_GRAYSCALE | cv2.IMREAD_ANYDEPTH | cv2.IMREAD_IGNORE_ORIENTATION


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
    expanded to 8 bits by libpng, so 255 is right for them too.
    """
    pixels = cv2.imdecode(np.frombuffer(data, dtype=np.uint8), _DECODE_FLAGS)
    if pixels is None or pixels.size == 0:
        # OpenCV reports every libpng failure as an empty result; the chunk structure
        # tells a cut-off upload apart from a corrupt one.
        if ends_early(data):
            raise ImageTruncated("the PNG stream ends before its IEND chunk")
        raise ImageUndecodable("the PNG data is corrupt and could not be decoded")
    if pixels.shape != (header.height, header.width):
        raise ImageUndecodable(
            f"the PNG decoded to {pixels.shape[1]}x{pixels.shape[0]}, "
            f"but its header declares {header.width}x{header.height}"
        )
    maxval = 65535.0 if pixels.dtype == np.uint16 else 255.0
    return DecodedPixels(pixels=pixels, gain=1.0, offset=0.0, low=0.0, high=maxval)


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
