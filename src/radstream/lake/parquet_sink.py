"""Buffered Parquet telemetry sink: ``lake/telemetry/dt=YYYY-MM-DD/hour=HH/part-*.parquet``.

Each worker owns its sink and writes its own files, so writers never contend. Records are
buffered and flushed when the buffer reaches ``flush_rows``, when the oldest record is
``flush_s`` old, and on close; files are written to a temporary name and renamed, so a
reader never sees a partial file.
"""

from __future__ import annotations

import os
import time
import uuid
from collections import defaultdict
from collections.abc import Callable, Iterable
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from radstream.lake.columns import arrow_schema, conform
from radstream.lake.files import visible_files
from radstream.schema.telemetry import TelemetryRecord


class ParquetSink:
    """A :class:`~radstream.stages.ports.TelemetrySink` writing the local lake."""

    def __init__(
        self,
        lake_dir: Path,
        *,
        writer_id: str,
        flush_rows: int = 512,
        flush_s: float = 2.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._lake_dir = lake_dir
        self._writer_id = writer_id
        self._flush_rows = flush_rows
        self._flush_s = flush_s
        self._clock = clock
        self._buffer: list[TelemetryRecord] = []
        self._oldest: float | None = None
        self._schema = arrow_schema()
        self.files_written = 0

    def emit(self, records: Iterable[TelemetryRecord]) -> None:
        """Buffer records; flush if the buffer is full or old enough."""
        for record in records:
            if self._oldest is None:
                self._oldest = self._clock()
            self._buffer.append(record)
        self.maybe_flush()

    def maybe_flush(self) -> None:
        """Flush if a count or time threshold is reached (call this when idle, too)."""
        if not self._buffer or self._oldest is None:
            return
        if len(self._buffer) >= self._flush_rows or self._clock() - self._oldest >= self._flush_s:
            self.flush()

    def flush(self) -> None:
        """Write every buffered record, one file per partition."""
        if not self._buffer:
            return
        by_partition: dict[tuple[str, str], list[TelemetryRecord]] = defaultdict(list)
        for record in self._buffer:
            by_partition[(record.dt, record.hour)].append(record)
        for (dt, hour), records in by_partition.items():
            self._write(dt, hour, records)
        self._buffer.clear()
        self._oldest = None

    def _write(self, dt: str, hour: str, records: list[TelemetryRecord]) -> None:
        folder = self._lake_dir / f"dt={dt}" / f"hour={hour}"
        folder.mkdir(parents=True, exist_ok=True)
        rows = [r.model_dump(mode="python") for r in records]
        table = pa.Table.from_pylist(rows, schema=self._schema)
        name = f"part-{self._writer_id}-{uuid.uuid4().hex[:12]}.parquet"
        tmp = folder / f".{name}.tmp"
        pq.write_table(table, tmp, compression="zstd")
        os.replace(tmp, folder / name)
        self.files_written += 1

    def close(self) -> None:
        """Flush what is left; a clean shutdown loses no record."""
        self.flush()


def read_lake(lake_dir: Path) -> pa.Table:
    """Every telemetry row in the lake (as compaction leaves it visible), current schema."""
    schema = arrow_schema()
    tables = [conform(pq.read_table(p), schema) for p in visible_files(lake_dir)]
    return pa.concat_tables(tables) if tables else schema.empty_table()
