"""Fast path for JPEG Baseline DICOM: decode the frame at reduced size like a plain JPEG.

pydicom's Pillow plugin always decodes at full size (~15 ms for 2000x2500). A
monochrome 8-bit baseline frame is an ordinary JPEG stream, so it can take the same
DCT-scaled decode as a .jpg upload (~4 ms). Colour and other layouts, and frames that
are not a plain JPEG stream, are left to pydicom.
"""

from __future__ import annotations

import numpy as np
from pydicom.dataset import Dataset
from pydicom.encaps import generate_frames
from pydicom.uid import JPEGBaseline8Bit

from radstream.imaging.decoded import ImageHeader
from radstream.imaging.formats import JPEG_SOI
from radstream.imaging.jpeg import decode_jpeg, read_jpeg_header


def decode_jpeg_frame(ds: Dataset, header: ImageHeader, size: int) -> tuple[np.ndarray, int] | None:
    """Decode the first frame at the DCT reduction chosen for model size ``size``.

    Returns ``(pixels, decode_scale)``, or ``None`` when the data set is not a
    single-sample 8-bit JPEG Baseline image whose frame matches Rows and Columns.
    Truncated or corrupt frames raise the same typed errors as a plain JPEG.
    """
    if ds.file_meta.TransferSyntaxUID != JPEGBaseline8Bit:
        return None
    if int(ds.get("SamplesPerPixel") or 1) != 1 or int(ds.BitsAllocated) != 8:
        return None
    if header.photometric not in ("MONOCHROME1", "MONOCHROME2"):
        return None  # palette indices must not be averaged by a reduced-size IDCT
    frames = int(ds.get("NumberOfFrames") or 1)
    try:
        frame = next(generate_frames(ds.PixelData, number_of_frames=frames))
    except (ValueError, StopIteration):
        return None
    if not frame.startswith(JPEG_SOI):
        return None
    jpeg_header, frame_offset = read_jpeg_header(frame)
    if (jpeg_header.width, jpeg_header.height) != (header.width, header.height):
        return None
    if jpeg_header.bit_depth != 8:
        return None
    decoded = decode_jpeg(frame, jpeg_header, frame_offset, size)
    return decoded.pixels, decoded.decode_scale
