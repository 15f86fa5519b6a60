"""Stage 2, prepare: turn the uploaded image into the model's input tensor."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

from radstream.imaging import ImagingLimits, PreparedImage, Preprocessing, prepare_image
from radstream.stages.ports import ObjectStore


@dataclass(frozen=True)
class PreparedStudy:
    """The tensor plus what the result records about its making."""

    image: PreparedImage
    image_sha256: str
    image_bytes: int


def prepare(
    store: ObjectStore,
    bucket: str,
    image_key: str,
    *,
    expected_size: tuple[int | None, int | None] | None,
    preprocessing: Preprocessing,
    limits: ImagingLimits,
) -> PreparedStudy:
    """Read ``bucket/image_key`` and preprocess it as the model declares."""
    data = store.get(bucket, image_key)
    image = prepare_image(
        data,
        filename=image_key.rsplit("/", 1)[-1],
        expected_size=expected_size,
        preprocessing=preprocessing,
        limits=limits,
    )
    return PreparedStudy(
        image=image, image_sha256=hashlib.sha256(data).hexdigest(), image_bytes=len(data)
    )
