"""``radstream bench``: drive a load through the embedded pipeline and measure it honestly.

The benchmark talks to the pipeline only through its public surfaces: it uploads studies,
learns of outcomes from the engine's own "object created" events for result and failure
objects, and reads stage timings from the telemetry lake.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from radstream.bench.completions import CompletionWatcher
from radstream.bench.cost import CostInputs, estimate_cost
from radstream.bench.limit import measure_limit
from radstream.bench.manifest import build_manifest
from radstream.bench.pricing import load_pricing
from radstream.bench.slo import targets_with, verdict
from radstream.bench.stats import (
    late_sends,
    latency_ms,
    latency_summary,
    outcome_counts,
    steady_throughput,
    timeline_series,
)
from radstream.errors import ConfigInvalid
from radstream.lake.parquet_sink import read_lake
from radstream.loadgen.driver import DriveResult, LoadDriver, Sent
from radstream.loadgen.shapes import constant, parse_shape, poisson, read_trace
from radstream.loadgen.study import Study
from radstream.loadgen.synthetic import make_studies
from radstream.loadgen.uploader import upload_generated
from radstream.local.engine import LocalEngine
from radstream.local.executor import execution_id
from radstream.local.pool import WorkerPool
from radstream.model import read_model_info
from radstream.model.loading import resolve_model_path
from radstream.settings import Settings
from radstream.stages.ports import ObjectInfo

FORMAT_MIXES: dict[str, tuple[str, ...]] = {
    "mix": ("png", "png16", "jpeg", "dicom"),
    "png": ("png",),
    "png16": ("png16",),
    "jpeg": ("jpeg",),
    "dicom": ("dicom",),
}

Progress = Callable[[str, int, int], None]


@dataclass(frozen=True)
class BenchConfig:
    """What to send, how fast, and what to compare against."""

    studies: int = 60
    rate: float | None = None
    concurrency: int | None = None
    poisson: bool = False
    shape: str | None = None
    trace: Path | None = None
    format: str = "jpeg"
    width: int = 2000
    height: int = 2500
    invalid_ratio: float = 0.0
    warmup: int = 4
    seed: int = 1
    baseline: bool = False
    slo: list[str] = field(default_factory=list)
    model_backend: str = "lambda"
    endpoint_hourly_usd: float | None = None
    timeout_s: float = 900.0

    def validate(self) -> None:
        """Refuse contradictory or empty load settings."""
        modes = [
            self.rate is not None,
            self.concurrency is not None,
            self.shape is not None,
            self.trace is not None,
        ]
        if sum(modes) != 1:
            raise ConfigInvalid("give exactly one of --rate, --concurrency, --shape or --trace")
        if self.format not in FORMAT_MIXES:
            raise ConfigInvalid(f"--format must be one of {', '.join(FORMAT_MIXES)}")
        if not 0.0 <= self.invalid_ratio < 1.0:
            raise ConfigInvalid("--invalid-ratio must be in [0, 1)")
        if self.studies < 2:
            raise ConfigInvalid("--studies must be at least 2")
        if self.model_backend not in ("lambda", "endpoint"):
            raise ConfigInvalid("--model-backend must be lambda or endpoint")


def generate(cfg: BenchConfig, run_tag: str) -> tuple[list[Study], list[Study]]:
    """Warm-up and measured studies, made before any clock starts."""
    rng = np.random.default_rng(cfg.seed)
    formats = FORMAT_MIXES[cfg.format]
    invalid = round(cfg.invalid_ratio * cfg.studies)
    warm = (
        make_studies(cfg.warmup, 0, formats=formats, rng=rng, width=cfg.width, height=cfg.height)
        if cfg.warmup
        else []
    )
    measured = make_studies(
        cfg.studies, invalid, formats=formats, rng=rng, width=cfg.width, height=cfg.height
    )
    # Run-unique ids: a repeated benchmark in one data dir never collides with an old one.
    return (
        [s.renamed(f"{run_tag}-w-{s.study_id}") for s in warm],
        [s.renamed(f"{run_tag}-m-{s.study_id}") for s in measured],
    )


def schedule(cfg: BenchConfig, n: int) -> list[float]:
    """Open-loop send offsets for ``n`` studies."""
    if cfg.trace is not None:
        offsets = read_trace(cfg.trace, n)
        if len(offsets) < n:
            raise ConfigInvalid(f"trace {cfg.trace} has {len(offsets)} sends; {n} are needed")
        return offsets
    if cfg.shape is not None:
        return parse_shape(cfg.shape, n)
    assert cfg.rate is not None
    if cfg.poisson:
        return poisson(cfg.rate, n, np.random.default_rng(cfg.seed + 1))
    return constant(cfg.rate, n)


def run_bench(
    settings: Settings, cfg: BenchConfig, progress: Progress | None = None
) -> dict[str, Any]:
    """Run the benchmark and return its report (the ``--json`` object plus raw series)."""
    cfg.validate()
    report_progress = progress or (lambda _phase, _done, _total: None)
    pricing = load_pricing(settings.cost.pricing)
    targets = targets_with(cfg.slo)
    model_path = resolve_model_path(settings)
    info = read_model_info(model_path)
    tag = uuid.uuid4().hex[:6]
    report_progress("generate", 0, cfg.warmup + cfg.studies)
    warm, measured = generate(cfg, tag)
    studies = [*warm, *measured]
    report_progress("generate", len(studies), len(studies))

    uploads: dict[str, ObjectInfo] = {}
    with LocalEngine.open(settings) as engine, WorkerPool(settings) as pool:
        pool.wait_ready(engine.executor)
        watcher = CompletionWatcher(engine.conn)

        def send(study: Study) -> str:
            info = upload_generated(engine.store, study)
            uploads[info.key] = info
            pool.supervise()
            return info.key

        driver = LoadDriver(send, watcher, progress=lambda d, t: report_progress("run", d, t))
        if cfg.concurrency is not None:
            run = driver.closed_loop(
                studies, cfg.concurrency, warmup=len(warm), timeout_s=cfg.timeout_s
            )
        else:
            run = driver.open_loop(
                studies, schedule(cfg, len(studies)), warmup=len(warm), timeout_s=cfg.timeout_s
            )
        _drop_vanished(run, engine)
    # The pool has stopped: every worker has flushed its telemetry into the lake.
    measured_sent = [s for s in run.sent if not s.warmup]
    report = _report(settings, cfg, run, measured_sent, uploads, measured, pricing, targets, info)
    if cfg.baseline:
        report_progress("baseline", 0, 1)
        valid = [(s.image_name, s.image) for s in measured if s.expected_code is None]
        limit = measure_limit(model_path, valid, settings.engine.workers)
        throughput = report["throughput_per_min"]
        report["baseline"] = {
            "images_per_s": round(limit.images_per_s, 3),
            "ms_per_image": round(limit.ms_per_image, 2),
        }
        report["efficiency"] = (
            round(throughput / 60.0 / limit.images_per_s, 3) if throughput else None
        )
        if not report["saturated"]:
            report["efficiency_note"] = (
                "the load did not keep every worker busy, so efficiency measures the load, "
                "not the pipeline; use --concurrency >= 2x workers or a rate above capacity"
            )
        report_progress("baseline", 1, 1)
    return report


def _drop_vanished(run: DriveResult, engine: LocalEngine) -> None:
    # An outcome counts only if its object still exists when the run ends.
    for key, completion in list(run.completions.items()):
        folder, name = key.split("/")[1], key.split("/")[2]
        prefix = "results" if completion.kind == "result" else "failed"
        if not engine.store.exists("results", f"{prefix}/{folder}/{name}"):
            del run.completions[key]


def _report(
    settings: Settings,
    cfg: BenchConfig,
    run: DriveResult,
    measured: list[Sent],
    uploads: dict[str, ObjectInfo],
    studies: list[Study],
    pricing: Any,
    targets: Any,
    info: Any,
) -> dict[str, Any]:
    valid = [s for s in measured if s.expected_code is None]
    latencies, censored = latency_ms(run, valid)
    throughput = steady_throughput(run, valid)
    planned_invalid = sum(1 for s in studies if s.expected_code is not None)
    outcomes = outcome_counts(
        run, measured, planned_valid=len(studies) - planned_invalid, planned_invalid=planned_invalid
    )
    stages, stage_series, billed_ms, records = _stages(settings, measured, uploads)
    aws = settings.cost
    cost = estimate_cost(
        CostInputs(
            executions=len(measured),
            succeeded=outcomes["succeeded"],
            # Every attempt is billed, retries and errors included; queue wait is not.
            stage_ms=billed_ms,
            telemetry_records=records,
            image_bytes_mean=float(np.mean([len(s.image) for s in studies])) if studies else 0.0,
            lambda_memory_mb=aws.memory_mb,
            architecture=aws.architecture,
            storage_class=aws.storage_class,
            state_machine=aws.state_machine,
            model_backend=cfg.model_backend,  # type: ignore[arg-type]
            endpoint_hourly_usd=cfg.endpoint_hourly_usd,
            throughput_per_s=throughput.per_min / 60.0 if throughput.per_min else None,
        ),
        pricing,
    )
    summary = latency_summary(latencies)
    values = {
        "p95_ms": summary["p95_ms"],
        "throughput_per_min": throughput.per_min,
        "cost_per_image_usd": cost.per_image_usd,
        "success_rate": outcomes["success_rate"],
    }
    config = {k: (str(v) if isinstance(v, Path) else v) for k, v in asdict(cfg).items()}
    config["workers"] = settings.engine.workers
    in_flight = [sent - done for _, sent, done in run.timeline]
    return {
        "n": len(valid),
        "n_without_outcome": censored,
        **summary,
        "late_sends": late_sends(measured),
        "queue_wait_ms": stages.get("queue_wait", {}).get("p95_ms"),
        "throughput_per_min": throughput.per_min,
        "stable": throughput.stable,
        "success_rate": outcomes["success_rate"],
        "outcomes": outcomes,
        "invalid_injected": outcomes["invalid_injected"],
        "cost_per_image_usd": cost.per_image_usd,
        "cost_items": [asdict(item) for item in cost.items],
        "cost": cost.to_dict(),
        "stages": stages,
        "slo": verdict(values, targets),
        "efficiency": None,
        # Efficiency means something only if the pipeline was kept busy.
        "saturated": bool(in_flight) and float(np.median(in_flight)) >= settings.engine.workers,
        "timed_out": run.timed_out,
        "load": {
            "mode": "closed" if cfg.concurrency is not None else "open",
            "rate": cfg.rate,
            "poisson": cfg.poisson,
            "concurrency": cfg.concurrency,
            "shape": cfg.shape or (str(cfg.trace) if cfg.trace else None),
            "format": cfg.format,
            "warmup": cfg.warmup,
        },
        "manifest": build_manifest(
            config, {"name": info.name, "version": info.version, "sha256": info.sha256}
        ),
        "series": {
            "latencies_ms": [round(v, 3) for v in latencies],
            "stage_ms": {k: [round(v, 3) for v in vs] for k, vs in stage_series.items()},
            "timeline": timeline_series(run),
            "throughput_windows": throughput.windows,
        },
    }


def _stages(
    settings: Settings, measured: list[Sent], uploads: dict[str, ObjectInfo]
) -> tuple[
    dict[str, dict[str, float | int | None]], dict[str, list[float]], dict[str, list[float]], int
]:
    """From the telemetry lake: per-stage p50/p95 of successful attempts and queue wait,
    their raw series, the durations of every attempt (for billing), and the row count."""
    wanted = {
        execution_id(i.bucket, i.key, i.etag) for s in measured if (i := uploads.get(s.sidecar_key))
    }
    table = read_lake(settings.lake_dir)
    ids = table.column("execution_id").to_pylist()
    keep = [i for i, eid in enumerate(ids) if eid in wanted]
    rows = table.take(keep).to_pylist()
    series: dict[str, list[float]] = {}
    billed: dict[str, list[float]] = {}
    waits: list[float] = []
    for row in rows:
        billed.setdefault(row["stage"], []).append(row["duration_ms"])
        if row["status"] == "ok":
            series.setdefault(row["stage"], []).append(row["duration_ms"])
        if row["queue_wait_ms"] is not None:
            waits.append(row["queue_wait_ms"])
    series["queue_wait"] = waits
    summary: dict[str, dict[str, float | int | None]] = {}
    for name, values in series.items():
        summary[name] = {
            "n": len(values),
            "p50_ms": round(float(np.percentile(values, 50)), 3) if values else None,
            "p95_ms": round(float(np.percentile(values, 95)), 3) if values else None,
        }
    return summary, series, billed, len(rows)
