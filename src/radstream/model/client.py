"""The one interface the pipeline uses to get logits, whoever computes them.

The embedded engine uses ``OnnxModel`` in-process; a KServe HTTP client can implement the
same protocol, so stages never know where the model runs.
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

import numpy as np
import numpy.typing as npt

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
