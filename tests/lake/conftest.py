"""Lakes for the lake tests: one left by a real demo run, one built from chosen records."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from radstream.demo import run_demo
from radstream.lake.parquet_sink import ParquetSink
from radstream.schema.telemetry import TelemetryRecord
from radstream.settings import Settings


@pytest.fixture(scope="session")
def demo_lake(tmp_path_factory: pytest.TempPathFactory, standin_model: Path) -> Path:
    """The lake a real `radstream demo` leaves: 14 studies, 5 of them bad."""
    settings = Settings(
        data_dir=tmp_path_factory.mktemp("demo"),
        model={"path": standin_model},
        engine={"workers": 2, "image_wait_s": 1.0, "retry_base_s": 0.05, "retry_max_s": 0.3},
        telemetry={"flush_s": 0.2},
    )
    report = run_demo(settings, studies=14, invalid=5, width=700, height=800)
    assert report.summary.lost == 0
    return settings.lake_dir


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
