"""The `radstream` command as a user runs it: real subprocesses, a temporary data dir."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from radstream.loadgen.synthetic import make_study

# Starts processes (see tests/support/slow.py): `make test-fast` leaves this module out.
pytestmark = pytest.mark.slow


def _cli(
    *args: str,
    data_dir: Path,
    model: Path | None = None,
    check: bool = True,
    cwd: Path | None = None,
) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "RADSTREAM_DATA_DIR": str(data_dir)}
    if model is not None:
        env["RADSTREAM_MODEL__PATH"] = str(model)
    proc = subprocess.run(
        [sys.executable, "-m", "radstream.cli", *args],
        env=env,
        cwd=cwd or data_dir.parent,
        capture_output=True,
        text=True,
        timeout=300,
    )
    if check:
        assert proc.returncode == 0, proc.stderr + proc.stdout
    return proc


def test_demo_json_reports_every_outcome(tmp_path: Path, standin_model: Path) -> None:
    proc = _cli(
        "demo",
        "--studies",
        "14",
        "--invalid",
        "6",
        "--json",
        "--image-wait",
        "1",
        data_dir=tmp_path / "data",
        model=standin_model,
    )
    report = json.loads(proc.stdout)
    assert (report["studies"], report["succeeded"], report["failed"], report["lost"]) == (
        14,
        8,
        6,
        0,
    )
    assert sum(report["failures_by_code"].values()) == 6
    assert len(report["failures_by_code"]) == 6  # six different kinds of bad study
    assert report["unexpected_outcomes"] == []
    for key in ("p50_ms", "p95_ms", "p99_ms", "throughput_per_s"):
        assert report[key] > 0
    assert report["p50_ms"] <= report["p95_ms"] <= report["p99_ms"]


def test_upload_run_status_from_files(tmp_path: Path, standin_model: Path) -> None:
    folder = tmp_path / "incoming"
    folder.mkdir()
    rng = np.random.default_rng(8)
    good = make_study("file-ok", "jpeg", rng, width=600, height=700)
    (folder / good.image_name.upper()).write_bytes(good.image)  # FILE-OK.JPG: case kept
    (folder / "FILE-OK.json").write_bytes(good.sidecar)
    (folder / "broken.png").write_bytes(good.image)
    (folder / "broken.json").write_bytes(b"{not json")
    (folder / "orphan.png").write_bytes(good.image)  # no sidecar: skipped with a warning
    data = tmp_path / "data"

    up = _cli("upload", str(folder), "--no-wait", data_dir=data)
    assert "uploaded 2 studies" in up.stderr
    assert "orphan.png" in up.stderr
    _cli("run", "--until-idle", "--workers", "1", data_dir=data, model=standin_model)
    status = json.loads(_cli("status", "--json", data_dir=data).stdout)
    assert status == {"pending": 0, "running": 0, "succeeded": 1, "failed": 1}
    results = data / "buckets" / "results"
    assert (results / "results" / "file-ok" / "FILE-OK.json").is_file()
    # The unparseable sidecar was uploaded under its file stem and failed with its code.
    failure = json.loads((results / "failed" / "broken" / "broken.json").read_text())
    assert failure["error"]["code"] == "SIDECAR_INVALID_JSON"


def test_settings_file_is_read(tmp_path: Path) -> None:
    data = tmp_path / "from-toml"
    (tmp_path / "radstream.toml").write_text(f'data_dir = "{data}"\n[engine]\nworkers = 1\n')
    env = {k: v for k, v in os.environ.items() if not k.startswith("RADSTREAM_")}
    proc = subprocess.run(
        [sys.executable, "-m", "radstream.cli", "status", "--json"],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stderr
    assert (data / "engine.db").is_file()


def test_schema_command_prints_json_schema(tmp_path: Path) -> None:
    for name, field in (
        ("sidecar", "study_id"),
        ("result", "probabilities"),
        ("telemetry", "duration_ms"),
        ("failure", "error"),
    ):
        schema = json.loads(_cli("schema", name, data_dir=tmp_path / "d").stdout)
        assert field in schema["properties"]
    telemetry = json.loads(_cli("schema", "telemetry", data_dir=tmp_path / "d").stdout)
    assert not [p for p in telemetry["properties"] if "patient" in p]
    bad = _cli("schema", "nope", data_dir=tmp_path / "d", check=False)
    assert bad.returncode != 0


def test_model_build_and_info(tmp_path: Path) -> None:
    data = tmp_path / "data"
    _cli("model", "build", data_dir=data)
    info = json.loads(_cli("model", "info", data_dir=data).stdout)
    assert info["name"] == "densenet121-standin"
    assert info["input_range"] == [-1024.0, 1024.0]
    assert len(info["labels"]) == 18
    missing = _cli(
        "model", "info", "--model", str(tmp_path / "nope.onnx"), data_dir=data, check=False
    )
    assert missing.returncode == 2
    assert "MODEL_FILE_INVALID" in missing.stderr
