"""Stage 3, infer: run the classifier and map its outputs to the CheXpert labels."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from radstream.model import ModelClient, sigmoid, to_chexpert


@dataclass(frozen=True)
class Classification:
    """Raw outputs by the model's labels, and the 14 CheXpert probabilities."""

    raw_outputs: dict[str, float]
    probabilities: dict[str, float | None]


def infer(model: ModelClient, tensor: np.ndarray) -> Classification:
    """Classify one preprocessed image (``[1, C, S, S]`` float32)."""
    logits = model.predict_logits(tensor)[0]
    labels = model.info.labels
    probabilities = sigmoid(logits)
    return Classification(
        raw_outputs={label: float(v) for label, v in zip(labels, logits, strict=True)},
        probabilities=to_chexpert([float(p) for p in probabilities], labels),
    )
