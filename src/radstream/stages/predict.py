"""Classify one image file outside the pipeline: file in, 14 CheXpert probabilities out.

This runs exactly what the pipeline's prepare and infer stages run (same decoder checks,
same preprocessing from the model's own metadata, same label mapping), so it answers "what
would the pipeline say about this file?" without uploading it.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from radstream.imaging import ImagingLimits, prepare_image
from radstream.schema.sidecar_parse import parse_sidecar
from radstream.stages.infer import infer
from radstream.stages.prepare import preprocessing_for

if TYPE_CHECKING:
    from radstream.model.client import ModelClient


def predict_image(
    image_path: Path,
    model: ModelClient,
    *,
    sidecar_path: Path | None = None,
    limits: ImagingLimits | None = None,
) -> dict[str, float | None]:
    """Return the 14 CheXpert probabilities (``None`` where the model has no such output).

    The image (PNG, JPEG or DICOM) is checked and preprocessed as the model declares
    (``model.info``: input size, range, channels). With ``sidecar_path`` the sidecar is
    validated and its ``image_size``, if any, is checked against the image, as in the
    pipeline. Keys are ``CHEXPERT_LABELS`` in order.

    Raises the pipeline's typed errors (``Image*``, ``Sidecar*``, ``ModelUnavailable``,
    ``ModelOutputInvalid``, ...) and OSError when a file cannot be read.
    """
    image_path = Path(image_path)
    data = image_path.read_bytes()
    expected_size = None
    if sidecar_path is not None:
        expected_size = parse_sidecar(Path(sidecar_path).read_bytes()).expected_size()
    prepared = prepare_image(
        data,
        filename=image_path.name,
        expected_size=expected_size,
        preprocessing=preprocessing_for(model.info),
        limits=limits if limits is not None else ImagingLimits(),
    )
    return infer(model, prepared.tensor).probabilities


__all__ = ["predict_image"]
