"""Stand-ins for the model and the telemetry sink, for tests that run stages without either.

:func:`fake_model_info` is a complete :class:`ModelInfo` (TorchXRayVision's labels, a small
64-pixel input) with any field overridable; :class:`FixedLogitsModel` is a model client
answering it; :class:`ListSink` keeps the telemetry it is given.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np
import numpy.typing as npt

from radstream.model import TXRV_LABELS, ModelInfo
from radstream.schema.telemetry import TelemetryRecord


def fake_model_info(
    *,
    name: str = "fake",
    version: str = "1",
    labels: Iterable[str] = TXRV_LABELS,
    input_size: int = 64,
    input_min: float = -1024.0,
    input_max: float = 1024.0,
    channels: int = 1,
    input_name: str = "x",
    output_name: str = "y",
    sha256: str = "0" * 64,
    path: str = "",
) -> ModelInfo:
    """A model's identity and input contract, with no model file behind it."""
    return ModelInfo(
        name=name,
        version=version,
        labels=tuple(labels),
        input_size=input_size,
        input_min=input_min,
        input_max=input_max,
        channels=channels,
        input_name=input_name,
        output_name=output_name,
        sha256=sha256,
        path=path,
    )


class FixedLogitsModel:
    """A model client answering ``logit`` for every label of every image, and counting calls.

    Call numbers (from 1) in ``fail_on`` raise a ``RuntimeError`` instead: a bug in the
    client, for tests of how the code under test files an unexpected error.
    """

    def __init__(
        self, info: ModelInfo | None = None, *, logit: float = 0.0, fail_on: Iterable[int] = ()
    ) -> None:
        self.info = info if info is not None else fake_model_info()
        self.logit = logit
        self.fail_on = set(fail_on)
        self.calls = 0

    def predict_logits(self, batch: npt.NDArray[np.float32]) -> npt.NDArray[np.float32]:
        """``[N, len(labels)]`` of :attr:`logit`, or the planned failure."""
        self.calls += 1
        if self.calls in self.fail_on:
            raise RuntimeError("a bug in the model client")
        return np.full((batch.shape[0], len(self.info.labels)), self.logit, dtype=np.float32)


class ListSink:
    """A telemetry sink that keeps every record it is given, in order."""

    def __init__(self) -> None:
        self.records: list[TelemetryRecord] = []

    def emit(self, records: Iterable[TelemetryRecord]) -> None:
        """Keep ``records``."""
        self.records.extend(records)

    def flush(self) -> None:
        """Nothing is buffered."""
