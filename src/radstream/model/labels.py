"""Model output labels and their mapping onto the 14 CheXpert labels.

RadStream reports findings in CheXpert terms whatever model produced them, so results from
different models can be compared in one table. A label the model does not predict is
reported as ``None`` (unknown), never as ``0.0``: a zero would claim the finding is absent.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import numpy.typing as npt

TXRV_LABELS: tuple[str, ...] = (
    "Atelectasis",
    "Consolidation",
    "Infiltration",
    "Pneumothorax",
    "Edema",
    "Emphysema",
    "Fibrosis",
    "Effusion",
    "Pneumonia",
    "Pleural_Thickening",
    "Cardiomegaly",
    "Nodule",
    "Mass",
    "Hernia",
    "Lung Lesion",
    "Fracture",
    "Lung Opacity",
    "Enlarged Cardiomediastinum",
)
"""TorchXRayVision's 18 outputs (``xrv.datasets.default_pathologies``), in model order."""

CHEXPERT_LABELS: tuple[str, ...] = (
    "No Finding",
    "Enlarged Cardiomediastinum",
    "Cardiomegaly",
    "Lung Opacity",
    "Lung Lesion",
    "Edema",
    "Consolidation",
    "Pneumonia",
    "Atelectasis",
    "Pneumothorax",
    "Pleural Effusion",
    "Pleural Other",
    "Fracture",
    "Support Devices",
)
"""The 14 CheXpert labels, in the order of the CheXpert paper and label files."""

NO_FINDING = "No Finding"

# CheXpert's labeler allows "No Finding" together with support devices: a device is not a
# pathology, so it must not lower the derived No Finding probability.
NON_PATHOLOGY_LABELS: frozenset[str] = frozenset({NO_FINDING, "Support Devices"})

# Model label names that mean a CheXpert label under another name (NIH ChestX-ray14 naming,
# which TorchXRayVision keeps). An exact name match always wins over an alias.
CHEXPERT_ALIASES: Mapping[str, tuple[str, ...]] = {
    "Pleural Effusion": ("Effusion",),
}

NO_FINDING_RULE = (
    "No Finding = 1 - max(p) over every pathology output of the model (all outputs except "
    "Support Devices; NaN outputs count as missing), unless the model has its own No Finding "
    "output. It is an upper bound on the probability of a normal study: if any finding is "
    "likely, No Finding is unlikely, but a low maximum does not prove the study is normal. "
    "It is None when the model has no usable pathology output."
)
"""How ``to_chexpert`` derives "No Finding"; quoted verbatim in the README."""


def sigmoid(logits: npt.ArrayLike) -> npt.NDArray[np.floating[Any]]:
    """Return the logistic function of ``logits``, element-wise, without overflow.

    Floating inputs keep their dtype (float32 stays float32); other inputs become float64.
    NaN stays NaN, ``+inf`` gives 1 and ``-inf`` gives 0.
    """
    x = np.asarray(logits)
    if not np.issubdtype(x.dtype, np.floating):
        x = x.astype(np.float64)
    # exp(-|x|) is at most 1, so neither branch can overflow for |x| in the thousands; its
    # underflow to 0 for very large |x| is the correct limit, not an error.
    with np.errstate(under="ignore"):
        z = np.exp(-np.abs(x))
    result: npt.NDArray[np.floating[Any]] = np.where(x >= 0, 1.0 / (1.0 + z), z / (1.0 + z))
    return result.astype(x.dtype, copy=False)


def _model_label_for(chexpert_label: str, index: Mapping[str, int]) -> int | None:
    """Position of the model output that means ``chexpert_label``, or None if it has none."""
    if chexpert_label in index:
        return index[chexpert_label]
    for alias in CHEXPERT_ALIASES.get(chexpert_label, ()):
        if alias in index:
            return index[alias]
    return None


def to_chexpert(
    probabilities: Sequence[float] | npt.NDArray[np.floating[Any]],
    labels: Sequence[str] = TXRV_LABELS,
) -> dict[str, float | None]:
    """Map one study's model probabilities onto the 14 CheXpert labels.

    ``probabilities`` are already sigmoided, one per entry of ``labels`` (the model's own
    output names, in output order). Names that match a CheXpert label map directly;
    ``Effusion`` maps to ``Pleural Effusion``. CheXpert labels the model lacks (for
    TorchXRayVision: Pleural Other and Support Devices) are ``None``, never ``0.0``. NaN
    outputs, which TorchXRayVision emits for labels a model was not trained on, also count as
    missing and become ``None``.

    "No Finding" is derived as ``1 - max`` over every pathology output the model has (for
    TorchXRayVision: all 18 outputs). This is an upper bound on the probability of a normal
    study: if any finding is likely, No Finding is unlikely, but a low maximum does not prove
    the study is normal. See ``NO_FINDING_RULE``.

    Returns a dict whose keys are exactly ``CHEXPERT_LABELS``, in that order.

    Raises ValueError if the lengths differ, labels repeat, or a value lies outside [0, 1]
    (which usually means logits were passed without ``sigmoid``).
    """
    values = [float(p) for p in np.asarray(probabilities, dtype=np.float64).reshape(-1)]
    if len(values) != len(labels):
        raise ValueError(
            f"got {len(values)} probabilities for {len(labels)} labels; "
            "pass one probability per model output, in model output order"
        )
    index = {label: i for i, label in enumerate(labels)}
    if len(index) != len(labels):
        raise ValueError(f"model labels must be unique, got {list(labels)}")
    for label, value in zip(labels, values, strict=True):
        if not math.isnan(value) and not 0.0 <= value <= 1.0:
            raise ValueError(
                f"probability for {label!r} is {value}, outside [0, 1]; "
                "apply sigmoid to logits before calling to_chexpert"
            )

    def present(i: int | None) -> float | None:
        if i is None or math.isnan(values[i]):
            return None
        return values[i]

    result: dict[str, float | None] = {}
    for chexpert_label in CHEXPERT_LABELS:
        result[chexpert_label] = present(_model_label_for(chexpert_label, index))

    if result[NO_FINDING] is None:
        pathology = [
            v
            for label, v in zip(labels, values, strict=True)
            if label not in NON_PATHOLOGY_LABELS and not math.isnan(v)
        ]
        result[NO_FINDING] = 1.0 - max(pathology) if pathology else None
    return result
