"""`radstream bench` end to end on the real embedded pipeline (worker processes: slow)."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from radstream.bench.report_html import render_report_html
from radstream.bench.runner import BenchConfig, run_bench
from radstream.pipeline.definition import PIPELINE
from radstream.settings import Settings

# Starts processes (see tests/support/slow.py): `make test-fast` leaves this module out.
pytestmark = pytest.mark.slow

SMALL = {"width": 800, "height": 1000, "format": "jpeg"}
FIELDS = {
    "n",
    "p50_ms",
    "p90_ms",
    "p95_ms",
    "p99_ms",
    "p999_ms",
    "max_ms",
    "late_sends",
    "throughput_per_min",
    "success_rate",
    "cost_per_image_usd",
    "cost_items",
    "stages",
    "slo",
    "efficiency",
    "stable",
    "manifest",
}


def test_overload_shows_in_latency_not_hidden_by_late_sends(
    make_settings: Callable[..., Settings],
) -> None:
    """Coordinated omission: above capacity, latency from the intended send time must grow."""
    calm = run_bench(make_settings(), BenchConfig(studies=12, rate=2.0, warmup=2, **SMALL))
    flood = run_bench(make_settings(), BenchConfig(studies=60, rate=100.0, warmup=2, **SMALL))
    assert calm.success_rate == flood.success_rate == 1.0
    assert calm.p95_ms is not None and flood.p95_ms is not None
    # Latency counts from the intended send time, so a late send is inside it: a latency
    # measured from the actual send would be shorter than the lateness it hides.
    assert flood.max_ms is not None and flood.max_ms >= flood.late_sends.max_ms
    assert flood.p95_ms > calm.p95_ms
    flood_wait = flood.stages["queue_wait"].p95_ms
    assert flood.late_sends.count > 0 or (flood_wait is not None and flood_wait > 100)
    # The pipeline cannot finish 100/s on two cores; throughput reports what it did.
    assert flood.throughput_per_min is not None and flood.throughput_per_min < 100 * 60
    public = calm.json_object()
    assert public.keys() >= FIELDS and "series" not in public
    assert json.loads(json.dumps(public)) == public  # plain JSON
    assert list(calm.stages) == [*PIPELINE.names, "queue_wait"]
    assert calm.stages["infer"].n == 12
    assert len(calm.series.latencies_ms) == 12


def test_injected_invalid_studies_are_reported_apart(
    make_settings: Callable[..., Settings],
) -> None:
    report = run_bench(
        make_settings(image_wait_s=0.5),
        BenchConfig(studies=16, concurrency=4, warmup=0, invalid_ratio=0.25, **SMALL),
    )
    outcomes = report.outcomes
    assert outcomes.valid == 12 and outcomes.invalid_injected == 4
    assert outcomes.invalid_rejected == 4
    assert report.success_rate == 1.0  # the bad studies do not count against it
    assert report.load.mode == "closed"


def test_html_report_of_a_real_run_shows_the_pipeline_stages(
    make_settings: Callable[..., Settings],
) -> None:
    """The page is rendered from what run_bench returned, not from a hand-built report."""
    report = run_bench(
        make_settings(image_wait_s=0.5),
        BenchConfig(studies=4, concurrency=2, warmup=0, invalid_ratio=0.25, **SMALL),
    )
    text = render_report_html(report)

    table = text.split('<section id="stages">')[1].split("</section>")[0]
    shown = re.findall(r"<tr>\s*<td>([^<]*)</td>", table)
    # The main path for the valid studies, the failure stage for the invalid one, then the
    # wait: named and ordered as the pipeline declares them.
    assert shown == [*PIPELINE.names, PIPELINE.failure_stage, "queue wait"]
    assert set(report.stages) == {*PIPELINE.names, PIPELINE.failure_stage, "queue_wait"}
    assert report.stages["infer"].n == 3
    assert '<section class="verdict' in text and "Lambda compute" in text
    assert report.manifest.config_hash in text
    assert text.count("<svg ") == 4  # latency, stages, throughput and queue were all drawn


def _bench_cli(tmp_path: Path, model: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {
        **os.environ,
        "RADSTREAM_DATA_DIR": str(tmp_path / "data"),
        "RADSTREAM_MODEL__PATH": str(model),
    }
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "radstream.cli",
            "bench",
            "--size",
            "800x1000",
            "--warmup",
            "1",
            *args,
        ],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_cli_json_and_breached_slo_exit_status(tmp_path: Path, standin_model: Path) -> None:
    # Objectives no run can miss, and one no run can meet: the exit status follows the
    # verdicts, whatever this machine's speed (no wall-clock figure is asserted).
    met = ("--slo", "p95_ms=1e9", "--slo", "throughput_per_min=0", "--slo", "success_rate=-1")
    ok = _bench_cli(tmp_path, standin_model, "--studies", "6", "--rate", "5", "--json", *met)
    assert ok.returncode == 0, ok.stderr
    report = json.loads(ok.stdout)
    assert report.keys() >= FIELDS
    assert all(t["pass"] for t in report["slo"].values())
    breached = _bench_cli(
        tmp_path, standin_model, "--studies", "4", "--rate", "5", "--json", "--slo", "p95_ms=1"
    )
    assert breached.returncode == 1
    slo = json.loads(breached.stdout)["slo"]
    assert slo["p95_ms"]["pass"] is False and slo["p95_ms"]["limit"] == 1.0


def test_upload_synthetic_then_run(tmp_path: Path, standin_model: Path) -> None:
    env = {
        **os.environ,
        "RADSTREAM_DATA_DIR": str(tmp_path / "data"),
        "RADSTREAM_MODEL__PATH": str(standin_model),
    }

    def cli(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "radstream.cli", *args],
            env=env,
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=300,
        )

    up = cli(
        "upload",
        "--synthetic",
        "5",
        "--format",
        "mix",
        "--size",
        "700x800",
        "--rate",
        "20",
        "--no-wait",
    )
    assert up.returncode == 0, up.stderr
    assert "uploaded 5 studies" in up.stderr
    assert cli("run", "--until-idle").returncode == 0
    assert json.loads(cli("status", "--json").stdout)["succeeded"] == 5
