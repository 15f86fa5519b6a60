"""Stage 2, prepare: turn the uploaded image into the model's input tensor."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import TYPE_CHECKING

from radstream.errors import ImageFileTooLarge
from radstream.imaging import ImagingLimits, PreparedImage, Preprocessing, prepare_image
from radstream.layout import Bucket
from radstream.schema.dicom_sidecar import view_from_position
from radstream.stages.context import ExecutionContext
from radstream.stages.outcomes import VIEW_MISMATCH, prepared_context
from radstream.stages.ports import ObjectStore, StagePorts

if TYPE_CHECKING:
    from radstream.model import ModelInfo


def preprocessing_for(info: ModelInfo) -> Preprocessing:
    """The preprocessing a model declares in its metadata (size, range, channels)."""
    return Preprocessing(
        size=info.input_size,
        input_min=info.input_min,
        input_max=info.input_max,
        channels=info.channels,
    )


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
    require_chest: bool = False,
) -> PreparedStudy:
    """Read ``bucket/image_key`` and preprocess it as the model declares.

    ``require_chest`` refuses DICOM that is not a chest radiograph (see ``prepare_image``).
    """
    size = store.size(bucket, image_key)
    if size is not None and size > limits.max_file_bytes:
        # Refuse before reading: a multi-gigabyte upload must not be pulled into memory.
        raise ImageFileTooLarge(
            f"the image file has {size} bytes, the limit is {limits.max_file_bytes}",
            file_bytes=size,
            max_file_bytes=limits.max_file_bytes,
        )
    data = store.get(bucket, image_key)
    image = prepare_image(
        data,
        filename=image_key.rsplit("/", 1)[-1],
        expected_size=expected_size,
        preprocessing=preprocessing,
        limits=limits,
        require_chest=require_chest,
    )
    return PreparedStudy(
        image=image, image_sha256=hashlib.sha256(data).hexdigest(), image_bytes=len(data)
    )


def run(ports: StagePorts, context: ExecutionContext) -> ExecutionContext:
    """The ``prepare`` stage: decode the image, hand the tensor on, record how it was made."""
    if context.image_key is None:
        raise RuntimeError("prepare reached without an image key; validate must run first")
    preprocessing = ports.preprocessing()
    options = ports.options
    prepared = prepare(
        ports.store,
        Bucket.IMAGES,
        context.image_key,
        expected_size=context.expected_size,
        preprocessing=preprocessing,
        limits=ImagingLimits(max_pixels=options.max_pixels, max_file_bytes=options.max_file_bytes),
        require_chest=options.require_chest,
    )
    ports.tensors.put(context.execution_id, prepared.image.tensor)
    update = prepared_context(prepared, preprocessing)
    mismatch = view_mismatch(prepared.image, context.view)
    if mismatch is not None:
        update[VIEW_MISMATCH] = mismatch
    return context.model_copy(update=update)


def view_mismatch(image: PreparedImage, sidecar_view: str | None) -> str | None:
    """The DICOM ViewPosition when it names another view than the sidecar, else None.

    Only recorded, never refused: the sidecar is what the sender vouches for, and a
    header's ViewPosition is often left at a console's default.
    """
    position = image.dicom.view_position if image.dicom is not None else None
    header_view = view_from_position(position)
    if header_view is None or sidecar_view is None or header_view == sidecar_view.upper():
        return None
    return position
