"""Lakes for the lake tests: one left by a real demo run, one built from chosen records."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from radstream.lake.parquet_sink import ParquetSink
from radstream.schema.telemetry import TelemetryRecord
from support.demo import run_demo_lake


@pytest.fixture(scope="session")
def demo_lake(tmp_path_factory: pytest.TempPathFactory, standin_model: Path) -> Path:
    """The lake a real `radstream demo` leaves: 14 studies, 5 of them bad."""
    return run_demo_lake(tmp_path_factory.mktemp("demo"), standin_model, studies=14, invalid=5)


@pytest.fixture
def write_lake(tmp_path: Path) -> Callable[[list[TelemetryRecord]], Path]:
    """Write records through the producers' own sink; returns the lake directory."""
    lake = tmp_path / "lake"

    def write(records: list[TelemetryRecord]) -> Path:
        sink = ParquetSink(lake, writer_id="t", flush_rows=10**9, flush_s=10**9)
        sink.emit(records)
        sink.close()
        return lake

    return write
