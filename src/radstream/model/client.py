"""The one interface the pipeline uses to get logits, whoever computes them.

The embedded engine uses ``OnnxModel`` in-process; a KServe HTTP client can implement the
same protocol, so stages never know where the model runs.
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

import numpy as np
import numpy.typing as npt

from radstream.errors import ModelOutputInvalid
from radstream.model.metadata import ModelInfo


@runtime_checkable
class ModelClient(Protocol):
    """Something that turns a preprocessed image batch into per-label logits."""

    @property
    def info(self) -> ModelInfo:
        """Labels, input contract and identity (SHA-256) of the model behind this client."""
        ...

    def predict_logits(self, batch: npt.NDArray[np.float32]) -> npt.NDArray[np.float32]:
        """Return float32 logits ``[N, len(info.labels)]`` for a float32 batch.

        The batch is ``[N, info.channels, info.input_size, info.input_size]`` with values in
        ``[info.input_min, info.input_max]``. Implementations raise ValueError for a batch
        of the wrong shape, ModelUnavailable when the model cannot be reached or run right
        now, and ModelOutputInvalid when it returns non-finite or wrongly shaped output.
        """
        ...


def checked_logits(
    output: object, *, batch_size: int, labels: int, source: str, **details: object
) -> npt.NDArray[np.float32]:
    """``output`` as float32 ``[batch_size, labels]`` logits, or ``ModelOutputInvalid``.

    Every client checks what comes back the same way, so a wrong model behind an endpoint
    fails exactly like a wrong model file. ``source`` names the model in the message.
    """
    logits = np.asarray(output)
    if not np.issubdtype(logits.dtype, np.floating):
        raise ModelOutputInvalid(
            f"{source} returned {logits.dtype} logits, expected float", **details
        )
    if logits.shape != (batch_size, labels):
        raise ModelOutputInvalid(
            f"{source} returned shape {list(logits.shape)}, expected "
            f"{[batch_size, labels]} (batch size x {labels} labels)",
            **details,
        )
    if not np.isfinite(logits).all():
        bad = int(np.count_nonzero(~np.isfinite(logits)))
        raise ModelOutputInvalid(f"{source} returned {bad} non-finite logit(s)", **details)
    return np.ascontiguousarray(logits, dtype=np.float32)


def checked_batch(batch: object, info: ModelInfo) -> npt.NDArray[np.float32]:
    """``batch`` as contiguous float32 ``[N, C, S, S]`` fitting ``info``, or ValueError."""
    array = np.asarray(batch)
    if not (np.issubdtype(array.dtype, np.floating) or np.issubdtype(array.dtype, np.integer)):
        raise ValueError(f"batch must hold float32 pixel values, got dtype {array.dtype}")
    expected = (info.channels, info.input_size, info.input_size)
    if array.ndim != 4 or array.shape[0] < 1 or array.shape[1:] != expected:
        raise ValueError(
            f"batch has shape {list(array.shape)}, but model {info.name} v{info.version} "
            f"expects [N, {info.channels}, {info.input_size}, {info.input_size}] with N >= 1"
        )
    array = np.ascontiguousarray(array, dtype=np.float32)
    # A NaN pixel would come back as NaN logits and be blamed on the model.
    if not np.isfinite(array).all():
        raise ValueError("batch contains NaN or infinite pixel values")
    return array
