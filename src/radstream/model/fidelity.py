"""The fidelity gate: how close a candidate model's probabilities stay to a reference's.

A reduced-precision model (int8, bf16) is only as good as its agreement with the fp32 model
it came from. ``compare_logits`` measures that agreement on the same preprocessed images:
per label and overall, the largest and mean absolute difference in probability, and how
well the order of the labels (most to least likely) is kept. ``FidelityReport.passed`` is
the gate; the report is stored as JSON in the candidate's metadata (see
``radstream.model.precision``) so that a loader can check it without re-running it.

This measures *numerical* fidelity to the reference model, not clinical accuracy: with an
untrained reference the figures say nothing about diagnoses.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass

import numpy as np
import numpy.typing as npt

from radstream.errors import ModelFileInvalid
from radstream.logs import get_logger
from radstream.model.client import ModelClient
from radstream.model.labels import sigmoid
from radstream.model.metadata import ModelInfo

log = get_logger(__name__)

DEFAULT_MAX_DELTA = 0.02
"""The largest absolute difference in probability a candidate may show on any label."""


@dataclass(frozen=True)
class LabelFidelity:
    """One label's agreement: max and mean absolute difference in probability."""

    label: str
    max_abs_delta: float
    mean_abs_delta: float


@dataclass(frozen=True)
class FidelityReport:
    """What ``compare_logits`` found, and whether it is within ``threshold``.

    ``top1_agreement`` is the fraction of images whose most likely label is the same in both
    models; ``rank_correlation`` is the mean over images of Spearman's rho between the two
    models' label orders (1.0: the same order everywhere).
    """

    images: int
    threshold: float
    max_abs_delta: float
    mean_abs_delta: float
    top1_agreement: float
    rank_correlation: float
    labels: tuple[LabelFidelity, ...]
    reference_sha256: str = ""

    @property
    def passed(self) -> bool:
        """True when every label's largest difference is within the threshold."""
        return self.images > 0 and self.max_abs_delta <= self.threshold

    def to_json(self) -> str:
        """The report as compact JSON (how it is stored in a model's metadata)."""
        doc = asdict(self)
        doc["passed"] = self.passed
        return json.dumps(doc, separators=(",", ":"))

    @classmethod
    def from_json(cls, text: str) -> FidelityReport:
        """Parse ``to_json``'s output; raises ValueError when it is not such a report."""
        try:
            doc = json.loads(text)
            labels = tuple(
                LabelFidelity(
                    label=str(row["label"]),
                    max_abs_delta=float(row["max_abs_delta"]),
                    mean_abs_delta=float(row["mean_abs_delta"]),
                )
                for row in doc["labels"]
            )
            return cls(
                images=int(doc["images"]),
                threshold=float(doc["threshold"]),
                max_abs_delta=float(doc["max_abs_delta"]),
                mean_abs_delta=float(doc["mean_abs_delta"]),
                top1_agreement=float(doc["top1_agreement"]),
                rank_correlation=float(doc["rank_correlation"]),
                labels=labels,
                reference_sha256=str(doc.get("reference_sha256", "")),
            )
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise ValueError(f"not a fidelity report: {exc}") from None


def _ranks(probabilities: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
    """Rank of each label within its row (0: least likely)."""
    return np.argsort(np.argsort(probabilities, axis=1, kind="stable"), axis=1).astype(np.float64)


def _spearman(a: npt.NDArray[np.float64], b: npt.NDArray[np.float64]) -> float:
    """Mean over rows of Spearman's rho between the label orders of ``a`` and ``b``."""
    ra, rb = _ranks(a), _ranks(b)
    n = a.shape[1]
    if n < 2:
        return 1.0
    rho = 1.0 - 6.0 * ((ra - rb) ** 2).sum(axis=1) / (n * (n * n - 1))
    return float(rho.mean())


def compare_logits(
    reference: npt.ArrayLike,
    candidate: npt.ArrayLike,
    labels: Sequence[str],
    *,
    max_delta: float = DEFAULT_MAX_DELTA,
    reference_sha256: str = "",
) -> FidelityReport:
    """Compare two ``[N, len(labels)]`` logit arrays from the same N images.

    Differences are taken between probabilities (the logistic of each logit), which is what
    results report. Raises ValueError when the shapes differ or do not match ``labels``.
    """
    ref = np.asarray(reference, dtype=np.float64)
    cand = np.asarray(candidate, dtype=np.float64)
    if ref.shape != cand.shape or ref.ndim != 2 or ref.shape[1] != len(labels):
        raise ValueError(
            f"logits of shape {list(ref.shape)} and {list(cand.shape)} cannot be compared "
            f"over {len(labels)} labels"
        )
    if ref.shape[0] == 0:
        raise ValueError("no images to compare on")
    p_ref = np.asarray(sigmoid(ref), dtype=np.float64)
    p_cand = np.asarray(sigmoid(cand), dtype=np.float64)
    delta = np.abs(p_ref - p_cand)
    per_label = tuple(
        LabelFidelity(
            label=label,
            max_abs_delta=float(delta[:, i].max()),
            mean_abs_delta=float(delta[:, i].mean()),
        )
        for i, label in enumerate(labels)
    )
    return FidelityReport(
        images=int(ref.shape[0]),
        threshold=float(max_delta),
        max_abs_delta=float(delta.max()),
        mean_abs_delta=float(delta.mean()),
        top1_agreement=float((p_ref.argmax(axis=1) == p_cand.argmax(axis=1)).mean()),
        rank_correlation=_spearman(p_ref, p_cand),
        labels=per_label,
        reference_sha256=reference_sha256,
    )


def predict_all(
    model: ModelClient, tensors: Iterable[npt.NDArray[np.float32]]
) -> npt.NDArray[np.float32]:
    """Logits of ``model`` for each ``[1, C, S, S]`` tensor, stacked to ``[N, labels]``."""
    rows = [model.predict_logits(tensor) for tensor in tensors]
    if not rows:
        return np.zeros((0, len(model.info.labels)), dtype=np.float32)
    return np.concatenate(rows, axis=0)


def compare_models(
    reference: ModelClient,
    candidate: ModelClient,
    tensors: Sequence[npt.NDArray[np.float32]],
    *,
    max_delta: float = DEFAULT_MAX_DELTA,
) -> FidelityReport:
    """Run both models on the same preprocessed tensors and compare their probabilities.

    Raises ValueError when the two models do not have the same labels (a comparison label by
    label would be meaningless) or when there are no tensors.
    """
    if reference.info.labels != candidate.info.labels:
        raise ValueError(
            f"the models have different labels: {list(reference.info.labels)} and "
            f"{list(candidate.info.labels)}"
        )
    return compare_logits(
        predict_all(reference, tensors),
        predict_all(candidate, tensors),
        reference.info.labels,
        max_delta=max_delta,
        reference_sha256=reference.info.sha256,
    )


def verified(info: ModelInfo, precision: str) -> FidelityReport | None:
    """The file's passing fidelity report for ``precision``; None when it has none."""
    if info.fidelity is None or info.precision != precision:
        return None
    try:
        report = FidelityReport.from_json(info.fidelity)
    except ValueError:
        return None
    return report if report.passed else None


def check_gate(info: ModelInfo, precision: str, *, allow_unverified: bool) -> None:
    """Refuse a reduced precision without a passing fidelity report (ModelFileInvalid).

    fp32 always passes. ``allow_unverified`` (``model.allow_unverified``) lets it through
    with a warning in the log.
    """
    if precision == "fp32" or verified(info, precision) is not None:
        return
    if allow_unverified:
        log.warning(
            "running a reduced-precision model without a passing fidelity report",
            extra={"precision": precision, "model": info.name},
        )
        return
    raise ModelFileInvalid(
        f"model file {info.path} would run in {precision} without a passing fidelity report "
        "in its metadata; make it with `radstream model optimize` (which checks it), or set "
        "model.allow_unverified = true to run it anyway",
        path=info.path,
    )
