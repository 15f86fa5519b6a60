"""``radstream bench``: drive a load through the pipeline and measure it honestly.

The benchmark talks to the pipeline only through its public surfaces: it uploads studies,
learns of outcomes from the result and failure objects, and reads stage timings from the
telemetry lake. The pipeline is either the embedded engine with its worker pool, or a
deployed AWS stack (``stack=``); see :mod:`radstream.bench.targets`. What it measured comes
back as a :class:`~radstream.bench.report.BenchReport`.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from pydantic import JsonValue

from radstream.bench.cost import CostInputs, estimate_cost, failures_and_retries
from radstream.bench.limit import Backend, measure_limit
from radstream.bench.manifest import build_manifest
from radstream.bench.report import (
    QUEUE_WAIT,
    Baseline,
    BenchReport,
    LoadSettings,
    Series,
    StageSummary,
)
from radstream.bench.slo import Target, targets_with, verdict
from radstream.bench.stats import (
    late_sends,
    latency_ms,
    latency_summary,
    outcome_counts,
    steady_throughput,
    timeline_series,
)
from radstream.bench.targets import BenchTarget, LocalTarget, StackTarget
from radstream.errors import ConfigInvalid
from radstream.layout import Bucket
from radstream.loadgen.driver import DriveResult, LoadDriver, Sent
from radstream.loadgen.shapes import constant, parse_shape, poisson, read_trace
from radstream.loadgen.study import Study
from radstream.loadgen.synthetic import make_studies
from radstream.loadgen.uploader import upload_generated
from radstream.model.loading import resolve_model_path
from radstream.pipeline.definition import PIPELINE, RECORD_FAILURE, STORE
from radstream.pricing import Pricing, load_pricing
from radstream.settings import Settings
from radstream.stages.completions import outcome_key_of
from radstream.stages.ports import ObjectStore
from radstream.stages.telemetry import pseudonym
from radstream.stages.validate import study_folder

if TYPE_CHECKING:
    from radstream.aws.session import StackRef

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
    # Firehose buffers telemetry (60 s on AWS) before it lands: how long to wait for it.
    telemetry_wait_s: float = 180.0

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
    settings: Settings,
    cfg: BenchConfig,
    progress: Progress | None = None,
    stack: StackRef | None = None,
) -> BenchReport:
    """Run the benchmark and return its report (the ``--json`` object plus raw series).

    With ``stack``, the load goes to that deployed stack instead of the embedded engine:
    no local engine or worker starts, outcomes are read from its results bucket, and stage
    timings from its telemetry bucket once Firehose has delivered them.
    """
    cfg.validate()
    if stack is not None and cfg.baseline:
        raise ConfigInvalid(
            "--baseline cannot be used with --stack: the baseline is the in-process limit "
            "of this machine's CPUs, which means nothing for Lambda"
        )
    report_progress = progress or (lambda _phase, _done, _total: None)
    pricing = load_pricing(settings.cost.pricing)
    targets = targets_with(cfg.slo)
    tag = uuid.uuid4().hex[:6]
    target: BenchTarget = LocalTarget(settings) if stack is None else StackTarget(stack, tag)
    report_progress("generate", 0, cfg.warmup + cfg.studies)
    warm, measured = generate(cfg, tag)
    studies = [*warm, *measured]
    report_progress("generate", len(studies), len(studies))

    with target.drive() as drive:

        def send(study: Study) -> str:
            key = upload_generated(drive.store, study).key
            drive.after_send()
            return key

        driver = LoadDriver(
            send, drive.completions, progress=lambda d, t: report_progress("run", d, t)
        )
        if cfg.concurrency is not None:
            run = driver.closed_loop(
                studies, cfg.concurrency, warmup=len(warm), timeout_s=cfg.timeout_s
            )
        else:
            run = driver.open_loop(
                studies, schedule(cfg, len(studies)), warmup=len(warm), timeout_s=cfg.timeout_s
            )
        drop_vanished(run, drive.store)
    # Out of drive(): a local pool has stopped and flushed every row into the lake; a
    # stack's rows may still sit in Firehose's buffer, hence the bounded wait.
    measured_sent = [s for s in run.sent if not s.warmup]
    wait_s = cfg.telemetry_wait_s if target.telemetry_delayed else 0.0
    with target.lake(run.started_at) as read:
        rows, complete = await_telemetry(
            settings, read, run, measured_sent, wait_s, report_progress
        )
    report = _report(settings, cfg, target, run, measured_sent, rows, measured, pricing, targets)
    if not complete:
        report = report.model_copy(
            update={
                "telemetry_note": (
                    f"telemetry was incomplete after waiting {wait_s:g} s: some studies with "
                    "an outcome have no row for their final stage, so stage figures and the "
                    "cost estimate cover only the rows that arrived (if none did, check that "
                    "telemetry.pseudonymise and its key match the deployment's)"
                )
            }
        )
    if cfg.baseline:
        report_progress("baseline", 0, 1)
        report = _with_baseline(settings, report, measured)
        report_progress("baseline", 1, 1)
    return report


def _with_baseline(settings: Settings, report: BenchReport, measured: list[Study]) -> BenchReport:
    """The report with the in-memory limit measured on the same valid images."""
    valid = [(s.image_name, s.image) for s in measured if s.expected_code is None]
    model = settings.model
    backend = Backend(
        resolve_model_path(settings), runtime=model.runtime, precision=model.precision
    )
    limit = measure_limit(backend, valid, settings.engine.workers)
    throughput = report.throughput_per_min
    update: dict[str, object] = {
        "baseline": Baseline(
            images_per_s=round(limit.images_per_s, 3), ms_per_image=round(limit.ms_per_image, 2)
        ),
        "efficiency": round(throughput / 60.0 / limit.images_per_s, 3) if throughput else None,
    }
    if not report.saturated:
        update["efficiency_note"] = (
            "the load did not keep every worker busy, so efficiency measures the load, "
            "not the pipeline; use --concurrency >= 2x workers or a rate above capacity"
        )
    return report.model_copy(update=update)


def drop_vanished(run: DriveResult, store: ObjectStore) -> None:
    """Forget completions whose outcome object no longer exists when the run ends."""
    for key, completion in list(run.completions.items()):
        if store.head(Bucket.RESULTS, outcome_key_of(key, completion.kind)) is None:
            del run.completions[key]


@dataclass(frozen=True)
class StageRow:
    """The columns of a telemetry row that the benchmark reads."""

    study_id: str
    stage: str
    status: str
    duration_ms: float
    queue_wait_ms: float | None


_ROW_COLUMNS = ("study_id", "stage", "status", "duration_ms", "queue_wait_ms")
_TELEMETRY_POLL_S = 2.0


def await_telemetry(
    settings: Settings,
    read: Callable[[], pa.Table],
    run: DriveResult,
    measured: list[Sent],
    wait_s: float,
    progress: Progress,
) -> tuple[list[StageRow], bool]:
    """The telemetry rows of the measured studies, once each study with an outcome has a
    row for its final stage (``store`` or ``record_failure``), or ``wait_s`` has passed.

    Returns the rows and whether they were complete in that sense.
    """
    telemetry = settings.telemetry

    def row_id(sent: Sent) -> str:
        # The same study id the pipeline writes: the upload folder of a generated study.
        study_id = study_folder(sent.sidecar_key)
        return pseudonym(study_id, telemetry.pseudonym_key) if telemetry.pseudonymise else study_id

    ids = {row_id(s) for s in measured}
    final = {
        (row_id(s), STORE if c.kind == "result" else RECORD_FAILURE)
        for s in measured
        if (c := run.completions.get(s.sidecar_key)) is not None
    }
    deadline = time.monotonic() + wait_s
    while True:
        table = read()
        table = table.filter(
            pc.is_in(table.column("study_id"), value_set=pa.array(sorted(ids), type=pa.string()))
        )
        rows = [StageRow(**r) for r in table.select(list(_ROW_COLUMNS)).to_pylist()]
        arrived = final & {(r.study_id, r.stage) for r in rows}
        progress("telemetry", len(arrived), len(final))
        if arrived == final or time.monotonic() >= deadline:
            return rows, arrived == final
        time.sleep(_TELEMETRY_POLL_S)


def _report(
    settings: Settings,
    cfg: BenchConfig,
    target: BenchTarget,
    run: DriveResult,
    measured: list[Sent],
    rows: list[StageRow],
    studies: list[Study],
    pricing: Pricing,
    targets: dict[str, Target],
) -> BenchReport:
    valid = [s for s in measured if s.expected_code is None]
    latencies, censored = latency_ms(run, valid)
    throughput = steady_throughput(run, valid)
    planned_invalid = sum(1 for s in studies if s.expected_code is not None)
    outcomes = outcome_counts(
        run, measured, planned_valid=len(studies) - planned_invalid, planned_invalid=planned_invalid
    )
    stages, stage_series, billed_ms = _stages(rows)
    failed_at, retries = failures_and_retries((r.stage, r.status) for r in rows)
    aws = settings.cost
    cost = estimate_cost(
        CostInputs(
            executions=len(measured),
            succeeded=outcomes.succeeded,
            # Every attempt is billed, retries and errors included; queue wait is not.
            stage_ms=billed_ms,
            failed_at=failed_at,
            retries=retries,
            telemetry_records=len(rows),
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
        "success_rate": outcomes.success_rate,
    }
    config: dict[str, JsonValue] = {
        k: (str(v) if isinstance(v, Path) else v) for k, v in asdict(cfg).items()
    }
    config.update(target.config())
    in_flight = [sent - done for _, sent, done in run.timeline]
    queue_wait = stages.get(QUEUE_WAIT)
    return BenchReport(
        n=len(valid),
        n_without_outcome=censored,
        p50_ms=summary["p50_ms"],
        p90_ms=summary["p90_ms"],
        p95_ms=summary["p95_ms"],
        p99_ms=summary["p99_ms"],
        p999_ms=summary["p999_ms"],
        max_ms=summary["max_ms"],
        late_sends=late_sends(measured),
        queue_wait_ms=queue_wait.p95_ms if queue_wait is not None else None,
        throughput_per_min=throughput.per_min,
        stable=throughput.stable,
        success_rate=outcomes.success_rate,
        outcomes=outcomes,
        invalid_injected=outcomes.invalid_injected,
        cost_per_image_usd=cost.per_image_usd,
        cost_items=cost.items,
        cost=cost,
        stages=stages,
        slo=verdict(values, targets),
        efficiency=None,
        # Efficiency means something only if the pipeline was kept busy. Saturation is
        # about local workers: a stack has none (Lambda scales), so it is None there.
        saturated=(
            None
            if target.workers is None
            else bool(in_flight) and float(np.median(in_flight)) >= target.workers
        ),
        timed_out=run.timed_out,
        load=LoadSettings(
            mode="closed" if cfg.concurrency is not None else "open",
            rate=cfg.rate,
            poisson=cfg.poisson,
            concurrency=cfg.concurrency,
            shape=cfg.shape or (str(cfg.trace) if cfg.trace else None),
            format=cfg.format,
            warmup=cfg.warmup,
        ),
        manifest=build_manifest(config, target.model(run)),
        series=Series(
            latencies_ms=[round(v, 3) for v in latencies],
            stage_ms={k: [round(v, 3) for v in vs] for k, vs in stage_series.items()},
            timeline=timeline_series(run),
            throughput_windows=throughput.windows,
        ),
    )


def _stages(
    rows: list[StageRow],
) -> tuple[dict[str, StageSummary], dict[str, list[float]], dict[str, list[float]]]:
    """From the measured studies' telemetry rows: per-stage p50/p95 of successful attempts
    and queue wait, their raw series, and the durations of every attempt (for billing)."""
    series: dict[str, list[float]] = {}
    billed: dict[str, list[float]] = {}
    waits: list[float] = []
    for row in rows:
        billed.setdefault(row.stage, []).append(row.duration_ms)
        if row.status == "ok":
            series.setdefault(row.stage, []).append(row.duration_ms)
        if row.queue_wait_ms is not None:
            waits.append(row.queue_wait_ms)
    # Stages in pipeline order (a stage the pipeline does not declare after them), then
    # queue wait, which is not a stage: the report reads top to bottom as a study flows.
    order = {stage.name: i for i, stage in enumerate(PIPELINE.all_stages)}
    series = {name: series[name] for name in sorted(series, key=lambda n: order.get(n, len(order)))}
    series[QUEUE_WAIT] = waits
    summary = {
        name: StageSummary(
            n=len(values),
            p50_ms=round(float(np.percentile(values, 50)), 3) if values else None,
            p95_ms=round(float(np.percentile(values, 95)), 3) if values else None,
        )
        for name, values in series.items()
    }
    return summary, series, billed
