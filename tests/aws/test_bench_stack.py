"""`radstream bench --stack` against a stack deployed in ministack, and the S3 watcher behind it.

The watcher tests use the emulator's S3 directly, with a bucket of their own and a fake
clock. The benchmark test deploys a stack through the CLI (as the stack e2e test does, under
another name), runs one small benchmark against it, and destroys the stack afterwards.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import botocore.session
import numpy as np
import pyarrow as pa
import pytest
from typer.testing import CliRunner

from radstream.aws.completions import S3CompletionWatcher
from radstream.aws.outcomes import stack_store, wait_for_outcomes
from radstream.aws.s3_store import S3ObjectStore
from radstream.aws.session import AwsTarget, StackRef
from radstream.bench.runner import await_telemetry
from radstream.cli import app
from radstream.lake.columns import arrow_schema
from radstream.loadgen.bad_inputs import BAD_KINDS
from radstream.loadgen.driver import DriveResult, Sent
from radstream.loadgen.synthetic import make_studies
from radstream.loadgen.uploader import upload_generated
from radstream.schema.telemetry import StageStatus
from radstream.settings import Settings
from radstream.stages.completions import Completion
from radstream.stages.telemetry import pseudonym, stage_record
from support.clocks import FakeClock

STACK = "rsbench"
STUDIES, INVALID = 8, 2


def _cli(*args: str, check: bool = True) -> Any:
    result = CliRunner().invoke(app, list(args))
    if check:
        assert result.exit_code == 0, f"{args}: {result.output}\n{result.exception!r}"
    return result


# --- S3CompletionWatcher on the emulator's S3 -----------------------------------------


@pytest.fixture
def s3(emulator: Any) -> tuple[S3ObjectStore, list[str]]:
    """A fresh results bucket, and the list of LIST calls its client makes."""
    # Our own client, not the cached per-target one, so the spy sees only this test's calls.
    client = botocore.session.get_session().create_client(
        "s3", region_name="us-east-1", endpoint_url=emulator.url
    )
    bucket = f"rsbench-watch-{uuid.uuid4().hex[:8]}"
    client.create_bucket(Bucket=bucket)
    lists: list[str] = []
    # The spy: every ListObjectsV2 request the client sends, paginated or not.
    client.meta.events.register(
        "before-parameter-build.s3.ListObjectsV2",
        lambda params, **_: lists.append(str(params.get("Prefix"))),
    )
    return S3ObjectStore(client, {"results": bucket}), lists


@pytest.mark.slow  # starts the emulator
def test_watcher_ignores_earlier_objects_and_reports_each_outcome_once(
    s3: tuple[S3ObjectStore, list[str]],
) -> None:
    store, _ = s3
    store.put("results", "results/old/a.json", b"{}")
    store.put("results", "failed/old/b.json", b"{}")
    clock = FakeClock()
    watcher = S3CompletionWatcher(store, min_interval_s=1.0, clock=clock)

    store.put("results", "results/s1/img.json", b"{}")
    store.put("results", "failed/s2/bad.json", b"{}")
    store.put("results", "results/not-an-outcome.json", b"{}")
    clock.advance(1.0)
    found = watcher.poll()
    assert sorted((c.sidecar_key, c.kind, c.at) for c in found) == [
        ("incoming/s1/img.json", "result", clock.now),
        ("incoming/s2/bad.json", "failure", clock.now),
    ]
    clock.advance(1.0)
    assert watcher.poll() == []


@pytest.mark.slow  # starts the emulator
def test_watcher_lists_at_most_once_per_interval(s3: tuple[S3ObjectStore, list[str]]) -> None:
    store, lists = s3
    clock = FakeClock()
    watcher = S3CompletionWatcher(store, min_interval_s=5.0, clock=clock)
    assert sorted(lists) == ["failed/", "results/"]  # the snapshot
    lists.clear()

    store.put("results", "results/s1/img.json", b"{}")
    for _ in range(50):  # the driver polls every few ms
        clock.advance(0.01)
        assert watcher.poll() == []
    assert lists == []

    clock.advance(5.0)
    (completion,) = watcher.poll()
    assert completion.at == clock.now
    assert sorted(lists) == ["failed/", "results/"]
    assert watcher.poll() == []
    assert len(lists) == 2

    # A clock stepping backwards must not silence the watcher until it catches up
    # (set by hand: advance() refuses to go back).
    clock.now -= 3600.0
    watcher.poll()
    assert len(lists) == 4


@pytest.mark.slow  # starts the emulator
def test_watcher_lists_only_its_study_prefix(s3: tuple[S3ObjectStore, list[str]]) -> None:
    store, lists = s3
    clock = FakeClock()
    watcher = S3CompletionWatcher(store, min_interval_s=0.0, clock=clock, study_prefix="run1-")
    store.put("results", "results/run1-m-1/a.json", b"{}")
    store.put("results", "results/run2-m-1/a.json", b"{}")
    assert [c.sidecar_key for c in watcher.poll()] == ["incoming/run1-m-1/a.json"]
    assert set(lists) == {"results/run1-", "failed/run1-"}


# --- waiting for the telemetry of a run -------------------------------------------------


def test_telemetry_wait_matches_pseudonymised_ids_and_is_bounded() -> None:
    key = "secret"
    settings = Settings(telemetry={"pseudonymise": True, "pseudonym_key": key})
    sent = [Sent(f"incoming/r-m-{i}/r-m-{i}.json", 0.0, 0.0, None, False) for i in (1, 2)]
    run = DriveResult(
        started_at=0.0,
        sent=sent,
        completions={s.sidecar_key: Completion(s.sidecar_key, "result", 1.0) for s in sent},
    )

    def row(study_id: str, stage: str) -> dict[str, Any]:
        record = stage_record(
            execution_id="sfn-name", study_id=pseudonym(study_id, key), stage=stage,
            status=StageStatus.OK, start_s=1.0, end_s=1.1, attempt=1, worker_id="lambda",
        )  # fmt: skip
        return record.model_dump(mode="python")

    rows = [row("r-m-1", "store"), row("r-m-2", "validate"), row("r-w-1", "store")]

    def read() -> pa.Table:
        return pa.Table.from_pylist(rows, schema=arrow_schema())

    # r-m-2 has a result but no store row yet: incomplete once the (zero) wait is over.
    got, complete = await_telemetry(settings, read, run, sent, 0.0, lambda *_: None)
    assert not complete
    assert len(got) == 2  # the warm-up study's row is not the run's
    rows.append(row("r-m-2", "store"))
    got, complete = await_telemetry(settings, read, run, sent, 60.0, lambda *_: None)
    assert complete and len(got) == 3


# --- the benchmark against a deployed stack ---------------------------------------------


@pytest.fixture(scope="module")
def stack(
    emulator: Any, lambda_package: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[StackRef]:
    """A stack deployed through the CLI, destroyed after the module."""
    package = lambda_package
    data_dir = tmp_path_factory.mktemp("bench-deploy")
    _cli(
        "aws", "deploy", "--stack", STACK, "--endpoint-url", emulator.url,
        "--package", str(package), "--python-version", "3.11", "--memory-mb", "2048",
        "--data-dir", str(data_dir),
    )  # fmt: skip
    try:
        stack = StackRef(STACK, AwsTarget(endpoint_url=emulator.url))
        _prewarm(stack)
        yield stack
    finally:
        _cli("aws", "destroy", "--stack", STACK, "--endpoint-url", emulator.url, check=False)


def _prewarm(stack: StackRef) -> None:
    """Pay the functions' cold starts (tens of seconds in the emulator) before the benchmark.

    A cold stack finishes the warm-up and the measured studies in one burst at the end, which
    leaves no steady window to measure throughput over, and measures the emulator's cold
    starts rather than the pipeline.
    """
    store = stack_store(stack)
    (study,) = make_studies(
        1, 0, formats=["jpeg"], rng=np.random.default_rng(3), width=640, height=800
    )
    watcher = S3CompletionWatcher(store, min_interval_s=0.0)
    info = upload_generated(store, study.renamed("prewarm"))
    (outcome,) = wait_for_outcomes(watcher, [(info.key, time.time())], timeout_s=300)
    assert outcome.status == "succeeded", outcome


@pytest.fixture(scope="module")
def report(stack: StackRef, emulator: Any, tmp_path_factory: pytest.TempPathFactory) -> Any:
    """One small benchmark run against the stack: its ``--json`` report."""
    result = _cli(
        "bench", "--stack", STACK, "--endpoint-url", emulator.url,
        "--studies", str(STUDIES), "--rate", "2", "--invalid-ratio", str(INVALID / STUDIES),
        "--size", "640x800", "--warmup", "2", "--json",
        "--data-dir", str(tmp_path_factory.mktemp("bench-data")),
        check=False,
    )  # fmt: skip
    # An emulator's latencies may well breach the SLO (exit 1); the report is what counts.
    assert result.exit_code in (0, 1), f"{result.output}\n{result.exception!r}"
    return json.loads(result.stdout.strip().splitlines()[-1])


@pytest.mark.slow
def test_bench_counts_the_outcomes_of_the_stack(report: Any, stack: StackRef) -> None:
    valid = STUDIES - INVALID
    assert report["n"] == valid and report["n_without_outcome"] == 0
    outcomes = report["outcomes"]
    assert outcomes["succeeded"] == valid and outcomes["failed"] == outcomes["lost"] == 0
    assert outcomes["invalid_injected"] == outcomes["invalid_rejected"] == INVALID
    assert report["success_rate"] == 1.0
    assert not report["timed_out"]
    # The injected studies failed with the codes they were built for.
    store = stack_store(stack)
    codes = [
        json.loads(store.get("results", key))["error"]["code"]
        for key in store.list("results", "failed/")
        if "-m-" in key
    ]
    assert sorted(codes) == sorted(list(BAD_KINDS.values())[:INVALID])


@pytest.mark.slow
def test_bench_reports_latency_stages_and_cost_of_the_stack(report: Any) -> None:
    brief = {k: v for k, v in report.items() if k not in ("cost_items", "cost", "manifest")}
    assert 0 < report["p50_ms"] <= report["p95_ms"] <= report["max_ms"], brief
    assert report["throughput_per_min"] > 0, brief
    # Stage timings come from the telemetry Firehose delivered to the stack's bucket.
    assert "telemetry_note" not in report, brief
    for stage in ("validate", "prepare", "infer", "store"):
        assert report["stages"][stage]["p50_ms"] > 0, brief
    assert report["stages"]["infer"]["n"] == STUDIES - INVALID, brief
    assert report["stages"]["record_failure"]["n"] == INVALID, brief
    assert report["cost_per_image_usd"] > 0, brief
    config = report["manifest"]["config"]
    assert config["stack"] == STACK and config["region"] == "us-east-1"
    assert config["workers"] is None and report["saturated"] is None
    assert report["manifest"]["model"]["sha256"]


def test_bench_refuses_a_baseline_for_a_stack() -> None:
    # Refused before any AWS call: the endpoint need not exist.
    result = _cli(
        "bench", "--stack", STACK, "--endpoint-url", "http://127.0.0.1:9", "--studies", "2",
        "--rate", "1", "--baseline", check=False,
    )  # fmt: skip
    assert result.exit_code == 2
    assert "CONFIG_INVALID" in result.output and "Lambda" in result.output
