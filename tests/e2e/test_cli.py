"""The `radstream` command as a user runs it: real subprocesses, a temporary data dir."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from radstream.cli import app
from radstream.loadgen.synthetic import make_study
from radstream.local.engine import LocalEngine

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


@pytest.mark.slow
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


@pytest.mark.slow
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

    (folder / "new\nline.png").write_bytes(good.image)  # an unusable name: the rest goes on
    (folder / "link.png").symlink_to(folder / "orphan.png")  # not followed
    up = _cli("upload", str(folder), "--no-wait", data_dir=data, check=False)
    assert "uploaded 2 studies" in up.stderr
    # Every file left out is listed, one line each, and the exit status says so.
    assert "skipped" in up.stderr and "orphan.png: no sidecar" in up.stderr
    assert "new\\nline.png" in up.stderr and "link.png: a symbolic link" in up.stderr
    assert "3 file(s) skipped, refused or ambiguous" in up.stderr
    assert up.returncode == 1, up.stderr
    _cli("run", "--until-idle", "--workers", "1", data_dir=data, model=standin_model)
    status = json.loads(_cli("status", "--json", data_dir=data).stdout)
    assert status == {"pending": 0, "running": 0, "succeeded": 1, "failed": 1}
    results = data / "buckets" / "results"
    assert (results / "results" / "file-ok" / "FILE-OK.json").is_file()
    # The unparseable sidecar was uploaded under its file stem and failed with its code.
    failure = json.loads((results / "failed" / "broken" / "broken.json").read_text())
    assert failure["error"]["code"] == "SIDECAR_INVALID_JSON"


@pytest.mark.slow
def test_upload_refuses_a_second_image_under_one_study_and_name(tmp_path: Path) -> None:
    rng = np.random.default_rng(9)
    first = make_study("same", "png", rng, width=300, height=300)
    second = make_study("same", "png", rng, width=300, height=300)
    for folder, study in (("a", first), ("b", second)):
        (tmp_path / folder).mkdir()
        (tmp_path / folder / "x.png").write_bytes(study.image)
        (tmp_path / folder / "x.json").write_bytes(study.sidecar)
    data = tmp_path / "data"
    up = _cli(
        "upload", str(tmp_path / "a"), str(tmp_path / "b"), "--no-wait", data_dir=data, check=False
    )
    assert up.returncode == 1, up.stderr
    assert "uploaded 1 studies" in up.stderr
    assert "STUDY_CONFLICT" in up.stderr and "b/x.json" in up.stderr
    stored = data / "buckets" / "images" / "incoming" / "same" / "x.png"
    assert stored.read_bytes() == first.image  # never overwritten
    assert oct(stored.stat().st_mode & 0o777) == oct(0o600)


def test_settings_file_is_read(tmp_path: Path) -> None:
    data = tmp_path / "from-toml"
    (tmp_path / "radstream.toml").write_text(f'data_dir = "{data}"\n[engine]\nworkers = 1\n')
    env = {k: v for k, v in os.environ.items() if not k.startswith("RADSTREAM_")}
    proc = subprocess.run(
        [sys.executable, "-m", "radstream.cli", "upload", "--synthetic=1", "--no-wait"],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stderr
    assert (data / "engine.db").is_file()
    assert f"creating data directory {data}" in proc.stderr
    assert "uploaded 1 studies" in proc.stderr


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


def _bare_env() -> dict[str, str]:
    """The environment without RADSTREAM_* variables: only the settings file counts."""
    return {k: v for k, v in os.environ.items() if not k.startswith("RADSTREAM_")}


def test_invalid_settings_print_one_message_with_code_and_hint(tmp_path: Path) -> None:
    (tmp_path / "radstream.toml").write_text('[engine]\nworkers = "many"\n')

    def status(*options: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "radstream.cli", *options, "status", "--json"],
            env=_bare_env(),
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=60,
        )

    plain = status()
    assert plain.returncode == 2, plain.stderr
    assert plain.stdout == ""
    lines = plain.stderr.strip().splitlines()
    assert lines[0].startswith("error CONFIG_INVALID: ") and "engine.workers" in lines[0]
    assert "'many'" in lines[0]
    assert len(lines) == 2 and "radstream.toml" in lines[1]  # the hint, and nothing else
    assert "Traceback" not in plain.stderr

    debug = status("--debug")
    assert debug.returncode == 2, debug.stderr
    assert "Traceback (most recent call last)" in debug.stderr
    assert "ValidationError" in debug.stderr
    assert debug.stderr.count("error CONFIG_INVALID: ") == 1


def test_an_unexpected_error_is_internal_error_without_traceback(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    def broken(*_args: object, **_kwargs: object) -> LocalEngine:
        raise KeyError("a bug")

    monkeypatch.setenv("RADSTREAM_DATA_DIR", str(tmp_path))
    (tmp_path / "engine.db").touch()  # status reads an existing data directory only
    monkeypatch.setattr(LocalEngine, "open", broken)
    plain = CliRunner().invoke(app, ["status"])
    assert plain.exit_code == 3
    assert "error INTERNAL_ERROR: unexpected KeyError: 'a bug'" in plain.output
    assert "--debug" in plain.output  # the hint says how to see more
    assert "Traceback" not in plain.output
    debug = CliRunner().invoke(app, ["--debug", "status"])
    assert debug.exit_code == 3
    assert "Traceback (most recent call last)" in debug.output
    assert "in broken" in debug.output


def test_aws_credential_and_connection_errors_get_a_code_and_hint() -> None:
    from botocore.exceptions import EndpointConnectionError, NoCredentialsError

    from radstream.cli.handler import EXIT_ERROR, problem_of

    missing = problem_of(NoCredentialsError())
    assert (missing.code, missing.exit_code) == ("CONFIG_INVALID", EXIT_ERROR)
    assert "credentials" in missing.message and "AWS_PROFILE" in missing.hint
    away = problem_of(EndpointConnectionError(endpoint_url="http://127.0.0.1:9"))
    assert (away.code, away.exit_code) == ("CONFIG_INVALID", EXIT_ERROR)
    assert "http://127.0.0.1:9" in away.message and "--endpoint-url" in away.hint


def test_a_radstream_error_keeps_its_code_and_exit_status(tmp_path: Path) -> None:
    proc = _cli("query", "nope", data_dir=tmp_path, check=False)
    assert proc.returncode == 2
    assert proc.stderr.startswith("error QUERY_UNKNOWN: ")
    assert "Traceback" not in proc.stderr


@pytest.mark.slow
def test_run_logs_json_lines(tmp_path: Path, standin_model: Path) -> None:
    data = tmp_path / "data"
    _cli("upload", "--synthetic", "2", "--size", "600x700", "--no-wait", data_dir=data)
    proc = _cli(
        "--log-format",
        "json",
        "--log-level",
        "info",
        "run",
        "--until-idle",
        "--workers",
        "1",
        data_dir=data,
        model=standin_model,
    )
    records = [json.loads(line) for line in proc.stderr.splitlines() if line.startswith("{")]
    messages = [r["msg"] for r in records]
    assert "workers started" in messages and "workers stopped" in messages
    for record in records:
        assert record["logger"].startswith("radstream") and record["level"] and record["ts"]
    stopped = next(r for r in records if r["msg"] == "workers stopped")
    assert stopped["exit_codes"] == [0]
    status = json.loads(_cli("status", "--json", data_dir=data).stdout)
    assert status["succeeded"] == 2

    text = _cli("--log-format", "text", "run", "--until-idle", data_dir=data, model=standin_model)
    assert "workers started" in text.stderr
    assert not [line for line in text.stderr.splitlines() if line.startswith("{")]


def test_deploy_without_credentials_says_so_before_building_anything(tmp_path: Path) -> None:
    env = {
        k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "RADSTREAM_"))
    } | {
        "AWS_SHARED_CREDENTIALS_FILE": str(tmp_path / "none"),
        "AWS_CONFIG_FILE": str(tmp_path / "none"),
        "AWS_EC2_METADATA_DISABLED": "true",
        "RADSTREAM_DATA_DIR": str(tmp_path / "data"),
    }
    package = tmp_path / "package"
    proc = subprocess.run(
        [sys.executable, "-m", "radstream.cli", "aws", "deploy", "--stack", "rs-nocreds", "--region", "eu-west-1", "--package", str(package)],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 2, proc.stderr
    assert "credentials" in proc.stderr and "Traceback" not in proc.stderr
    assert "building the Lambda package" not in proc.stderr
    assert not package.exists()  # nothing was built
