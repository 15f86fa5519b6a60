"""The result of `prepare_image`."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from radstream.imaging.dicom import DicomFacts


@dataclass(frozen=True)
class PreparedImage:
    """A model-ready tensor plus what was learnt about the source image.

    ``tensor`` is float32 with shape ``[1, channels, size, size]``, C-contiguous.
    ``width`` and ``height`` are the stored image's dimensions (not the reduced decode);
    ``decode_scale`` is the DCT reduction (1, 2, 4 or 8) used while decoding;
    ``photometric`` is the DICOM photometric interpretation, ``None`` for PNG and JPEG;
    ``dicom`` is what a DICOM header says about the picture (``None`` for PNG and JPEG).
    """

    tensor: np.ndarray
    format: str
    width: int
    height: int
    bit_depth: int
    decode_scale: int
    photometric: str | None
    dicom: DicomFacts | None = None
