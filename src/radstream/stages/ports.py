"""The small interfaces the stages depend on. ``local/`` and ``aws/`` implement them."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Protocol

from radstream.schema.telemetry import TelemetryRecord

BUCKETS: tuple[str, ...] = ("images", "results", "telemetry", "artifacts")


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
