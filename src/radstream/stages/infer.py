"""Stage 3, infer: run the classifier and map its outputs to the CheXpert labels.

Importing this module loads neither numpy nor :mod:`radstream.model` (and so not ONNX
Runtime): with a remote endpoint the infer Lambda ships without the model runtime layer.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from radstream.schema.outcome import ModelRef
from radstream.stages.context import ExecutionContext
from radstream.stages.ports import StagePorts

if TYPE_CHECKING:
    import numpy as np
    import numpy.typing as npt

    from radstream.model import ModelClient


@dataclass(frozen=True)
class Classification:
    """Raw outputs by the model's labels, and the 14 CheXpert probabilities."""

    raw_outputs: dict[str, float]
    probabilities: dict[str, float | None]


def infer(model: ModelClient, tensor: npt.NDArray[np.float32]) -> Classification:
    """Classify one preprocessed image (``[1, C, S, S]`` float32)."""
    from radstream.model.labels import sigmoid, to_chexpert

    logits = model.predict_logits(tensor)[0]
    labels = model.info.labels
    probabilities = sigmoid(logits)
    return Classification(
        raw_outputs={label: float(v) for label, v in zip(labels, logits, strict=True)},
        probabilities=to_chexpert([float(p) for p in probabilities], labels),
    )


def run(ports: StagePorts, context: ExecutionContext) -> ExecutionContext:
    """The ``infer`` stage: classify the tensor ``prepare`` handed on; name the model."""
    tensor = ports.tensors.get(context.execution_id)
    model = ports.model()
    result = infer(model, tensor)
    info = model.info
    ref = ModelRef(
        name=info.name,
        version=info.version,
        sha256=info.sha256,
        backend=ports.options.backend,
        trained=not info.untrained,
    )
    return context.model_copy(
        update={
            "raw_outputs": result.raw_outputs,
            "probabilities": result.probabilities,
            "model": ref,
        }
    )
