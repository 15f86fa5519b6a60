"""README: "Telemetry is buffered per worker and flushed by count (512 rows), by age (2 s) and
on a clean shutdown". The sink on a fake clock, and the worker's wiring of the settings."""

from __future__ import annotations

import multiprocessing
import os
from pathlib import Path
from typing import Any

import pytest
from lake_records import record

import radstream.local.worker as worker
from radstream.lake.parquet_sink import ParquetSink, read_lake
from radstream.settings import Settings
from support.clocks import FakeClock
from support.fakes import FixedLogitsModel


def _rows(lake: Path) -> int:
    return read_lake(lake).num_rows if lake.exists() else 0


def test_flushes_when_the_buffer_reaches_flush_rows(tmp_path: Path) -> None:
    clock = FakeClock()
    sink = ParquetSink(tmp_path, writer_id="w", flush_rows=3, flush_s=60.0, clock=clock)
    sink.emit([record(execution_id="e1"), record(execution_id="e2")])
    assert (sink.files_written, _rows(tmp_path)) == (0, 0)  # 2 < 3, and no time has passed
    sink.emit([record(execution_id="e3")])
    assert (sink.files_written, _rows(tmp_path)) == (1, 3)
    sink.emit([record(execution_id="e4")])  # the count starts again from an empty buffer
    assert (sink.files_written, _rows(tmp_path)) == (1, 3)


def test_flushes_when_the_oldest_record_reaches_flush_s(tmp_path: Path) -> None:
    clock = FakeClock()
    sink = ParquetSink(tmp_path, writer_id="w", flush_rows=10**6, flush_s=2.0, clock=clock)
    sink.emit([record(execution_id="e1")])
    clock.advance(1.5)
    sink.emit([record(execution_id="e2")])  # younger, but the age is the oldest's
    clock.advance(0.49)
    sink.maybe_flush()
    assert sink.files_written == 0  # 1.99 s old
    clock.advance(0.01)
    sink.maybe_flush()  # an idle worker's call: no new record needed
    assert (sink.files_written, _rows(tmp_path)) == (1, 2)
    # The age restarts with the next record, not with the last flush.
    clock.advance(100.0)
    sink.emit([record(execution_id="e3")])
    assert sink.files_written == 1
    clock.advance(2.0)
    sink.maybe_flush()
    assert (sink.files_written, _rows(tmp_path)) == (2, 3)


def test_close_writes_what_neither_threshold_reached(tmp_path: Path) -> None:
    sink = ParquetSink(tmp_path, writer_id="w", flush_rows=10**6, flush_s=10**6, clock=FakeClock())
    sink.emit([record(execution_id=f"e{i}") for i in range(5)])
    assert _rows(tmp_path) == 0
    sink.close()
    assert _rows(tmp_path) == 5


def test_the_defaults_are_the_readmes() -> None:
    telemetry = Settings().telemetry
    assert (telemetry.flush_rows, telemetry.flush_s) == (512, 2.0)


def test_a_worker_builds_its_sink_from_telemetry_flush_rows_and_flush_s(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    built: list[dict[str, Any]] = []

    class RecordingSink(ParquetSink):
        def __init__(self, lake_dir: Path, **kwargs: Any) -> None:
            built.append(kwargs)
            super().__init__(lake_dir, **kwargs)

    monkeypatch.setattr(worker, "ParquetSink", RecordingSink)
    monkeypatch.setattr(worker, "load_model_client", lambda _settings: FixedLogitsModel())
    # The worker ignores SIGINT/SIGTERM in its own process; not in pytest's.
    monkeypatch.setattr(worker.signal, "signal", lambda *_args: None)
    settings = Settings(data_dir=tmp_path / "data", telemetry={"flush_rows": 7, "flush_s": 0.25})
    worker.worker_main(
        settings.model_dump_json(),
        "w1",
        multiprocessing.get_context("spawn").Event(),
        until_idle=True,
        parent_pid=os.getppid(),
    )
    assert len(built) == 1
    assert built[0]["flush_rows"] == 7 and built[0]["flush_s"] == 0.25
