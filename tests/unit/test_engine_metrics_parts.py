"""The engine metrics' parts without processes: histogram buckets, worker report deltas, the
hub's sums over a real pipe, and the database figures on a real SQLite file."""

from __future__ import annotations

import multiprocessing
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from radstream import PIPELINE_VERSION
from radstream.lake.parquet_sink import ParquetSink
from radstream.local.database import connect
from radstream.local.executor import Executor
from radstream.local.metrics import UNKNOWN_CODE, read_figures
from radstream.local.reports import (
    STAGE_BUCKETS_S,
    MeteredSink,
    ReportHub,
    ReportSender,
    StageHistogram,
    WorkerReport,
)
from radstream.local.store import FolderStore
from radstream.schema.telemetry import StageStatus, TelemetryRecord


def telemetry_record(stage: str, duration_ms: float) -> TelemetryRecord:
    start = datetime(2026, 3, 1, 10, 0, tzinfo=UTC)
    return TelemetryRecord(
        execution_id="e0",
        study_id="s0",
        stage=stage,
        status=StageStatus.OK,
        start_ts=start,
        end_ts=start + timedelta(milliseconds=duration_ms),
        duration_ms=duration_ms,
        attempt=1,
        worker_id="w",
        pipeline_version=PIPELINE_VERSION,
    )


def test_a_duration_on_a_bucket_bound_counts_in_that_bucket() -> None:
    histogram = StageHistogram()
    for seconds in (0.0005, 0.001, 0.0011, 2.5, 100.0):
        histogram.observe(seconds)
    buckets = dict(histogram.cumulative())
    assert buckets["0.001"] == 2  # le: 0.001 itself is in the first bucket
    assert buckets["0.0025"] == 3
    assert buckets["2.5"] == 4
    assert buckets[str(STAGE_BUCKETS_S[-1])] == 4
    assert buckets["+Inf"] == histogram.count == 5
    assert histogram.sum_s == pytest.approx(0.0005 + 0.001 + 0.0011 + 2.5 + 100.0)
    assert list(buckets.values()) == sorted(buckets.values())  # cumulative


def test_a_metered_sink_reports_each_change_once(tmp_path: Path) -> None:
    sink = MeteredSink(ParquetSink(tmp_path / "lake", writer_id="w1", flush_rows=1000))
    assert not sink.take_report()
    sink.emit([telemetry_record(stage="validate", duration_ms=20.0)])
    sink.emit([telemetry_record(stage="infer", duration_ms=500.0)])
    first = sink.take_report()
    assert first.stage_seconds == (("validate", 0.02), ("infer", 0.5))
    assert first.rows_flushed == 0  # still buffered
    sink.flush()
    second = sink.take_report()
    assert second == WorkerReport(rows_flushed=2)
    assert not sink.take_report()


def test_the_hub_adds_up_what_workers_send_down_their_pipes(tmp_path: Path) -> None:
    hub = ReportHub(stages=("validate", "infer"))
    try:
        readers = []
        for worker in ("w1", "w2"):
            reader, writer = multiprocessing.Pipe(duplex=False)
            hub.attach(reader)
            readers.append(reader)
            sink = MeteredSink(ParquetSink(tmp_path / worker, writer_id=worker, flush_rows=1))
            sink.emit([telemetry_record(stage="validate", duration_ms=3.0)] * 2)
            sender = ReportSender(writer)
            sender.send(sink)
            sender.close()  # the worker exits: the hub sees the pipe end
        deadline = time.monotonic() + 30
        while hub.totals().rows_flushed < 4 and time.monotonic() < deadline:
            time.sleep(0.01)
    finally:
        hub.close()
    totals = hub.totals()
    assert totals.rows_flushed == 4 and totals.rows_dropped == 0
    assert totals.stages["validate"].count == 4
    assert totals.stages["infer"].count == 0  # declared: the series exists from the start
    assert all(r.closed for r in readers)


def test_figures_count_executions_by_state_and_code(tmp_path: Path) -> None:
    conn = connect(tmp_path / "engine.db")
    executor = Executor(conn, clock=lambda: 1000.0)
    store = FolderStore(tmp_path / "buckets", listener=executor)
    for i in range(4):
        store.put("images", f"incoming/s{i}/s{i}.json", b"{}")
    executor.route()
    rows = [r["id"] for r in executor.executions()]
    conn.execute("UPDATE executions SET created_at = 900.0 WHERE id = ?", (rows[0],))
    conn.execute("UPDATE executions SET state = 'succeeded' WHERE id = ?", (rows[1],))
    conn.execute(
        "UPDATE executions SET state = 'failed', error_code = 'IMAGE_EMPTY' WHERE id = ?",
        (rows[2],),
    )
    conn.execute("UPDATE executions SET state = 'failed' WHERE id = ?", (rows[3],))
    figures = read_figures(conn, [], now=1000.0)
    assert figures.started == 4
    assert figures.succeeded == 1
    assert figures.failed_by_code == {"IMAGE_EMPTY": 1, UNKNOWN_CODE: 1}
    assert figures.pending == 1 and figures.running == 0
    assert figures.oldest_pending_age_s == 100.0
    assert figures.workers_alive == 0
