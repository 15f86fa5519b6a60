"""Everyday use of the `radstream` command (issue 17), run as a user runs it: subprocesses.

Seeing the predictions (`results`, and what `run`, `serve` and `upload` print), the untrained
stand-in said next to every probability, per-study status, and data directories that are
never created silently nor shared with synthetic studies.
"""

from __future__ import annotations

import csv
import io
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from radstream.loadgen.synthetic import make_study
from radstream.model.labels import CHEXPERT_LABELS

pytestmark = pytest.mark.slow

UNTRAINED = "untrained stand-in"


def _env(data_dir: Path | None, model: Path | None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("RADSTREAM_")}
    if data_dir is not None:
        env["RADSTREAM_DATA_DIR"] = str(data_dir)
    if model is not None:
        env["RADSTREAM_MODEL__PATH"] = str(model)
    return env


def _cli(
    *args: str,
    cwd: Path,
    data_dir: Path | None = None,
    model: Path | None = None,
    expect: int = 0,
) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(
        [sys.executable, "-m", "radstream.cli", *args],
        env=_env(data_dir, model),
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == expect, proc.stderr + proc.stdout
    return proc


@pytest.mark.slow
def test_demo_keeps_apart_and_results_show_the_predictions(
    tmp_path: Path, standin_model: Path
) -> None:
    data = tmp_path / "data"
    demo = _cli(
        "demo",
        "--studies",
        "3",
        "--invalid",
        "1",
        "--workers",
        "1",
        "--image-wait",
        "1",
        cwd=tmp_path,
        data_dir=data,
        model=standin_model,
    )
    own = data / "demo"
    assert f"creating data directory {own}" in demo.stderr
    assert (own / "engine.db").is_file()
    assert not (data / "engine.db").exists()  # the operational directory stays untouched
    assert "(untrained)" in demo.stdout and UNTRAINED in demo.stdout
    assert f"radstream results list --data-dir {own}" in demo.stdout

    listed = json.loads(
        _cli("results", "list", "--format", "json", cwd=tmp_path, data_dir=own).stdout
    )
    assert sorted(r["outcome"] for r in listed) == ["failed", "succeeded", "succeeded"]
    ok = next(r for r in listed if r["outcome"] == "succeeded")
    assert ok["model_trained"] is False
    assert len(ok["top_findings"]) == 3
    top = [f["probability"] for f in ok["top_findings"]]
    assert top == sorted(top, reverse=True)
    bad = next(r for r in listed if r["outcome"] == "failed")
    assert bad["error_code"] and bad["key"].startswith("failed/")

    table = _cli("results", "list", cwd=tmp_path, data_dir=own)
    assert ok["study_id"] in table.stdout and bad["error_code"] in table.stdout
    assert UNTRAINED in table.stderr and "3 outcome(s)" in table.stderr
    only_failed = _cli(
        "results", "list", "--outcome", "failed", "--format", "csv", cwd=tmp_path, data_dir=own
    )
    assert len(list(csv.DictReader(io.StringIO(only_failed.stdout)))) == 1
    future = _cli(
        "results", "list", "--since", "2999-01-01", "--format", "json", cwd=tmp_path, data_dir=own
    )
    assert json.loads(future.stdout) == []

    shown = _cli("results", "show", ok["study_id"], cwd=tmp_path, data_dir=own)
    assert "Pneumonia" in shown.stdout and "probability" in shown.stdout
    assert UNTRAINED in shown.stderr
    failure = _cli("results", "show", bad["study_id"], cwd=tmp_path, data_dir=own)
    assert bad["error_code"] in failure.stdout and "→" in failure.stdout
    missing = _cli("results", "show", "no-such-study", cwd=tmp_path, data_dir=own, expect=2)
    assert missing.stderr.startswith("error RESULTS_NOT_FOUND: ")

    exported = _cli("results", "export", "--format", "csv", cwd=tmp_path, data_dir=own)
    rows = list(csv.DictReader(io.StringIO(exported.stdout)))
    assert len(rows) == 3
    assert set(CHEXPERT_LABELS) <= set(rows[0])
    parquet = tmp_path / "out.parquet"
    _cli("results", "export", "--format", "parquet", "-o", str(parquet), cwd=tmp_path, data_dir=own)
    import pyarrow.parquet as pq

    assert pq.read_table(parquet).num_rows == 3

    # SQL as users type it: a bare `telemetry` resolves locally as on Athena.
    counted = _cli(
        "query",
        "--sql",
        "SELECT count(*) AS n FROM telemetry",
        "--format",
        "json",
        cwd=tmp_path,
        data_dir=own,
    )
    assert json.loads(counted.stdout)[0]["n"] > 0
    wrong = _cli(
        "query", "--sql", "SELECT nope FROM telemetry", cwd=tmp_path, data_dir=own, expect=2
    )
    assert wrong.stderr.startswith("error QUERY_FAILED: ") and "nope" in wrong.stderr
    assert "ran locally" in wrong.stderr and "workgroup" not in wrong.stderr

    # Reading commands never create an empty data directory.
    nowhere = tmp_path / "nowhere"
    for args in (("status",), ("results", "list")):
        refused = _cli(*args, cwd=tmp_path, data_dir=nowhere, expect=2)
        assert refused.stderr.startswith("error DATA_DIR_MISSING: ")
        assert str(nowhere) in refused.stderr
    assert not nowhere.exists()


def _wait_for_workers(data: Path, serve: subprocess.Popen[str]) -> None:
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        assert serve.poll() is None, "serve exited early"
        db = data / "engine.db"
        if db.is_file():
            import sqlite3

            with sqlite3.connect(db) as conn:
                try:
                    if conn.execute("SELECT COUNT(*) FROM workers").fetchone()[0]:
                        return
                except sqlite3.OperationalError:  # the schema is being created
                    pass
        time.sleep(0.2)
    raise AssertionError("serve started no worker")


@pytest.mark.slow
def test_serve_and_upload_say_what_happened_and_status_counts_studies(
    tmp_path: Path, standin_model: Path
) -> None:
    rng = np.random.default_rng(3)
    first = tmp_path / "first"
    first.mkdir()
    good = make_study("file-ok", "jpeg", rng, width=600, height=700)
    (first / "file-ok.jpg").write_bytes(good.image)
    (first / "file-ok.json").write_bytes(good.sidecar)
    (first / "broken.jpg").write_bytes(good.image)
    (first / "broken.json").write_bytes(b"{not json")
    data = tmp_path / "data"
    log = tmp_path / "serve.log"
    with open(log, "w") as sink:
        serve = subprocess.Popen(
            [sys.executable, "-m", "radstream.cli", "--log-format", "text", "serve", "--workers=1"],
            env=_env(data, standin_model),
            cwd=tmp_path,
            stdout=sink,
            stderr=subprocess.STDOUT,
            text=True,
        )
        try:
            _wait_for_workers(data, serve)
            up = _cli("upload", str(first), cwd=tmp_path, data_dir=data, expect=1)
            lines = up.stdout.splitlines()
            ok = next(line for line in lines if line.startswith("succeeded"))
            assert "results/file-ok/file-ok.json" in ok
            assert any(label in ok for label in CHEXPERT_LABELS)  # the top finding
            failed = next(line for line in lines if line.startswith("failed"))
            assert "failed/broken/broken.json" in failed and "SIDECAR_INVALID_JSON" in failed
            assert UNTRAINED in up.stderr and "1 of 2 studies failed or were lost" in up.stderr

            # The broken study, uploaded again and fixed: one study, now a success.
            second = tmp_path / "second"
            second.mkdir()
            fixed = make_study("broken", "jpeg", rng, width=600, height=700)
            (second / "broken.jpg").write_bytes(fixed.image)
            (second / "broken.json").write_bytes(fixed.sidecar)
            again = _cli("upload", str(second), cwd=tmp_path, data_dir=data)
            assert again.stdout.startswith(
                "succeeded incoming/broken/broken.json → results/broken/broken.json"
            )
        finally:
            serve.terminate()
            serve.wait(60)
    text = log.read_text()
    assert f"serving {data}" in text and "1 worker(s)" in text
    assert "densenet121-standin v1" in text and "untrained" in text
    assert (
        "succeeded file-ok/file-ok" in text and "failed broken/broken: SIDECAR_INVALID_JSON" in text
    )

    studies = json.loads(_cli("status", "--json", cwd=tmp_path, data_dir=data).stdout)
    assert studies == {"pending": 0, "running": 0, "succeeded": 2, "failed": 0}
    executions = json.loads(
        _cli("status", "--executions", "--json", cwd=tmp_path, data_dir=data).stdout
    )
    assert executions == {"pending": 0, "running": 0, "succeeded": 2, "failed": 1}
    table = _cli("status", cwd=tmp_path, data_dir=data)
    assert f"data directory {data}" in table.stderr and "studies" in table.stdout


@pytest.mark.slow
def test_model_commands_say_the_standin_is_untrained(tmp_path: Path, standin_model: Path) -> None:
    info = _cli("model", "info", "--model", str(standin_model), cwd=tmp_path, data_dir=tmp_path)
    assert json.loads(info.stdout)["trained"] is False
    assert UNTRAINED in info.stderr

    study = make_study("p1", "png", np.random.default_rng(4), width=600, height=700)
    image = tmp_path / study.image_name
    image.write_bytes(study.image)
    predicted = _cli(
        "model",
        "predict",
        str(image),
        "--model",
        str(standin_model),
        cwd=tmp_path,
        data_dir=tmp_path,
    )
    probabilities = json.loads(predicted.stdout)
    assert set(probabilities) == set(CHEXPERT_LABELS)
    shown = [v for v in probabilities.values() if v is not None]
    assert shown and all(round(v, 4) == v for v in shown)  # four decimals, not sixteen
    assert UNTRAINED in predicted.stderr


@pytest.mark.slow
def test_the_model_server_serves_the_file_under_its_own_name(
    tmp_path: Path, standin_model: Path
) -> None:
    import httpx

    from radstream.settings import Settings
    from support.waiting import free_port, wait_until

    port = free_port()
    log = tmp_path / "model-serve.log"
    with open(log, "w") as sink:
        server = subprocess.Popen(
            [
                *(sys.executable, "-m", "radstream.cli", "model", "serve"),
                *("--port", str(port), "--model", str(standin_model), "--instances", "1"),
            ],
            env=_env(tmp_path / "data", None),
            stdout=sink,
            stderr=subprocess.STDOUT,
        )
        try:
            url = f"http://127.0.0.1:{port}/v2/models/densenet121-standin"

            def ready() -> bool:
                assert server.poll() is None, log.read_text()
                try:
                    return httpx.get(url, timeout=1).status_code == 200
                except httpx.HTTPError:
                    return False

            wait_until(ready, "the model server", timeout_s=60, interval_s=0.1)
            # The pipeline's default endpoint model is the name the server uses.
            assert httpx.get(url, timeout=5).json()["name"] == Settings().model.endpoint_model
        finally:
            server.terminate()
            server.wait(30)
    text = log.read_text()
    assert "serving densenet121-standin v1 (untrained stand-in)" in text
    assert "/v2/models/densenet121-standin" in text


@pytest.mark.slow
def test_settings_errors_name_key_and_line_and_config_show_says_where(tmp_path: Path) -> None:
    (tmp_path / "radstream.toml").write_text('worker = 1\n[engine]\nlease_s = "long"\n')
    bad = _cli("status", cwd=tmp_path, expect=2)
    assert bad.stderr.startswith("error CONFIG_INVALID: ")
    assert "unknown key worker (did you mean engine.workers?) at radstream.toml:1" in bad.stderr
    assert "engine.lease_s: " in bad.stderr and "'long'" in bad.stderr
    assert "at radstream.toml:3" in bad.stderr and "Traceback" not in bad.stderr
    (tmp_path / "radstream.toml").write_text("[engine]\nworkers = many\n")
    broken = _cli("status", cwd=tmp_path, expect=2)
    assert "not valid TOML" in broken.stderr and "line 2" in broken.stderr

    (tmp_path / "radstream.toml").write_text("[engine]\nlease_s = 7\n")
    proc = subprocess.run(
        [
            *(sys.executable, "-m", "radstream.cli", "config", "show", "--json"),
            *("--data-dir", str(tmp_path / "flagged")),
        ],
        env={**_env(None, None), "RADSTREAM_ENGINE__WORKERS": "3"},
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stderr
    rows = {r["key"]: r for r in json.loads(proc.stdout)}
    assert (rows["data_dir"]["origin"], rows["data_dir"]["where"]) == ("flag", "--data-dir")
    assert (rows["engine.workers"]["origin"], rows["engine.workers"]["value"]) == (
        "environment",
        "3",
    )
    assert rows["engine.lease_s"]["where"] == "radstream.toml:2"
    assert rows["engine.poll_s"]["origin"] == "default"
    table = _cli("config", "show", cwd=tmp_path)
    assert "file radstream.toml:2" in table.stdout

    reference = _cli("config", "reference", cwd=tmp_path).stdout
    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text(encoding="utf-8")
    assert reference in readme


@pytest.mark.slow
def test_dicom_as_hospitals_name_it(tmp_path: Path, standin_model: Path) -> None:
    uid = "1.2.840.113619.2.55.3.604688119.868.1234567890.1"
    rng = np.random.default_rng(5)
    dicom = make_study("x", "dicom", rng, width=600, height=700)
    folder = tmp_path / "pacs"
    folder.mkdir()
    (folder / "IM0001").write_bytes(dicom.image)  # no extension, as PACS exports name them
    sidecar = {"study_id": uid, "view": "pa", "timestamp": "20040826093000.5+0100"}
    (folder / "IM0001.json").write_text(json.dumps({**sidecar, "study_date": "20040826"}))
    (folder / "IM0002").write_bytes(dicom.image)
    bad = {**sidecar, "study_id": "1..2", "patient_id": 12345}
    (folder / "IM0002.json").write_text(json.dumps(bad))
    (folder / "IM0003").write_bytes(dicom.image)
    wrong = {**sidecar, "study_id": "s-3", "patient_birth_date": "secret-1901", "view": "SIDEWAYS"}
    (folder / "IM0003.json").write_text(json.dumps(wrong))
    # A DICOM file without a sidecar: its header is the sidecar.
    alone = make_study("y", "dicom", rng, width=600, height=700)
    (folder / "IM0004").write_bytes(alone.image)
    data = tmp_path / "data"

    up = _cli("upload", str(folder), "--no-wait", cwd=tmp_path, data_dir=data)
    assert "uploaded 4 studies" in up.stderr and "warning" not in up.stderr
    assert "DICOM without a sidecar → dicom/pacs/IM0004" in up.stderr
    _cli("run", "--until-idle", "--workers", "1", cwd=tmp_path, data_dir=data, model=standin_model)
    rows = json.loads(
        _cli("results", "list", "--format", "json", cwd=tmp_path, data_dir=data).stdout
    )
    by_study = {r["study_id"]: r for r in rows}
    ok = by_study[uid]
    assert (ok["outcome"], ok["image_id"]) == ("succeeded", "IM0001")
    import pydicom

    header = pydicom.dcmread(io.BytesIO(alone.image), stop_before_pixels=True)
    from_header = by_study[str(header.StudyInstanceUID).replace(".", "-")]
    assert from_header["outcome"] == "succeeded"
    assert from_header["image_id"] == str(header.SOPInstanceUID).replace(".", "-")

    failures = {
        r["error_code"]: _cli("results", "show", r["study_id"], cwd=tmp_path, data_dir=data).stdout
        for r in rows
        if r["outcome"] == "failed"
    }
    assert set(failures) == {"STUDY_ID_INVALID", "SIDECAR_INVALID_FIELD"}
    assert "'1..2'" in failures["STUDY_ID_INVALID"]  # the rejected value, shown
    assert "view" in failures["SIDECAR_INVALID_FIELD"]
    assert "'SIDEWAYS'" in failures["SIDECAR_INVALID_FIELD"]
    for text in failures.values():
        assert "12345" not in text and "secret-1901" not in text  # patient fields never shown


@pytest.mark.slow
def test_bench_keeps_its_synthetic_studies_apart(tmp_path: Path, standin_model: Path) -> None:
    data = tmp_path / "data"
    proc = _cli(
        *("bench", "--studies", "2", "--rate", "5", "--size", "600x700", "--warmup", "0"),
        *("--workers", "1", "--json"),
        cwd=tmp_path,
        data_dir=data,
        model=standin_model,
    )
    assert f"creating data directory {data / 'bench'}" in proc.stderr
    assert (data / "bench" / "engine.db").is_file()
    assert not (data / "engine.db").exists()  # the operational directory stays untouched
