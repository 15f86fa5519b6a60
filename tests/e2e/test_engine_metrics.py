"""``radstream serve --metrics-port``: the engine's /metrics agrees with the outcome objects.

A real ``serve`` (two worker processes) runs a small mixed workload; the test scrapes its
/metrics over HTTP, parses it with Prometheus' parser, and compares every counter with what
the store and the lake hold.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from radstream.errors import ConfigInvalid
from radstream.lake.parquet_sink import read_lake
from radstream.layout import FAILURE_OBJECTS, RESULT_OBJECTS
from radstream.loadgen.study import make_study
from radstream.loadgen.uploader import upload_generated
from radstream.local.engine import LocalEngine
from radstream.local.metrics import serving_metrics
from radstream.local.outcomes import collect_outcomes
from radstream.local.reports import STAGES
from radstream.settings import Settings
from support.engine_metrics import Scrape, mixed_studies, scrape, serving_engine
from support.waiting import wait_until

# Starts processes and a server (see tests/support/slow.py).
pytestmark = pytest.mark.slow

BAD_KINDS = [
    "sidecar_invalid_json",
    "sidecar_missing_field",
    "image_truncated_jpeg",
    "image_truncated_png",  # a second IMAGE_TRUNCATED: the code label counts both
    "image_never_arrives",  # IMAGE_MISSING (retried while under image_wait_s)
]


def _histogram_counts(got: Scrape) -> dict[str, float]:
    return got.by_label("radstream_stage_duration_seconds_count", "stage")


def test_engine_metrics_agree_with_the_outcome_objects_and_the_lake(
    make_settings: Callable[..., Settings], tmp_path: Path
) -> None:
    settings = make_settings()
    studies = mixed_studies(6, BAD_KINDS)
    with serving_engine(settings, tmp_path) as served, LocalEngine.open(settings) as engine:
        before = scrape(served.url)
        assert before.value("radstream_executions_started_total") == 0
        assert before.value("radstream_workers_configured") == settings.engine.workers
        # Every declared stage has its series from the start.
        assert set(_histogram_counts(before)) == set(STAGES)
        assert sum(_histogram_counts(before).values()) == 0

        uploads = [upload_generated(engine.store, study) for study in studies]
        last: list[Scrape] = []

        def settled() -> bool:
            got = scrape(served.url)
            last[:] = [got]
            finished = got.value("radstream_executions_succeeded_total") + sum(
                got.by_label("radstream_executions_failed_total", "code").values()
            )
            return (
                finished == len(studies)
                and got.value("radstream_queue_depth") == 0
                and got.value("radstream_executions_running") == 0
                # Every stage attempt's telemetry row is in the lake.
                and got.value("radstream_telemetry_rows_flushed_total")
                == sum(_histogram_counts(got).values())
            )

        wait_until(settled, "every study to finish and flush", timeout_s=240, interval_s=0.2)
        got = last[0]
        outcomes = collect_outcomes(engine.executor, engine.store, uploads)
        results = engine.store.list(RESULT_OBJECTS.bucket, RESULT_OBJECTS.prefix)
        failures = engine.store.list(FAILURE_OBJECTS.bucket, FAILURE_OBJECTS.prefix)
        failure_codes = Counter(
            json.loads(engine.store.get(FAILURE_OBJECTS.bucket, key))["error"]["code"]
            for key in failures
        )
        lake = read_lake(settings.lake_dir)

    # Executions: one per upload, each ended as exactly one outcome object.
    assert Counter(o.status for o in outcomes) == {"succeeded": 6, "failed": len(BAD_KINDS)}
    assert got.value("radstream_executions_started_total") == len(studies)
    assert got.value("radstream_executions_succeeded_total") == len(results) == 6
    failed = got.by_label("radstream_executions_failed_total", "code")
    assert failed == failure_codes == Counter(o.error_code for o in outcomes if o.error_code)
    assert failed == {
        "SIDECAR_INVALID_JSON": 1,
        "SIDECAR_MISSING_FIELD": 1,
        "IMAGE_TRUNCATED": 2,
        "IMAGE_MISSING": 1,
    }
    # The queue drained.
    assert got.value("radstream_queue_depth") == 0
    assert got.value("radstream_oldest_pending_age_seconds") == 0
    # Stage histograms: one observation per stage attempt, as the lake has one row per attempt.
    per_stage = Counter(lake.column("stage").to_pylist())
    counts = _histogram_counts(got)
    assert {s: c for s, c in counts.items() if c} == per_stage
    # Every study was validated at least once (more when the missing image was retried).
    assert per_stage["validate"] >= len(studies)
    for stage, count in counts.items():
        assert got.value("radstream_stage_duration_seconds_bucket", stage=stage, le="+Inf") == count
    assert got.value("radstream_telemetry_rows_flushed_total") == lake.num_rows
    assert got.value("radstream_telemetry_rows_dropped_total") == 0
    assert got.value("radstream_workers_alive") == settings.engine.workers
    assert got.value("radstream_worker_restarts_total") == 0


def test_execution_counters_survive_a_worker_killed_mid_execution(
    make_settings: Callable[..., Settings], tmp_path: Path
) -> None:
    settings = make_settings()
    rng = np.random.default_rng(21)
    studies = [make_study(f"k-{i:02d}", "png", rng, width=1400, height=1700) for i in range(10)]
    studies += mixed_studies(0, ["sidecar_missing_field"])
    with serving_engine(settings, tmp_path) as served, LocalEngine.open(settings) as engine:
        uploads = [upload_generated(engine.store, study) for study in studies]
        pids: list[int] = []

        def leased() -> bool:
            rows = engine.conn.execute(
                "SELECT w.pid FROM executions e JOIN workers w ON e.lease_owner = w.id "
                "WHERE e.state = 'running' AND w.stopped_at IS NULL"
            ).fetchall()
            pids[:] = [int(r[0]) for r in rows]
            return bool(pids)

        wait_until(leased, "a worker holding a lease", timeout_s=120)
        os.kill(pids[0], signal.SIGKILL)  # stands in for an OOM kill or a decoder crash
        last: list[Scrape] = []

        def settled() -> bool:
            got = scrape(served.url)
            last[:] = [got]
            finished = got.value("radstream_executions_succeeded_total") + sum(
                got.by_label("radstream_executions_failed_total", "code").values()
            )
            return (
                finished == len(studies)
                and got.value("radstream_worker_restarts_total") == 1
                and got.value("radstream_workers_alive") == settings.engine.workers
            )

        wait_until(settled, "every study to finish after the kill", timeout_s=240, interval_s=0.2)
        got = last[0]
        outcomes = collect_outcomes(engine.executor, engine.store, uploads)

    # The killed worker's execution was taken over: still one execution and one outcome each.
    assert Counter(o.status for o in outcomes) == {"succeeded": 10, "failed": 1}
    assert got.value("radstream_executions_started_total") == len(studies)
    assert got.value("radstream_executions_succeeded_total") == 10
    assert got.by_label("radstream_executions_failed_total", "code") == {"SIDECAR_MISSING_FIELD": 1}
    assert got.value("radstream_queue_depth") == 0


def test_a_metrics_port_in_use_is_refused_before_any_work(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with (
            pytest.raises(ConfigInvalid, match="--metrics-port"),
            serving_metrics(tmp_path / "engine.db", "127.0.0.1", port),
        ):
            pass
    # Port 0 picks a free port; the endpoint says which.
    with serving_metrics(tmp_path / "engine.db", "127.0.0.1", 0) as endpoint:
        assert scrape(endpoint.url).value("radstream_executions_started_total") == 0


def test_run_until_idle_serves_metrics_while_it_runs_and_exits(
    make_settings: Callable[..., Settings], tmp_path: Path
) -> None:
    settings = make_settings(workers=1)
    with LocalEngine.open(settings) as engine:
        for study in mixed_studies(1, ["sidecar_missing_field"]):
            upload_generated(engine.store, study)
    env = {
        **os.environ,
        "RADSTREAM_DATA_DIR": str(settings.data_dir),
        "RADSTREAM_MODEL__PATH": str(settings.model.path),
        "RADSTREAM_ENGINE__WORKERS": "1",
    }
    proc = subprocess.run(
        [sys.executable, "-m", "radstream.cli", "run", "--until-idle", "--metrics-port", "0"],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    assert "metrics at http://127.0.0.1:" in proc.stderr
    with LocalEngine.open(settings) as engine:
        assert engine.executor.counts() == {
            "pending": 0,
            "running": 0,
            "succeeded": 1,
            "failed": 1,
        }
