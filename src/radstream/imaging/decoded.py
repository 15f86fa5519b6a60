"""What format decoders hand to the preprocessing step."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class ImageHeader:
    """Facts read from an image's header, before any pixel is decoded."""

    width: int
    height: int
    bit_depth: int
    photometric: str | None = None
    frames: int = 1

    @property
    def pixels(self) -> int:
        """Number of pixels the header declares (one frame)."""
        return self.width * self.height

    @property
    def declared_pixels(self) -> int:
        """Pixels over every frame the header declares: what the pixel guard counts."""
        return self.width * self.height * self.frames


@dataclass(frozen=True)
class DecodedPixels:
    """Decoded pixels plus the affine map that gives them meaning.

    ``pixels`` holds stored values as decoded (any real dtype, 2-D, possibly reduced in
    size by the decoder). ``pixels * gain + offset`` is the display value, oriented so that
    bright means dense; display values ``low`` and ``high`` map to the model's
    ``input_min`` and ``input_max``.

    Keeping the map separate instead of applying it here lets preprocessing apply it
    once to the small resized image: cropping and area averaging are linear, so the
    result is the same and costs a few thousand multiplications instead of millions.
    """

    pixels: np.ndarray
    gain: float
    offset: float
    low: float
    high: float
    decode_scale: int = 1
    # (rows, columns) of the stored image when ``pixels`` was decoded at reduced size;
    # lets preprocessing crop the same full-resolution square as a full decode would.
    source_shape: tuple[int, int] | None = None
