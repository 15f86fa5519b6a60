"""Settings that shape what `prepare_image` produces and what it refuses."""

from __future__ import annotations

from dataclasses import dataclass

from radstream.errors import ConfigInvalid


@dataclass(frozen=True)
class Preprocessing:
    """How decoded pixels become a model input.

    The defaults match TorchXRayVision models: a 224 x 224 single-channel image whose
    values span [-1024, 1024].
    """

    size: int = 224
    input_min: float = -1024.0
    input_max: float = 1024.0
    channels: int = 1

    def __post_init__(self) -> None:
        # Validated here so that a bad setting fails once at start-up, not per image.
        if self.size < 1:
            raise ConfigInvalid(f"preprocessing size must be >= 1, got {self.size}")
        if not self.input_min < self.input_max:
            raise ConfigInvalid(
                f"preprocessing input_min ({self.input_min}) must be below "
                f"input_max ({self.input_max})"
            )
        if self.channels not in (1, 3):
            raise ConfigInvalid(f"preprocessing channels must be 1 or 3, got {self.channels}")


@dataclass(frozen=True)
class ImagingLimits:
    """Resource limits checked before any pixel is decoded."""

    max_pixels: int = 50_000_000
    max_file_bytes: int = 64 * 1024 * 1024

    def __post_init__(self) -> None:
        if self.max_pixels < 1:
            raise ConfigInvalid(f"imaging max_pixels must be >= 1, got {self.max_pixels}")
        if self.max_file_bytes < 1:
            raise ConfigInvalid(f"imaging max_file_bytes must be >= 1, got {self.max_file_bytes}")
