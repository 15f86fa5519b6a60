"""`radstream query` and `radstream lake` as a user runs them."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import sqlglot

from radstream.lake.queries import named_queries

# Starts processes (see tests/support/slow.py): `make test-fast` leaves this module out.
pytestmark = pytest.mark.slow


def _cli(*args: str, data_dir: Path, check: bool = True) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "RADSTREAM_DATA_DIR": str(data_dir)}
    proc = subprocess.run(
        [sys.executable, "-m", "radstream.cli", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        cwd=data_dir,
    )
    if check:
        assert proc.returncode == 0, proc.stderr
    return proc


@pytest.mark.slow  # demo_lake runs the demo's workers
def test_query_list_json_csv_and_errors(demo_lake: Path) -> None:
    data_dir = demo_lake.parent.parent
    listing = _cli("query", "--list", data_dir=data_dir).stdout
    for name in named_queries():
        assert name in listing
    [rate] = json.loads(_cli("query", "success_rate", "--format", "json", data_dir=data_dir).stdout)
    assert (rate["succeeded"], rate["failed"]) == (9, 5)
    csv_out = _cli(
        "query",
        "--sql",
        "SELECT count(*) AS n FROM radstream.telemetry",
        "--format",
        "csv",
        data_dir=data_dir,
    ).stdout.splitlines()
    assert csv_out[0] == "n" and int(csv_out[1]) > 0
    bad = _cli(
        "query", "stage_latency", "--param", "start_date=soon", data_dir=data_dir, check=False
    )
    assert bad.returncode == 2 and bad.stderr.startswith("error QUERY_PARAM_INVALID: ")
    assert "start_date" in bad.stderr and "Traceback" not in bad.stderr
    unknown = _cli("query", "nope", data_dir=data_dir, check=False)
    assert unknown.returncode == 2 and "QUERY_UNKNOWN" in unknown.stderr


def test_glue_schema_command(tmp_path: Path) -> None:
    doc = json.loads(_cli("lake", "glue-schema", data_dir=tmp_path).stdout)
    assert doc["DatabaseName"] == "radstream"
    assert doc["TableInput"]["Name"] == "telemetry"
    ddl = _cli(
        "lake", "glue-schema", "--format", "ddl", "--location", "s3://b/t/", data_dir=tmp_path
    ).stdout
    sqlglot.parse_one(ddl.rstrip().rstrip(";"), read="athena")
    assert "LOCATION 's3://b/t/'" in ddl


def test_compact_and_prune_commands_on_an_empty_lake(tmp_path: Path) -> None:
    assert "0 partitions" in _cli("lake", "compact", data_dir=tmp_path).stdout
    assert "removed 0" in _cli("lake", "prune", "--older-than", "30d", data_dir=tmp_path).stdout
    soon = _cli("lake", "prune", "--older-than", "soon", data_dir=tmp_path, check=False)
    assert soon.returncode == 2 and "30d" in soon.stderr  # a usage error, as Click reports it
