"""The embedded pipeline: ``demo``, ``run``, ``serve``, ``status``, ``reconcile``."""

from __future__ import annotations

import json
import signal
from contextlib import ExitStack
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.markup import escape
from rich.table import Table

from radstream.cli.app import (
    DataDir,
    JsonOpt,
    ModelPath,
    app,
    console,
    existing_data_dir,
    open_engine,
    out,
    own_data_dir,
    phase_progress,
    progress_bar,
    settings_for,
)
from radstream.logs import get_logger
from radstream.settings import Settings

if TYPE_CHECKING:
    from radstream.local.completions import CompletionWatcher
    from radstream.local.engine import LocalEngine
    from radstream.local.metrics import MetricsEndpoint
    from radstream.stages.ports import ObjectStore

log = get_logger(__name__)


@dataclass(frozen=True)
class DemoOutput:
    """What ``demo`` prints (``--json``: this object)."""

    studies: int
    succeeded: int
    failed: int
    lost: int
    failures_by_code: dict[str, int]
    p50_ms: float | None
    p95_ms: float | None
    p99_ms: float | None
    max_ms: float | None
    throughput_per_s: float | None
    unexpected_outcomes: list[str]
    data_dir: str
    model: str
    model_trained: bool


@app.command()
def demo(
    studies: Annotated[int, typer.Option(min=1, help="Studies to generate")] = 60,
    invalid: Annotated[int, typer.Option(min=0, help="How many of them are bad")] = 10,
    as_json: JsonOpt = False,
    seed: Annotated[int, typer.Option(help="Generator seed")] = 7,
    workers: Annotated[int | None, typer.Option(min=1, help="Worker processes")] = None,
    image_wait: Annotated[
        float, typer.Option(help="Seconds to wait for an image whose sidecar arrived first")
    ] = 5.0,
    model: ModelPath = None,
    data_dir: Annotated[
        Path | None,
        typer.Option(
            "--data-dir",
            help="Data directory [default: a 'demo' folder inside the data directory, so "
            "synthetic studies never mix with real ones]",
        ),
    ] = None,
) -> None:
    """Generate synthetic studies (PNG, JPEG, DICOM; some bad) and run them end to end."""
    from radstream.demo import run_demo

    if invalid > studies:
        raise typer.BadParameter("--invalid cannot exceed --studies")
    settings = own_data_dir(
        settings_for(data_dir, model, workers=workers, image_wait_s=image_wait), data_dir, "demo"
    )
    if not settings.db_path.is_file():
        console.print(f"creating data directory {escape(str(settings.data_dir.resolve()))}")
    with progress_bar() as bar:
        report = run_demo(
            settings, studies=studies, invalid=invalid, seed=seed, progress=phase_progress(bar)
        )
    s = report.summary
    shown = DemoOutput(
        studies=s.studies,
        succeeded=s.succeeded,
        failed=s.failed,
        lost=s.lost,
        failures_by_code=dict(s.failures_by_code),
        p50_ms=s.latency_ms["p50_ms"],
        p95_ms=s.latency_ms["p95_ms"],
        p99_ms=s.latency_ms["p99_ms"],
        max_ms=s.latency_ms["max_ms"],
        throughput_per_s=s.throughput_per_s,
        unexpected_outcomes=report.unexpected,
        data_dir=str(settings.data_dir.resolve()),
        model=report.model,
        model_trained=report.model_trained,
    )
    if as_json:
        out.print_json(json.dumps(asdict(shown)))
    else:
        _print_demo(shown)
    if s.lost or report.unexpected:
        raise typer.Exit(1)


def _print_demo(p: DemoOutput) -> None:
    table = Table(title="RadStream demo", show_header=False)
    table.add_row("studies", str(p.studies))
    table.add_row("succeeded", f"[green]{p.succeeded}[/green]")
    table.add_row("failed (as designed)", f"[yellow]{p.failed}[/yellow]")
    table.add_row("lost", f"[{'red' if p.lost else 'green'}]{p.lost}[/]")
    for code, count in p.failures_by_code.items():
        table.add_row(f"  {code}", str(count))
    table.add_row(
        "end-to-end p50 / p95 / p99",
        f"{p.p50_ms} / {p.p95_ms} / {p.p99_ms} ms "
        "(successful studies, upload → result, queueing included)",
    )
    table.add_row("throughput", f"{p.throughput_per_s} successful studies/s")
    table.add_row("data dir", escape(p.data_dir))
    table.add_row("model", escape(p.model) + ("" if p.model_trained else " (untrained)"))
    out.print(table)
    for line in p.unexpected_outcomes:
        out.print(f"[red]unexpected[/red] {escape(line)}")
    if not p.model_trained:
        from radstream.local.results import UNTRAINED_NOTE

        out.print(f"[yellow]note[/yellow]: {UNTRAINED_NOTE}")
    dir_opt = f"--data-dir {escape(p.data_dir)}"
    out.print(f"See the predictions: radstream results list {dir_opt}")


MetricsPort = Annotated[
    int | None,
    typer.Option(
        "--metrics-port",
        min=0,
        max=65535,
        help="Serve Prometheus metrics on this port (GET /metrics) while running; 0 picks "
        "a free one",
    ),
]
MetricsHost = Annotated[
    str,
    typer.Option(
        "--metrics-host", help="Address of the metrics server (loopback unless told otherwise)"
    ),
]


@app.command()
def run(
    until_idle: Annotated[
        bool, typer.Option("--until-idle/--keep-running", help="Exit once nothing is pending")
    ] = True,
    workers: Annotated[int | None, typer.Option(min=1, help="Worker processes")] = None,
    model: ModelPath = None,
    data_dir: DataDir = None,
    metrics_port: MetricsPort = None,
    metrics_host: MetricsHost = "127.0.0.1",
) -> None:
    """Process everything pending, then exit."""
    run_pool(
        settings_for(data_dir, model, workers=workers),
        until_idle=until_idle,
        metrics=None if metrics_port is None else (metrics_host, metrics_port),
    )


@app.command()
def serve(
    workers: Annotated[int | None, typer.Option(min=1, help="Worker processes")] = None,
    model: ModelPath = None,
    data_dir: DataDir = None,
    metrics_port: MetricsPort = None,
    metrics_host: MetricsHost = "127.0.0.1",
) -> None:
    """Keep running: process uploads as they arrive, from this or any other process."""
    settings = settings_for(data_dir, model, workers=workers)
    console.print(
        f"serving {escape(str(settings.data_dir.resolve()))} with "
        f"{settings.engine.workers} worker(s), model {escape(_model_line(settings))}; "
        "Ctrl-C stops after the executions in flight"
    )
    run_pool(
        settings,
        until_idle=False,
        metrics=None if metrics_port is None else (metrics_host, metrics_port),
    )


def _model_line(settings: Settings) -> str:
    """The model in one line: an endpoint and its model name, or a file and its name."""
    if settings.model.endpoint:
        return f"{settings.model.endpoint_model} at {settings.model.endpoint}"
    from radstream.model.loading import resolve_model_path
    from radstream.model.metadata import read_model_info

    path = resolve_model_path(settings)
    info = read_model_info(path)
    untrained = ", untrained stand-in" if info.untrained else ""
    return f"{info.name} v{info.version} ({path}{untrained})"


def run_pool(
    settings: Settings, *, until_idle: bool, metrics: tuple[str, int] | None = None
) -> None:
    """Start the worker pool, wait for it (SIGTERM or Ctrl-C stop it), report how it ended.

    ``metrics``, a ``(host, port)``, serves the engine's Prometheus metrics there meanwhile.
    """
    from radstream.model.loading import resolve_model_path

    if not settings.model.endpoint:
        resolve_model_path(settings)  # build or check it once, not in every worker
    engine = open_engine(settings)
    with ExitStack() as stack:
        stack.callback(engine.close)
        endpoint = None
        if metrics is not None:
            from radstream.local.metrics import serving_metrics

            # Before the workers start: a port in use is reported before any work begins.
            endpoint = stack.enter_context(serving_metrics(settings.db_path, *metrics))
            if metrics[0] not in ("127.0.0.1", "localhost", "::1"):
                console.print(
                    f"[yellow]warning[/yellow] metrics on {escape(metrics[0])}: anyone who "
                    "can reach it can read them"
                )
            console.print(f"metrics at {escape(endpoint.url)}")
        _run_workers(settings, engine, until_idle=until_idle, metrics=endpoint)


def _run_workers(
    settings: Settings,
    engine: LocalEngine,
    *,
    until_idle: bool,
    metrics: MetricsEndpoint | None,
) -> None:
    from radstream.local.completions import CompletionWatcher
    from radstream.local.pool import WorkerPool

    watcher = CompletionWatcher(engine.conn)
    pool = WorkerPool(
        settings,
        until_idle=until_idle,
        reports=metrics.reports if metrics is not None else None,
    ).start()
    if metrics is not None:
        metrics.metrics.watch(pool)
    log.info(
        "workers started",
        extra={"workers": len(pool.processes), "until_idle": until_idle},
    )

    def _stop(_sig: int, _frame: object) -> None:
        pool.stop()

    signal.signal(signal.SIGTERM, _stop)
    try:
        while not pool.wait(timeout=0.5):
            log_finished(watcher, engine.store)
    except KeyboardInterrupt:
        console.print("stopping…")
        pool.stop()
    finally:
        log_finished(watcher, engine.store)
    codes = pool.exit_codes
    log.info("workers stopped", extra={"exit_codes": codes, "restarts": pool.restarts})
    if pool.restarts:
        console.print(f"[yellow]{pool.restarts} worker(s) died and were replaced[/yellow]")
    if any(code not in (0, None) for code in codes):
        console.print(f"[red]worker exit codes[/red] {codes}")
        raise typer.Exit(1)


def log_finished(watcher: CompletionWatcher, store: ObjectStore) -> None:
    """One info line per study finished since the last call: its outcome object and its top
    findings, or its error code."""
    from radstream.local.results import read_row
    from radstream.stages.completions import outcome_key_of

    for done in watcher.poll():
        key = outcome_key_of(done.sidecar_key, done.kind)
        row = read_row(store, key)
        if row is None:  # replaced by a newer upload meanwhile
            continue
        note = " (untrained stand-in)" if row.untrained else ""
        log.info(
            f"{row.outcome} {row.study_id}/{row.image_id}: {row.summary()}{note} [{key}]",
            extra={"study": row.study_id, "outcome": row.outcome, "outcome_key": key},
        )


@app.command()
def status(
    executions: Annotated[
        bool,
        typer.Option("--executions", help="Count executions (every attempt) instead of studies"),
    ] = False,
    as_json: JsonOpt = False,
    data_dir: DataDir = None,
) -> None:
    """Studies by their latest outcome: pending, running, succeeded, failed."""
    import sqlite3

    from radstream.errors import DatabaseUnavailable
    from radstream.local.engine import LocalEngine
    from radstream.local.studies import study_counts

    settings = settings_for(data_dir)
    existing_data_dir(settings)
    with LocalEngine.open(settings) as engine:
        try:
            counts = engine.executor.counts() if executions else study_counts(engine.conn)
        except sqlite3.Error as exc:  # a full disk or a damaged file: a message, not a trace
            raise DatabaseUnavailable(
                f"cannot read the engine database {settings.db_path}: {exc}"
            ) from exc
    if as_json:
        out.print_json(json.dumps(counts))
        return
    console.print(f"data directory {escape(str(settings.data_dir.resolve()))}")
    table = Table("state", "executions" if executions else "studies")
    for state, count in counts.items():
        table.add_row(state, str(count))
    out.print(table)


@app.command()
def reconcile(
    older_than: Annotated[
        float, typer.Option(help="Only uploads older than this (seconds)")
    ] = 60.0,
    requeue_unrouted: Annotated[
        bool,
        typer.Option(
            "--requeue", help="Start executions for sidecars that have none (no outcome, --stack)"
        ),
    ] = False,
    stack: Annotated[
        str | None,
        typer.Option(help="A deployed stack: studies with no outcome object, and why"),
    ] = None,
    region: Annotated[str | None, typer.Option(help="AWS region [aws.region]")] = None,
    endpoint_url: Annotated[
        str | None,
        typer.Option(help="Send every AWS call here, e.g. an emulator [aws.endpoint_url]"),
    ] = None,
    as_json: JsonOpt = False,
    data_dir: DataDir = None,
) -> None:
    """List images whose sidecar never arrived, and sidecars that started no execution;
    with --stack, the deployed stack's studies that ended with no outcome object."""
    if stack is not None:
        _reconcile_stack(
            settings_for(data_dir),
            (stack, region, endpoint_url),
            older_than_s=older_than,
            requeue_lost=requeue_unrouted,
            as_json=as_json,
        )
        return
    from radstream.local.engine import LocalEngine
    from radstream.local.reconcile import reconcile as find_strays
    from radstream.local.reconcile import requeue

    with LocalEngine.open(settings_for(data_dir)) as engine:
        found = find_strays(engine.store, engine.executor, older_than_s=older_than)
        requeued = (
            requeue(engine.store, engine.executor, found.unrouted_sidecars)
            if requeue_unrouted
            else 0
        )
    if as_json:
        doc = {
            "orphan_images": [asdict(s) for s in found.orphan_images],
            "unrouted_sidecars": [asdict(s) for s in found.unrouted_sidecars],
            "requeued": requeued,
        }
        out.print_json(json.dumps(doc))
        return
    for stray in found.orphan_images:
        out.print(f"image without sidecar   {escape(stray.key)}  ({stray.age_s:.0f}s)")
    for stray in found.unrouted_sidecars:
        out.print(f"sidecar, no execution   {escape(stray.key)}  ({stray.age_s:.0f}s)")
    console.print(
        f"{len(found.orphan_images)} image(s) without a sidecar, "
        f"{len(found.unrouted_sidecars)} sidecar(s) without an execution"
        + (f"; requeued {requeued}" if requeue_unrouted else "")
    )


def _reconcile_stack(
    settings: Settings,
    where: tuple[str, str | None, str | None],
    *,
    older_than_s: float,
    requeue_lost: bool,
    as_json: bool,
) -> None:
    """``reconcile --stack``: print the lost studies and unrecorded executions; ``where``
    is the stack's name, region and endpoint URL (None: the settings')."""
    from radstream.aws.reconcile import reconcile_stack
    from radstream.aws.reconcile import requeue as requeue_stack
    from radstream.cli.app import stack_ref

    ref = stack_ref(settings, *where)
    found = reconcile_stack(ref, older_than_s=older_than_s)
    requeued = requeue_stack(ref, [s.key for s in found.lost]) if requeue_lost else 0
    if as_json:
        doc = {
            "lost": [asdict(s) for s in found.lost],
            "unrecorded_executions": [asdict(e) for e in found.unrecorded],
            "executions_listed": found.executions_listed,
            "requeued": requeued,
        }
        out.print_json(json.dumps(doc))
        return
    for study in found.lost:
        run = study.execution
        why = f"{run.status} {run.error or ''}: {run.cause or ''}" if run else "no ended execution"
        out.print(f"no outcome   {escape(study.key)}  ({study.age_s:.0f}s)  {escape(why)}")
    for execution in found.unrecorded:
        out.print(
            f"ended {execution.status:<9} {escape(execution.key)}  "
            f"{escape(execution.error or '')}: {escape(execution.cause or '')}"
        )
    if not found.executions_listed:
        console.print(
            "an EXPRESS state machine's executions are not listed by Step Functions: "
            "their errors are in its log group"
        )
    console.print(
        f"{len(found.lost)} upload(s) with no outcome object, {len(found.unrecorded)} "
        "ended execution(s) with no failure object"
        + (f"; requeued {requeued}" if requeue_lost else "")
    )
