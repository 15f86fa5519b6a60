"""Buffered Parquet telemetry sink: ``lake/telemetry/dt=YYYY-MM-DD/hour=HH/part-*.parquet``.

Each worker owns its sink and writes its own files, so writers never contend. Records are
buffered and flushed when the buffer reaches ``flush_rows``, when the oldest record is
``flush_s`` old, and on close; files are written to a temporary name and renamed, so a
reader never sees a partial file.

A lake that cannot be written (read-only, disk full) loses nothing at first: the records
stay in the buffer and the flush is retried with backoff. The buffer is bounded
(``max_buffered`` rows); beyond it the oldest records are dropped and counted
(:attr:`ParquetSink.dropped`, logged), so an outage of hours costs telemetry, never the
worker's memory or the study.
"""

from __future__ import annotations

import os
import random
import time
import uuid
from collections import defaultdict
from collections.abc import Callable, Iterable
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from radstream.backoff import Backoff
from radstream.errors import LakeUnavailable
from radstream.lake.columns import arrow_schema, conform
from radstream.lake.files import visible_files
from radstream.logs import get_logger
from radstream.schema.telemetry import TelemetryRecord

logger = get_logger(__name__)

MAX_BUFFERED = 20_000
"""Records a sink keeps while the lake cannot be written (a few MB), before dropping."""
_RETRY = Backoff(base_s=1.0, max_s=30.0)


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
        max_buffered: int = MAX_BUFFERED,
    ) -> None:
        self._lake_dir = lake_dir
        self._writer_id = writer_id
        self._flush_rows = flush_rows
        self._flush_s = flush_s
        self._clock = clock
        self._buffer: list[TelemetryRecord] = []
        self._oldest: float | None = None
        self._schema = arrow_schema()
        self._max_buffered = max_buffered
        self._failures = 0
        self._retry_at = 0.0
        self.files_written = 0
        self.rows_written = 0
        """Records written to the lake."""
        self.dropped = 0
        """Records dropped because the lake stayed unwritable longer than the buffer lasts."""

    def emit(self, records: Iterable[TelemetryRecord]) -> None:
        """Buffer records; flush if the buffer is full or old enough."""
        for record in records:
            if self._oldest is None:
                self._oldest = self._clock()
            self._buffer.append(record)
        excess = len(self._buffer) - self._max_buffered
        if excess > 0:
            del self._buffer[:excess]
            self.dropped += excess
            logger.error(
                "telemetry lake unwritable: dropped %d record(s), %d in all",
                excess,
                self.dropped,
                extra={"code": LakeUnavailable.code},
            )
        self.maybe_flush()

    def maybe_flush(self) -> None:
        """Flush if a count or time threshold is reached (call this when idle, too)."""
        if not self._buffer or self._oldest is None:
            return
        if self._failures and self._clock() < self._retry_at:
            return  # the lake failed lately: wait for the backoff
        if len(self._buffer) >= self._flush_rows or self._clock() - self._oldest >= self._flush_s:
            self.flush()

    @property
    def pending(self) -> int:
        """Records buffered, not yet written (more than a batch while the lake is down)."""
        return len(self._buffer)

    def flush(self) -> None:
        """Write every buffered record, one file per partition.

        A partition that cannot be written (``OSError``) stays buffered for a later flush.
        """
        if not self._buffer:
            return
        by_partition: dict[tuple[str, str], list[TelemetryRecord]] = defaultdict(list)
        for record in self._buffer:
            by_partition[(record.dt, record.hour)].append(record)
        kept: list[TelemetryRecord] = []
        for (dt, hour), records in by_partition.items():
            try:
                self._write(dt, hour, records)
            except OSError as exc:
                kept.extend(records)
                self._failures += 1
                delay = _RETRY.delay(self._failures, random.random)
                self._retry_at = self._clock() + delay
                logger.warning(
                    "telemetry lake unwritable (%s): %d record(s) kept, retry in %.1f s",
                    exc.strerror or exc,
                    len(records),
                    delay,
                    extra={"code": LakeUnavailable.code},
                )
        self._buffer = kept
        if not kept:
            self._failures = 0
            self._oldest = None

    def _write(self, dt: str, hour: str, records: list[TelemetryRecord]) -> None:
        folder = self._lake_dir / f"dt={dt}" / f"hour={hour}"
        folder.mkdir(parents=True, exist_ok=True)
        rows = [r.model_dump(mode="python") for r in records]
        table = pa.Table.from_pylist(rows, schema=self._schema)
        name = f"part-{self._writer_id}-{uuid.uuid4().hex[:12]}.parquet"
        tmp = folder / f".{name}.tmp"
        try:
            pq.write_table(table, tmp, compression="zstd")
            os.replace(tmp, folder / name)
        except BaseException:
            tmp.unlink(missing_ok=True)  # a partial file on a full disk: do not keep it
            raise
        self.files_written += 1
        self.rows_written += len(records)

    def close(self) -> None:
        """Flush what is left; a clean shutdown loses no record while the lake is writable.

        Records that still cannot be written are counted in :attr:`dropped` and logged.
        """
        self.flush()
        if self._buffer:
            self.dropped += len(self._buffer)
            logger.error(
                "telemetry lake unwritable at shutdown: %d record(s) lost, %d dropped in all",
                len(self._buffer),
                self.dropped,
                extra={"code": LakeUnavailable.code},
            )
            self._buffer = []


def read_lake(lake_dir: Path) -> pa.Table:
    """Every telemetry row in the lake (as compaction leaves it visible), current schema."""
    schema = arrow_schema()
    tables = [conform(pq.read_table(p), schema) for p in visible_files(lake_dir)]
    return pa.concat_tables(tables) if tables else schema.empty_table()
