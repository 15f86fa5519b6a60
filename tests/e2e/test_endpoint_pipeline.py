"""The pipeline through a KServe v2 endpoint: same results as in process, and a server
killed mid-run costs no study (the circuit breaker fails fast, the executor retries)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import numpy as np
import pytest

from radstream.lake.parquet_sink import read_lake
from radstream.layout import Bucket, result_key
from radstream.loadgen.synthetic import Study, make_study
from radstream.loadgen.uploader import upload_generated
from radstream.local.engine import LocalEngine
from radstream.local.outcomes import collect_outcomes
from radstream.local.pool import WorkerPool
from radstream.settings import Settings
from radstream.stages.ports import ObjectInfo
from support.waiting import free_port, wait_until

# Starts processes (see tests/support/slow.py): `make test-fast` leaves this module out.
pytestmark = pytest.mark.slow


@contextmanager
def _server(model: Path, port: int) -> Iterator[subprocess.Popen[bytes]]:
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "radstream.cli",
            "model",
            "serve",
            "--model",
            str(model),
            "--port",
            str(port),
            "--instances",
            "1",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_until(lambda: _ready(proc, port), "the model server", timeout_s=60, interval_s=0.1)
        yield proc
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            proc.wait(30)


def _ready(proc: subprocess.Popen[bytes], port: int) -> bool:
    assert proc.poll() is None, "the model server exited before it was ready"
    try:
        return httpx.get(f"http://127.0.0.1:{port}/v2/health/ready", timeout=1).status_code == 200
    except httpx.HTTPError:
        return False


def _studies(prefix: str, n: int) -> list[Study]:
    rng = np.random.default_rng(12)
    return [make_study(f"{prefix}-{i}", "jpeg", rng, width=700, height=800) for i in range(n)]


def _upload(engine: LocalEngine, studies: list[Study]) -> list[ObjectInfo]:
    return [upload_generated(engine.store, s) for s in studies]


def _probabilities(engine: LocalEngine, studies: list[Study]) -> dict[str, dict[str, float]]:
    out = {}
    for s in studies:
        stem = s.image_name.rsplit(".", 1)[0]
        body = json.loads(engine.store.get(Bucket.RESULTS, result_key(s.study_id, stem)))
        out[s.study_id.removeprefix("ref-")] = body["raw_outputs"] | {
            "backend": body["model"]["backend"]
        }
    return out


def test_endpoint_gives_in_process_results_and_survives_a_killed_server(
    make_settings: Callable[..., Settings], tmp_path: Path, standin_model: Path
) -> None:
    port = free_port()
    studies = _studies("ep", 10)

    # In process first, as the reference.
    local = make_settings()
    with LocalEngine.open(local) as engine:
        _upload(engine, [s.renamed(f"ref-{s.study_id}") for s in studies])
    pool = WorkerPool(local, until_idle=True).start()
    assert pool.wait(180)
    with LocalEngine.open(local) as engine:
        reference = _probabilities(engine, [s.renamed(f"ref-{s.study_id}") for s in studies])

    # The default attempt budget (5) is kept: an outage is retried for a time budget instead.
    remote = make_settings(retry_base_s=0.2, retry_max_s=0.5)
    remote = remote.model_copy(
        update={
            "data_dir": tmp_path / "remote",
            "model": remote.model.model_copy(
                update={
                    "endpoint": f"http://127.0.0.1:{port}",
                    "timeout_s": 5.0,
                    "retries": 1,
                    "breaker_failures": 2,
                    "breaker_reset_s": 0.5,
                }
            ),
        }
    )
    with _server(standin_model, port) as server, LocalEngine.open(remote) as engine:
        pool = WorkerPool(remote).start()
        pool.wait_ready(engine.executor)
        uploads = _upload(engine, studies)
        wait_until(
            lambda: engine.executor.counts()["succeeded"] >= 2,
            "two studies through the endpoint",
            timeout_s=120,
        )
        server.send_signal(signal.SIGKILL)  # the endpoint dies mid-run
        server.wait(10)
        # The endpoint stays down until a study has been retried more often than the
        # per-stage attempt budget allows for other errors (the circuit opens on the way).
        # Each retry resumes at the last checkpoint, so count attempts, whatever the stage.
        budget = remote.engine.max_stage_attempts
        wait_until(
            lambda: any(row["stage_attempt"] >= budget for row in engine.executor.executions()),
            f"a study retried {budget} times while the endpoint is down",
            timeout_s=120,
        )
        with _server(standin_model, port):
            wait_until(
                lambda: sum(engine.executor.counts()[s] for s in ("succeeded", "failed")) >= 10,
                "every study to finish once the endpoint is back",
                timeout_s=240,
                interval_s=0.05,
                on_poll=pool.supervise,
            )
            pool.stop()
        outcomes = collect_outcomes(engine.executor, engine.store, uploads)
        assert [o.status for o in outcomes] == ["succeeded"] * 10, outcomes
        through_endpoint = _probabilities(engine, studies)
    assert through_endpoint.keys() == reference.keys()
    for key, values in through_endpoint.items():
        assert values.pop("backend") == f"kserve:127.0.0.1:{port}"
        assert reference[key].pop("backend") == "onnxruntime"
        for label, value in values.items():
            assert value == pytest.approx(reference[key][label], abs=1e-5)
    # The outage is visible in telemetry: infer attempts that were retried.
    rows = read_lake(remote.lake_dir).to_pylist()
    retried = [r for r in rows if r["stage"] == "infer" and r["status"] == "retry"]
    assert retried and {r["error_code"] for r in retried} == {"MODEL_UNAVAILABLE"}
    # More retries than the per-stage attempt budget: the outage was bounded by time.
    per_execution = Counter(r["execution_id"] for r in retried)
    assert max(per_execution.values()) >= remote.engine.max_stage_attempts
    assert os.environ.get("RADSTREAM_MODEL__ENDPOINT") is None
