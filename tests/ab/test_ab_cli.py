"""``radstream ab``: the command, and real experiments on the embedded pipeline.

The real runs are slow (worker processes) and kept small: an A/A run must not call a
difference, and one worker against two on a CPU-bound closed loop must find that two have
the higher throughput, with an interval that excludes 1. Neither asserts a wall-clock figure.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from radstream.cli import app

JSON_KEYS = {"experiment", "arms", "blocks", "order", "metrics", "srm", "projected", "manifest"}
METRIC_KEYS = {"a", "b", "diff", "ratio", "ci95", "p_value", "verdict"}


def ab_cli(tmp_path: Path, model: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "RADSTREAM_MODEL__PATH": str(model)}
    return subprocess.run(
        [sys.executable, "-m", "radstream.cli", "ab", "run", "--data-dir", str(tmp_path), *args],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
    )


def metrics(data: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {m["metric"]: m for m in data["metrics"]}


def test_scenarios_lists_the_four_and_says_where_they_run() -> None:
    result = CliRunner().invoke(app, ["ab", "scenarios", "--json"])
    assert result.exit_code == 0, result.output
    rows = {r["name"]: r for r in json.loads(result.stdout)}
    assert set(rows) == {"batch-size", "autoscaling", "lambda-memory", "storage-class"}
    assert rows["batch-size"]["mode"] == rows["autoscaling"]["mode"] == "real"
    assert rows["lambda-memory"]["mode"] == rows["storage-class"]["mode"] == "projected"
    assert list(rows["lambda-memory"]["arms"]) == ["512MB", "1024MB", "1769MB", "3008MB"]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--a", "engine.wokers=1", "--b", "engine.workers=2"], "SETTING_UNKNOWN"),
        (["--a", "engine.workers=0", "--b", "engine.workers=2"], "CONFIG_INVALID"),
    ],
)
def test_a_run_that_cannot_start_exits_2_and_says_why(
    tmp_path: Path, args: list[str], message: str
) -> None:
    result = CliRunner().invoke(app, ["ab", "run", "--data-dir", str(tmp_path), *args])
    assert result.exit_code == 2, result.output
    assert message in result.output


def test_scenario_and_arms_together_are_a_usage_error(tmp_path: Path) -> None:
    result = CliRunner().invoke(
        app, ["ab", "run", "batch-size", "--a", "engine.workers=1", "--data-dir", str(tmp_path)]
    )
    assert result.exit_code == 2
    result = CliRunner().invoke(app, ["ab", "run", "nope", "--data-dir", str(tmp_path)])
    assert result.exit_code == 2
    assert "unknown scenario" in result.output


@pytest.mark.slow  # worker processes
def test_real_a_a_run_calls_no_latency_difference(tmp_path: Path, standin_model: Path) -> None:
    # One real run of a 95% procedure calls an A/A difference 5% of the time by design, per
    # metric (its calibration is proven on 200 simulated runs in test_ab_calibration.py); a
    # suite that must pass every time checks the real run at 99% (and that --level is used).
    done = ab_cli(
        tmp_path,
        standin_model,
        *("--a", "engine.workers=1", "--b", "engine.workers=1", "--level", "0.99"),
        *("--studies", "8", "--blocks", "4", "--warmup", "1"),
        *("--size", "256x320", "--concurrency", "2", "--json"),
        *("--report", str(tmp_path / "ab.html")),
    )
    assert done.returncode == 0, done.stderr[-3000:]
    data = json.loads(done.stdout)
    assert set(data) >= JSON_KEYS
    assert all(set(m) >= METRIC_KEYS for m in data["metrics"])
    assert data["arms"] == {"a": {"engine.workers": "1"}, "b": {"engine.workers": "1"}}
    assert data["order"] == ["a", "b", "b", "a"] * 2
    assert data["projected"] == []
    assert not data["srm"]["mismatch"]
    for name in ("p50_ms", "p95_ms"):
        assert metrics(data)[name]["ci_level"] == 0.99
        assert metrics(data)[name]["verdict"] in ("same", "inconclusive"), metrics(data)[name]
    # Every block wrote its telemetry under the experiment's own data directory, by arm.
    exp_dir = Path(data["manifest"]["data_dir"])
    assert exp_dir.parent == tmp_path / "ab"
    assert any((exp_dir / "lake").rglob("*.parquet"))
    assert (tmp_path / "ab.html").read_text("utf-8").count("<svg ") == 3


BUSY_LOAD = 3.0
"""A load average above which another job shares the two cores this test compares."""


@pytest.mark.slow  # worker processes
def test_two_workers_beat_one_on_a_cpu_bound_closed_loop(
    tmp_path: Path, standin_model: Path
) -> None:
    def run(attempt: int) -> dict[str, Any]:
        (tmp_path / str(attempt)).mkdir()
        done = ab_cli(
            tmp_path / str(attempt),
            standin_model,
            *("--a", "engine.workers=1", "--b", "engine.workers=2"),
            # Eight rounds of 16 studies: on a shared machine another job may take the
            # second core for a round or two, and five rounds then leave the interval wide.
            *("--studies", "16", "--blocks", "8", "--warmup", "2"),
            *("--size", "256x320", "--concurrency", "4", "--json", "--seed", str(attempt)),
        )
        assert done.returncode == 0, done.stderr[-3000:]
        data: dict[str, Any] = json.loads(done.stdout)
        return data

    # As the verdict itself advises, an inconclusive run gets more data: one more run.
    # On a shared machine another job can hold the second core for whole blocks (two
    # workers then run no faster than one), and the analysis rightly calls that run
    # inconclusive; when that lasts through both runs this test fails, saying so with the
    # per-block throughputs. A wrong winner fails at once.
    for attempt in (1, 2):
        data = run(attempt)
        throughput = metrics(data)["throughput_per_min"]
        if throughput["verdict"] != "inconclusive":
            break
    blocks = [(b["arm"], b["throughput_per_min"]) for b in data["manifest"]["block_log"]]
    assert throughput["verdict"] != "a_better", (throughput, blocks)  # never the wrong winner
    load = os.getloadavg()[0]
    if throughput["verdict"] == "inconclusive" and load > BUSY_LOAD:
        # The test's own load is about two busy processes; more means other jobs held the
        # second core, and then one worker and two are rightly indistinguishable.
        pytest.skip(f"machine busy (load average {load:.1f} on {os.cpu_count()} cores): {blocks}")
    assert throughput["verdict"] == "b_better", (throughput, blocks)
    assert throughput["ci95"]["ratio"]["low"] > 1.0


@pytest.mark.slow  # worker processes and a model server per block
def test_a_model_server_arm_serves_every_study(tmp_path: Path, standin_model: Path) -> None:
    # Batch size and autoscaling run through a model server started for the arm's block; its
    # workers must ask it for the model it serves (once they asked for another name: 404).
    done = ab_cli(
        tmp_path,
        standin_model,
        *("--a", "serve.max_batch_size=1", "--b", "serve.max_batch_size=4"),
        *("--studies", "3", "--blocks", "2", "--warmup", "0"),
        *("--size", "256x320", "--concurrency", "2", "--json"),
    )
    assert done.returncode == 0, done.stderr[-3000:]
    success = metrics(json.loads(done.stdout))["success_rate"]
    assert (success["a"], success["b"]) == (1.0, 1.0), success
