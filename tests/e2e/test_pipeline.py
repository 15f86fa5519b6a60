"""The embedded pipeline end to end: real store, real SQLite, real worker processes."""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Callable

import numpy as np
import pyarrow.compute as pc
import pytest

from radstream.lake.parquet_sink import read_lake
from radstream.loadgen.bad_inputs import BAD_KINDS, make_bad_study
from radstream.loadgen.synthetic import Study, make_study
from radstream.loadgen.uploader import upload_generated, upload_study
from radstream.local.engine import LocalEngine
from radstream.local.outcomes import collect_outcomes
from radstream.local.pool import WorkerPool
from radstream.pipeline.definition import PIPELINE
from radstream.settings import Settings
from radstream.stages.ports import ObjectInfo
from radstream.stages.telemetry import pseudonym

# Starts processes (see tests/support/slow.py): `make test-fast` leaves this module out.
pytestmark = pytest.mark.slow

FORMATS = ("png", "png16", "jpeg", "dicom", "dicom-rle", "dicom-jpeg")


def _upload(engine: LocalEngine, study: Study) -> ObjectInfo:
    return upload_generated(engine.store, study)


def _run_until_idle(settings: Settings) -> None:
    pool = WorkerPool(settings, until_idle=True).start()
    assert pool.wait(timeout=240), "workers did not finish"
    assert pool.exit_codes == [0] * len(pool.exit_codes)


def test_valid_succeed_bad_fail_with_their_codes(make_settings: Callable[..., Settings]) -> None:
    settings = make_settings()
    rng = np.random.default_rng(1)
    valid = [
        make_study(f"ok-{i}", fmt, rng, width=640, height=720) for i, fmt in enumerate(FORMATS)
    ]
    bad = [make_bad_study(kind, f"bad-{i}", rng) for i, kind in enumerate(BAD_KINDS)]
    with LocalEngine.open(settings) as engine:
        uploads = {_upload(engine, s).key: s for s in [*valid, *bad]}
        infos = [engine.store.head("images", k) for k in uploads]
    _run_until_idle(settings)

    with LocalEngine.open(settings) as engine:
        outcomes = collect_outcomes(engine.executor, engine.store, [i for i in infos if i])
        by_key = {o.sidecar_key: o for o in outcomes}
        assert len(outcomes) == len(uploads)
        for key, study in uploads.items():
            outcome = by_key[key]
            if study.expected_code is None:
                assert outcome.status == "succeeded", (key, outcome)
            else:
                assert (outcome.status, outcome.error_code) == ("failed", study.expected_code), key
        # Failure objects say what to do; result objects carry the 14 labels.
        for key, study in uploads.items():
            folder = key.split("/")[1]
            stem = key.rsplit("/", 1)[1].removesuffix(".json")
            if study.expected_code is None:
                result = json.loads(engine.store.get("results", f"results/{folder}/{stem}.json"))
                assert len(result["probabilities"]) == 14
                assert result["probabilities"]["Support Devices"] is None
                assert len(result["raw_outputs"]) == 18
            else:
                failure_keys = [
                    k
                    for k in engine.store.list("results", "failed/")
                    if k.endswith(f"/{stem}.json")
                ]
                assert len(failure_keys) == 1, key
                failure = json.loads(engine.store.get("results", failure_keys[0]))
                assert failure["error"]["code"] == study.expected_code
                assert failure["error"]["message"] and failure["error"]["hint"]

    # Telemetry: one ok row per stage for every success; one record_failure row per failure.
    lake = read_lake(settings.lake_dir)
    rows = lake.to_pylist()
    ok = [r for r in rows if r["status"] == "ok"]
    per_stage = Counter(r["stage"] for r in ok)
    for stage in PIPELINE.names:
        assert per_stage[stage] >= len(valid)
    assert per_stage["store"] == len(valid)
    assert per_stage["record_failure"] == len(bad)
    assert pc.all(pc.greater_equal(lake["duration_ms"], 0)).as_py()
    assert not any("patient" in c for c in lake.column_names)
    sidecar_patient_ids = {json.loads(s.sidecar).get("patient_id") for s in valid}
    flat = json.dumps(rows, default=str)
    assert not any(pid and pid in flat for pid in sidecar_patient_ids)


def test_telemetry_rows_are_stages_times_executions(make_settings: Callable[..., Settings]) -> None:
    settings = make_settings(telemetry={"pseudonymise": True, "pseudonym_key": "secret"})
    rng = np.random.default_rng(2)
    studies = [make_study(f"t-{i}", "jpeg", rng, width=600, height=700) for i in range(6)]
    with LocalEngine.open(settings) as engine:
        for study in studies:
            _upload(engine, study)
    _run_until_idle(settings)
    rows = read_lake(settings.lake_dir).to_pylist()
    assert len(rows) == len(PIPELINE.names) * len(studies)
    pairs = Counter((r["execution_id"], r["stage"]) for r in rows)
    assert set(pairs.values()) == {1}
    assert {r["stage"] for r in rows} == set(PIPELINE.names)
    # Pseudonymised: no real study id reaches the lake.
    assert {r["study_id"] for r in rows} == {pseudonym(s.study_id, "secret") for s in studies}


def test_same_study_uploaded_twice_gives_one_execution(
    make_settings: Callable[..., Settings],
) -> None:
    settings = make_settings()
    study = make_study("dup", "jpeg", np.random.default_rng(3), width=600, height=700)
    with LocalEngine.open(settings) as engine:
        first = _upload(engine, study)
        second = _upload(engine, study)
        assert first.etag == second.etag
    _run_until_idle(settings)
    with LocalEngine.open(settings) as engine:
        assert engine.executor.counts() == {"pending": 0, "running": 0, "succeeded": 1, "failed": 0}


def test_sidecar_before_image_waits_then_succeeds(make_settings: Callable[..., Settings]) -> None:
    settings = make_settings(image_wait_s=30.0)
    study = make_study("late", "png", np.random.default_rng(4), width=600, height=700)
    with LocalEngine.open(settings) as engine:
        engine.store.put("images", "incoming/late/late.json", study.sidecar)
        pool = WorkerPool(settings, until_idle=True).start()
        pool.wait_ready(engine.executor)
        engine.store.put("images", f"incoming/late/{study.image_name}", study.image)
        assert pool.wait(timeout=120)
        assert engine.executor.counts()["succeeded"] == 1


def test_fixing_the_image_and_putting_the_sidecar_again_retries(
    make_settings: Callable[..., Settings],
) -> None:
    settings = make_settings()
    study = make_study("fixme", "jpeg", np.random.default_rng(10), width=600, height=700)
    with LocalEngine.open(settings) as engine:
        upload_study(
            engine.store,
            folder="fixme",
            image_name=study.image_name,
            image=study.image[: len(study.image) // 3],
            sidecar=study.sidecar,
        )
        _run_until_idle(settings)
        failure = json.loads(engine.store.get("results", "failed/fixme/fixme.json"))
        assert failure["error"]["code"] == "IMAGE_TRUNCATED"

        info = upload_study(
            engine.store,
            folder="fixme",
            image_name=study.image_name,
            image=study.image,
            sidecar=study.sidecar,
        )
        _run_until_idle(settings)
        [outcome] = collect_outcomes(engine.executor, engine.store, [info])
        assert outcome.status == "succeeded"
        assert engine.store.exists("results", "results/fixme/fixme.json")
        assert not engine.store.exists("results", "failed/fixme/fixme.json")
        assert engine.executor.counts() == {"pending": 0, "running": 0, "succeeded": 1, "failed": 1}
