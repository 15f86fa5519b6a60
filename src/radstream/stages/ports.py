"""The small interfaces the stages depend on. ``local/`` and ``aws/`` implement them.

Every stage function has one signature, ``run(ports: StagePorts, context:
ExecutionContext) -> ExecutionContext``: :class:`StagePorts` is what an engine lends the
stages (its object store, the model, where the tensor goes between ``prepare`` and
``infer``, how an upload is claimed, and the options taken from the settings).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Protocol

from radstream.layout import STORE_BUCKETS
from radstream.schema.telemetry import TelemetryRecord

if TYPE_CHECKING:
    # Types only: the validate and store functions run without numpy, OpenCV or ONNX.
    import numpy as np
    import numpy.typing as npt

    from radstream.imaging import Preprocessing
    from radstream.model import ModelClient
    from radstream.settings import Settings
    from radstream.stages.context import ExecutionContext

BUCKETS: tuple[str, ...] = STORE_BUCKETS
"""The buckets of the local folder store (:data:`radstream.layout.STORE_BUCKETS`)."""


@dataclass(frozen=True)
class ObjectInfo:
    """Metadata of a stored object."""

    bucket: str
    key: str
    etag: str
    size: int
    modified: float


class ObjectStore(Protocol):
    """An S3-like object store: buckets of keys, atomic puts, ETags."""

    def put(self, bucket: str, key: str, data: bytes) -> ObjectInfo:
        """Store ``data`` atomically and raise an "object created" event."""
        ...

    def get(self, bucket: str, key: str) -> bytes:
        """Return the object's bytes; raise ``StoreObjectMissing`` if absent."""
        ...

    def head(self, bucket: str, key: str) -> ObjectInfo | None:
        """Return the object's metadata, or None when absent."""
        ...

    def size(self, bucket: str, key: str) -> int | None:
        """The object's size in bytes without reading it, or None when absent."""
        ...

    def list(self, bucket: str, prefix: str = "") -> list[str]:
        """Keys under ``prefix``, sorted."""
        ...

    def delete(self, bucket: str, key: str) -> None:
        """Remove an object; absent objects are fine."""
        ...


class TelemetrySink(Protocol):
    """Where telemetry records go: a Parquet lake locally, Kinesis on AWS."""

    def emit(self, records: Iterable[TelemetryRecord]) -> None:
        """Accept records; the sink may buffer them."""
        ...

    def flush(self) -> None:
        """Write buffered records out."""
        ...


class TensorHandoff(Protocol):
    """Where ``prepare`` leaves the tensor for ``infer``.

    Locally it stays in the worker's memory (``prepare`` is not checkpointed, so a resumed
    execution makes it again); on AWS it is ``tensors/{execution}.npy`` in the tensors
    bucket, since a Step Functions state is limited to 256 KB.
    """

    def put(self, execution_id: str, tensor: npt.NDArray[np.float32]) -> None:
        """Keep the tensor of ``execution_id``."""
        ...

    def get(self, execution_id: str) -> npt.NDArray[np.float32]:
        """The tensor ``prepare`` kept for ``execution_id``."""
        ...


class UploadClaims(Protocol):
    """One execution per upload.

    AWS delivers S3 events at least once, so ``validate`` claims the upload with a
    conditional PUT under ``claims/``; the local executor already starts one execution per
    upload (its trigger id), so there every claim wins.
    """

    def claim(self, context: ExecutionContext) -> bool:
        """Claim the upload of ``context`` for its execution; False if another holds it."""
        ...


@dataclass(frozen=True)
class StageOptions:
    """What the stages take from the settings, plus where the model runs."""

    image_wait_s: float = 30.0
    max_pixels: int = 50_000_000
    max_file_bytes: int = 64 * 1024 * 1024
    require_chest: bool = True
    backend: str = "onnxruntime"
    """``onnxruntime`` (in process) or ``kserve:{host}`` (an endpoint), as results record it."""

    @classmethod
    def from_settings(cls, settings: Settings, *, backend: str) -> StageOptions:
        """The options of ``settings``."""
        return cls(
            image_wait_s=settings.engine.image_wait_s,
            max_pixels=settings.imaging.max_pixels,
            max_file_bytes=settings.imaging.max_file_bytes,
            require_chest=settings.imaging.require_chest,
            backend=backend,
        )


@dataclass(frozen=True)
class StagePorts:
    """What an engine lends the stage functions. Built once per worker or Lambda container."""

    store: ObjectStore
    model: Callable[[], ModelClient]
    """The model client, made on first use: a worker must start while an endpoint is down,
    and a Lambda without inference never loads one."""
    preprocessing: Callable[[], Preprocessing]
    """How the model wants its input (from the model locally, from the settings on AWS)."""
    tensors: TensorHandoff
    claims: UploadClaims
    options: StageOptions = field(default_factory=StageOptions)
    clock: Callable[[], float] = time.time
