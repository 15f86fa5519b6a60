"""Crash safety (SIGKILL mid-run) and `radstream serve` picking up another process's upload."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from radstream.lake.parquet_sink import read_lake
from radstream.loadgen.bad_inputs import make_bad_study
from radstream.loadgen.synthetic import make_study
from radstream.loadgen.uploader import upload_generated
from radstream.local.engine import LocalEngine
from radstream.local.outcomes import collect_outcomes
from radstream.local.pool import WorkerPool
from radstream.settings import Settings
from radstream.stages.ports import ObjectInfo
from support.waiting import wait_until

# Starts processes (see tests/support/slow.py): `make test-fast` leaves this module out.
pytestmark = pytest.mark.slow


def test_sigkill_mid_run_loses_and_duplicates_nothing(
    make_settings: Callable[..., Settings],
) -> None:
    settings = make_settings(lease_s=2.0)
    rng = np.random.default_rng(5)
    studies = [make_study(f"k-{i:02d}", "png", rng, width=1400, height=1700) for i in range(16)]
    studies += [make_bad_study("sidecar_missing_field", "k-bad", rng)]
    with LocalEngine.open(settings) as engine:
        pool = WorkerPool(settings).start()
        pool.wait_ready(engine.executor)
        uploads: list[ObjectInfo] = [upload_generated(engine.store, s) for s in studies]
        # Kill a worker while it holds a lease, after some studies are done.
        wait_until(
            lambda: engine.executor.counts()["succeeded"] >= 2, "first results", timeout_s=120
        )
        owners: list[str] = []

        def leased() -> bool:
            rows = engine.conn.execute(
                "SELECT lease_owner FROM executions WHERE state = 'running'"
            ).fetchall()
            owners[:] = [r[0] for r in rows if r[0] in pool.worker_ids]
            return bool(owners)

        wait_until(leased, "a worker holding a lease", timeout_s=60)
        victim = pool.processes[pool.worker_ids.index(owners[0])]
        assert victim.pid is not None
        os.kill(victim.pid, signal.SIGKILL)
        victim.join(10)
        assert victim.exitcode == -signal.SIGKILL

        # The pool replaces the dead worker; its execution is taken over and finished.
        def all_done() -> bool:
            counts = engine.executor.counts()
            return counts["succeeded"] + counts["failed"] == len(studies)

        wait_until(
            all_done, "every study to finish after the kill", timeout_s=240, on_poll=pool.supervise
        )
        assert pool.restarts == 1
        pool.stop()
        assert pool.exit_codes == [0, 0]

        counts = engine.executor.counts()
        assert counts["pending"] == counts["running"] == 0
        assert counts["succeeded"] + counts["failed"] == len(studies)
        outcomes = collect_outcomes(engine.executor, engine.store, uploads)
        assert Counter(o.status for o in outcomes) == {"succeeded": 16, "failed": 1}
        # Exactly one outcome object per study, in exactly one of results/ or failed/.
        objects = engine.store.list("results", "results/") + engine.store.list("results", "failed/")
        folders = Counter(key.split("/")[1] for key in objects)
        assert folders == Counter({s.study_id: 1 for s in studies})


def test_a_study_that_keeps_killing_workers_is_abandoned(
    make_settings: Callable[..., Settings],
) -> None:
    settings = make_settings(max_takeovers=0, lease_s=60.0)
    study = make_study("poison", "png16", np.random.default_rng(9), width=2000, height=2500)
    with LocalEngine.open(settings) as engine:
        pool = WorkerPool(settings, workers=1).start()
        pool.wait_ready(engine.executor)
        upload_generated(engine.store, study)
        wait_until(
            lambda: engine.executor.counts()["running"] == 1, "the study to start", timeout_s=60
        )
        pid = pool.processes[0].pid
        assert pid is not None
        os.kill(pid, signal.SIGKILL)  # stands in for a decoder crash or an OOM kill

        def failed() -> bool:
            pool.supervise()
            return engine.executor.counts()["failed"] == 1

        # Found dead at once (not after the 60 s lease); no takeovers allowed: abandoned.
        wait_until(failed, "the execution to be abandoned", timeout_s=60)
        pool.stop()
        failure = json.loads(engine.store.get("results", "failed/poison/poison.json"))
        assert failure["error"]["code"] == "EXECUTION_ABANDONED"
        assert not engine.store.exists("results", "results/poison/poison.json")


def test_serve_picks_up_an_upload_from_another_process(
    make_settings: Callable[..., Settings], tmp_path: Path
) -> None:
    settings = make_settings()
    env = {
        **os.environ,
        "RADSTREAM_DATA_DIR": str(settings.data_dir),
        "RADSTREAM_MODEL__PATH": str(settings.model.path),
        "RADSTREAM_ENGINE__WORKERS": "1",
        "RADSTREAM_TELEMETRY__FLUSH_S": "30",
    }
    server = subprocess.Popen(
        [sys.executable, "-m", "radstream.cli", "serve"],
        env=env,
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    try:
        with LocalEngine.open(settings) as engine:
            wait_until(lambda: _live_workers(engine) == 1, "serve's worker", timeout_s=120)
            study = make_study("served", "jpeg", np.random.default_rng(6), width=600, height=700)
            upload_generated(engine.store, study)
            result = f"results/served/{study.image_name.rsplit('.', 1)[0]}.json"
            wait_until(
                lambda: engine.store.exists("results", result), "the result object", timeout_s=60
            )
    finally:
        server.send_signal(signal.SIGTERM)
        output = server.communicate(timeout=60)[0].decode()
    assert server.returncode == 0, output
    # A clean shutdown flushes telemetry that the 30 s timer had not yet written.
    assert read_lake(settings.lake_dir).num_rows == 4


def _live_workers(engine: LocalEngine) -> int:
    row = engine.conn.execute("SELECT COUNT(*) FROM workers WHERE stopped_at IS NULL").fetchone()
    return int(row[0])
