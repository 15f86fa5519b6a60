"""The ``radstream`` command (Typer + Rich). Thin: each command calls one public function."""

from __future__ import annotations

import csv
import json
import signal
import sys
import time
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from radstream.errors import RadStreamError
from radstream.settings import Settings, load_settings

app = typer.Typer(
    help="RadStream: chest X-ray inference pipeline (embedded engine).",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
model_app = typer.Typer(help="Build and inspect model files.", no_args_is_help=True)
app.add_typer(model_app, name="model")
aws_app = typer.Typer(
    help="AWS backend: template, package, deploy, status, destroy.", no_args_is_help=True
)
app.add_typer(aws_app, name="aws")
lake_app = typer.Typer(
    help="Telemetry lake: Glue schema, compaction, pruning.", no_args_is_help=True
)
app.add_typer(lake_app, name="lake")

console = Console(stderr=True, soft_wrap=True)
out = Console(soft_wrap=True)

DataDir = Annotated[
    Path | None,
    typer.Option(
        "--data-dir", help="Data directory [default: ./.radstream, or RADSTREAM_DATA_DIR]"
    ),
]


ModelPath = Annotated[
    Path | None,
    typer.Option("--model", help="Your ONNX model [default: the stand-in, built on first use]"),
]


def _settings(data_dir: Path | None, model: Path | None = None, **engine: Any) -> Settings:
    settings = load_settings(data_dir=data_dir)
    if model is not None:
        settings = settings.model_copy(
            update={"model": settings.model.model_copy(update={"path": model})}
        )
    overrides = {k: v for k, v in engine.items() if v is not None}
    if overrides:
        settings = settings.model_copy(
            update={"engine": settings.engine.model_copy(update=overrides)}
        )
    return settings


def _fail(exc: RadStreamError) -> None:
    console.print(f"[red]error[/red] {exc.code}: {exc.message}\n  → {exc.hint}")
    raise typer.Exit(2)


def _progress() -> Progress:
    return Progress(
        TextColumn("{task.description:<9}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=console,
        transient=False,
    )


@app.command()
def demo(
    studies: Annotated[int, typer.Option(min=1, help="Studies to generate")] = 60,
    invalid: Annotated[int, typer.Option(min=0, help="How many of them are bad")] = 10,
    as_json: Annotated[bool, typer.Option("--json", help="One JSON object on stdout")] = False,
    seed: Annotated[int, typer.Option(help="Generator seed")] = 7,
    workers: Annotated[int | None, typer.Option(min=1, help="Worker processes")] = None,
    image_wait: Annotated[
        float, typer.Option(help="Seconds to wait for an image whose sidecar arrived first")
    ] = 5.0,
    model: ModelPath = None,
    data_dir: DataDir = None,
) -> None:
    """Generate synthetic studies (PNG, JPEG, DICOM; some bad) and run them end to end."""
    from radstream.demo import run_demo

    if invalid > studies:
        raise typer.BadParameter("--invalid cannot exceed --studies")
    settings = _settings(data_dir, model, workers=workers, image_wait_s=image_wait)
    with _progress() as bar:
        tasks: dict[str, Any] = {}

        def progress(phase: str, done: int, total: int) -> None:
            if phase not in tasks:
                tasks[phase] = bar.add_task(phase, total=total)
            bar.update(tasks[phase], completed=done)

        try:
            report = run_demo(
                settings, studies=studies, invalid=invalid, seed=seed, progress=progress
            )
        except RadStreamError as exc:
            _fail(exc)
            return
    s = report.summary
    payload = {
        "studies": s.studies,
        "succeeded": s.succeeded,
        "failed": s.failed,
        "lost": s.lost,
        "failures_by_code": s.failures_by_code,
        "p50_ms": s.latency_ms["p50_ms"],
        "p95_ms": s.latency_ms["p95_ms"],
        "p99_ms": s.latency_ms["p99_ms"],
        "max_ms": s.latency_ms["max_ms"],
        "throughput_per_s": s.throughput_per_s,
        "unexpected_outcomes": report.unexpected,
        "data_dir": str(settings.data_dir.resolve()),
    }
    if as_json:
        out.print_json(json.dumps(payload))
    else:
        _print_summary(payload)
    if s.lost or report.unexpected:
        raise typer.Exit(1)


def _print_summary(p: dict[str, Any]) -> None:
    table = Table(title="RadStream demo", show_header=False)
    table.add_row("studies", str(p["studies"]))
    table.add_row("succeeded", f"[green]{p['succeeded']}[/green]")
    table.add_row("failed (as designed)", f"[yellow]{p['failed']}[/yellow]")
    table.add_row("lost", f"[{'red' if p['lost'] else 'green'}]{p['lost']}[/]")
    for code, count in p["failures_by_code"].items():
        table.add_row(f"  {code}", str(count))
    table.add_row(
        "end-to-end p50 / p95 / p99",
        f"{p['p50_ms']} / {p['p95_ms']} / {p['p99_ms']} ms (successful studies, upload → result, queueing included)",
    )
    table.add_row("throughput", f"{p['throughput_per_s']} successful studies/s")
    table.add_row("data dir", p["data_dir"])
    out.print(table)
    for line in p["unexpected_outcomes"]:
        out.print(f"[red]unexpected[/red] {line}")
    out.print(
        "Results: results bucket under results/ and failed/; telemetry: lake/telemetry/ (Parquet)."
    )


@app.command()
def upload(
    paths: Annotated[
        list[Path] | None, typer.Argument(exists=True, help="Files or folders of image+sidecar")
    ] = None,
    synthetic: Annotated[
        int | None, typer.Option(min=1, help="Generate N synthetic studies instead of PATHs")
    ] = None,
    fmt: Annotated[str, typer.Option("--format", help="png|png16|jpeg|dicom|mix")] = "mix",
    size: Annotated[str, typer.Option(help="Synthetic image size WxH")] = "2000x2500",
    invalid_ratio: Annotated[
        float, typer.Option(min=0.0, max=0.99, help="Share of bad studies")
    ] = 0.0,
    seed: Annotated[int, typer.Option(help="Generator seed")] = 1,
    rate: Annotated[float | None, typer.Option(help="Open loop: studies per second")] = None,
    poisson: Annotated[bool, typer.Option("--poisson", help="Poisson arrivals at --rate")] = False,
    concurrency: Annotated[
        int | None, typer.Option(min=1, help="Closed loop: studies in flight")
    ] = None,
    shape: Annotated[
        str | None, typer.Option(help="step:R/S,R/S… | burst:N/S | ramp:R0-R1/S")
    ] = None,
    trace: Annotated[Path | None, typer.Option(exists=True, help="CSV of send offsets (s)")] = None,
    no_wait: Annotated[bool, typer.Option("--no-wait", help="Do not wait for outcomes")] = False,
    timeout: Annotated[float, typer.Option(help="Seconds to wait for outcomes")] = 300.0,
    stack: Annotated[
        str | None, typer.Option(help="Upload to this deployed AWS stack instead")
    ] = None,
    region: RegionOpt = None,
    endpoint_url: AwsEndpointOpt = None,
    data_dir: DataDir = None,
) -> None:
    """Upload studies (image first, sidecar last) under incoming/{study_id}/: files, or
    synthetic ones at a chosen load shape; locally, or to a deployed stack (--stack)."""
    from radstream.bench.outcomes import collect_outcomes
    from radstream.local.engine import LocalEngine
    from radstream.local.executor import execution_id

    settings = _settings(data_dir)
    if (paths is None) == (synthetic is None):
        raise typer.BadParameter("give PATHs or --synthetic N")
    if stack is not None:
        if concurrency:
            raise typer.BadParameter("--concurrency is local only; use --rate or --shape")
        _upload_to_stack(
            _stack(settings, stack, region, endpoint_url),
            paths,
            lambda target: _upload_synthetic(
                target,
                synthetic or 0,
                fmt,
                size,
                invalid_ratio,
                seed,
                rate,
                poisson,
                None,
                shape,
                trace,
                no_wait,
            ),
            wait=not no_wait,
            timeout=timeout,
        )
        return
    with LocalEngine.open(settings) as engine:
        if synthetic is not None:
            infos = _upload_synthetic(
                engine,
                synthetic,
                fmt,
                size,
                invalid_ratio,
                seed,
                rate,
                poisson,
                concurrency,
                shape,
                trace,
                no_wait,
            )
        else:
            from radstream.loadgen.uploader import find_studies, upload_files

            studies, orphans = find_studies(paths or [])
            for image in orphans:
                console.print(
                    f"[yellow]skipped[/yellow] {image}: no sidecar {image.with_suffix('.json')}"
                )
            infos = list(upload_files(engine.store, studies))
        console.print(f"uploaded {len(infos)} studies to {settings.data_dir}")
        if no_wait or not infos:
            return
        if not engine.executor.live_workers():
            console.print(
                "no worker is running: start `radstream serve`, or run "
                "`radstream run --until-idle`, to process them"
            )
            return
        console.print("waiting for outcomes")
        ids = [execution_id(i.bucket, i.key, i.etag) for i in infos]
        deadline = time.monotonic() + timeout
        while engine.executor.terminal_count(ids) < len(ids) and time.monotonic() < deadline:
            time.sleep(0.1)
        for outcome in collect_outcomes(engine.executor, engine.store, infos):
            out.print(f"{outcome.status:<9} {outcome.error_code or '':<28} {outcome.sidecar_key}")


def _upload_to_stack(
    stack: Any,
    paths: list[Path] | None,
    synthetic: Any,
    *,
    wait: bool,
    timeout: float,
) -> None:
    """Upload to the stack's images bucket; outcomes come from its results bucket."""
    from types import SimpleNamespace

    from radstream.aws.completions import S3CompletionWatcher
    from radstream.aws.outcomes import stack_store, wait_for_outcomes

    try:
        store = stack_store(stack)
        # Outcomes already there (an earlier upload of the same images) must not count.
        watcher = S3CompletionWatcher(store, min_interval_s=0.0) if wait else None
        if paths is None:
            infos = synthetic(SimpleNamespace(store=store, conn=None))
        else:
            from radstream.loadgen.uploader import find_studies, upload_files

            studies, orphans = find_studies(paths)
            for image in orphans:
                console.print(
                    f"[yellow]skipped[/yellow] {image}: no sidecar {image.with_suffix('.json')}"
                )
            infos = list(upload_files(store, studies))
        console.print(f"uploaded {len(infos)} studies to stack {stack.name}")
        if watcher is None or not infos:
            return
        console.print("waiting for outcomes (polling the results bucket)")
        now = time.time()
        outcomes = wait_for_outcomes(watcher, [(i.key, now) for i in infos], timeout_s=timeout)
    except RadStreamError as exc:
        _fail(exc)
        return
    for outcome in outcomes:
        out.print(f"{outcome.status:<9} {outcome.error_code or '':<28} {outcome.sidecar_key}")


def _upload_synthetic(
    engine: Any,
    count: int,
    fmt: str,
    size: str,
    invalid_ratio: float,
    seed: int,
    rate: float | None,
    poisson: bool,
    concurrency: int | None,
    shape: str | None,
    trace: Path | None,
    no_wait: bool,
) -> list[Any]:
    import uuid

    from radstream.bench.completions import CompletionWatcher
    from radstream.bench.runner import generate, schedule
    from radstream.loadgen.driver import LoadDriver
    from radstream.loadgen.uploader import upload_generated

    if not (rate or shape or trace or concurrency):
        shape = f"burst:{count}/1"  # no load shape given: send everything at once
    cfg = _load_config(
        count, rate, concurrency, poisson, shape, trace, fmt, size, invalid_ratio, seed, warmup=0
    )
    try:
        cfg.validate()
        with _progress() as bar:
            task = bar.add_task("generate", total=count)
            _, studies = generate(cfg, uuid.uuid4().hex[:6])
            bar.update(task, completed=count)
            infos = []

            def send(study: Any) -> str:
                info = upload_generated(engine.store, study)
                infos.append(info)
                return str(info.key)

            sending = bar.add_task("upload", total=count)
            watcher = CompletionWatcher(engine.conn) if concurrency else None
            driver = LoadDriver(
                send, watcher, progress=lambda d, t: bar.update(sending, completed=d)
            )
            if concurrency:
                driver.closed_loop(studies, concurrency)
            else:
                driver.open_loop(studies, schedule(cfg, count), wait=False)
            bar.update(sending, completed=len(infos))
    except RadStreamError as exc:
        _fail(exc)
    return infos


def _load_config(
    studies: int,
    rate: float | None,
    concurrency: int | None,
    poisson: bool,
    shape: str | None,
    trace: Path | None,
    fmt: str,
    size: str,
    invalid_ratio: float,
    seed: int,
    **more: Any,
) -> Any:
    """The load options shared by `upload --synthetic` and `bench`, as a BenchConfig."""
    from radstream.bench.runner import BenchConfig

    width, height = _size(size)
    return BenchConfig(
        studies=studies,
        rate=rate,
        concurrency=concurrency,
        poisson=poisson,
        shape=shape,
        trace=trace,
        format=fmt,
        width=width,
        height=height,
        invalid_ratio=invalid_ratio,
        seed=seed,
        **more,
    )


def _size(text: str) -> tuple[int, int]:
    width, sep, height = text.lower().partition("x")
    if not sep or not width.isdigit() or not height.isdigit():
        raise typer.BadParameter(f"--size {text!r}: expected WxH such as 2000x2500")
    return int(width), int(height)


@app.command()
def run(
    until_idle: Annotated[
        bool, typer.Option("--until-idle/--keep-running", help="Exit once nothing is pending")
    ] = True,
    workers: Annotated[int | None, typer.Option(min=1, help="Worker processes")] = None,
    model: ModelPath = None,
    data_dir: DataDir = None,
) -> None:
    """Process everything pending, then exit."""
    _run_pool(_settings(data_dir, model, workers=workers), until_idle=until_idle)


@app.command()
def serve(
    workers: Annotated[int | None, typer.Option(min=1, help="Worker processes")] = None,
    model: ModelPath = None,
    data_dir: DataDir = None,
) -> None:
    """Keep running: process uploads as they arrive, from this or any other process."""
    console.print("serving; Ctrl-C stops after the executions in flight")
    _run_pool(_settings(data_dir, model, workers=workers), until_idle=False)


def _run_pool(settings: Settings, *, until_idle: bool) -> None:
    from radstream.local.pool import WorkerPool
    from radstream.model.loading import resolve_model_path

    try:
        if not settings.model.endpoint:
            resolve_model_path(settings)  # build or check it once, not in every worker
    except RadStreamError as exc:
        _fail(exc)
    pool = WorkerPool(settings, until_idle=until_idle).start()

    def _stop(_sig: int, _frame: object) -> None:
        pool.stop()

    signal.signal(signal.SIGTERM, _stop)
    try:
        pool.wait()
    except KeyboardInterrupt:
        console.print("stopping…")
        pool.stop()
    if pool.restarts:
        console.print(f"[yellow]{pool.restarts} worker(s) died and were replaced[/yellow]")
    codes = pool.exit_codes
    if any(code not in (0, None) for code in codes):
        console.print(f"[red]worker exit codes[/red] {codes}")
        raise typer.Exit(1)


@app.command()
def status(
    as_json: Annotated[bool, typer.Option("--json")] = False,
    data_dir: DataDir = None,
) -> None:
    """Executions by state: pending, running, succeeded, failed."""
    from radstream.local.engine import LocalEngine

    with LocalEngine.open(_settings(data_dir)) as engine:
        counts = engine.executor.counts()
    if as_json:
        out.print_json(json.dumps(counts))
        return
    table = Table("state", "executions")
    for state, count in counts.items():
        table.add_row(state, str(count))
    out.print(table)


@app.command()
def reconcile(
    older_than: Annotated[
        float, typer.Option(help="Only uploads older than this (seconds)")
    ] = 60.0,
    requeue_unrouted: Annotated[
        bool, typer.Option("--requeue", help="Start executions for sidecars that have none")
    ] = False,
    as_json: Annotated[bool, typer.Option("--json")] = False,
    data_dir: DataDir = None,
) -> None:
    """List images whose sidecar never arrived, and sidecars that started no execution."""
    from radstream.local.engine import LocalEngine
    from radstream.local.reconcile import reconcile as find_strays
    from radstream.local.reconcile import requeue

    with LocalEngine.open(_settings(data_dir)) as engine:
        found = find_strays(engine.store, engine.executor, older_than_s=older_than)
        requeued = (
            requeue(engine.store, engine.executor, found.unrouted_sidecars)
            if (requeue_unrouted)
            else 0
        )
    if as_json:
        out.print_json(
            json.dumps(
                {
                    "orphan_images": [vars(s) for s in found.orphan_images],
                    "unrouted_sidecars": [vars(s) for s in found.unrouted_sidecars],
                    "requeued": requeued,
                }
            )
        )
        return
    for stray in found.orphan_images:
        out.print(f"image without sidecar   {stray.key}  ({stray.age_s:.0f}s)")
    for stray in found.unrouted_sidecars:
        out.print(f"sidecar, no execution   {stray.key}  ({stray.age_s:.0f}s)")
    console.print(
        f"{len(found.orphan_images)} image(s) without a sidecar, "
        f"{len(found.unrouted_sidecars)} sidecar(s) without an execution"
        + (f"; requeued {requeued}" if requeue_unrouted else "")
    )


@app.command()
def schema(
    name: Annotated[str, typer.Argument(help="sidecar | result | failure | telemetry")],
    data_dir: DataDir = None,
) -> None:
    """Print a contract's JSON Schema."""
    from radstream.schema import SCHEMAS

    model = SCHEMAS.get(name)
    if model is None:
        raise typer.BadParameter(f"choose one of {', '.join(SCHEMAS)}")
    sys.stdout.write(json.dumps(model.model_json_schema(), indent=2) + "\n")


@model_app.command("build")
def model_build(
    seed: Annotated[int, typer.Option(help="Weight seed")] = 0,
    data_dir: DataDir = None,
) -> None:
    """Write the untrained stand-in DenseNet121 (ONNX) under the data directory."""
    from radstream.model import ensure_standin, read_model_info

    settings = _settings(data_dir)
    path = ensure_standin(settings.models_dir, seed=seed)
    info = read_model_info(path)
    out.print(f"{path}  ({info.name} v{info.version}, sha256 {info.sha256[:16]}…)")


@model_app.command("serve")
def model_serve(
    host: Annotated[
        str, typer.Option(help="Address to bind (loopback unless told otherwise)")
    ] = "127.0.0.1",
    port: Annotated[int, typer.Option(min=0, max=65535)] = 8000,
    name: Annotated[str, typer.Option(help="Model name in the URL")] = "radstream-densenet121",
    max_batch_size: Annotated[int, typer.Option(min=1)] = 8,
    max_queue_delay_ms: Annotated[float, typer.Option(min=0.0)] = 5.0,
    max_queue: Annotated[int, typer.Option(min=1, help="Beyond this: 503 + Retry-After")] = 64,
    instances: Annotated[int, typer.Option(min=1, help="Worker processes (fixed)")] = 1,
    autoscale: Annotated[
        str | None, typer.Option(help="MIN:MAX instances, scaled on queue depth")
    ] = None,
    scale_up_delay: Annotated[float, typer.Option(help="Seconds of backlog before adding")] = 1.0,
    scale_down_delay: Annotated[float, typer.Option(help="Idle seconds before removing")] = 10.0,
    token: Annotated[
        str | None, typer.Option(envvar="RADSTREAM_SERVE_TOKEN", help="Require this bearer token")
    ] = None,
    model: ModelPath = None,
    data_dir: DataDir = None,
) -> None:
    """Serve the model over KServe v2 / Open Inference Protocol (Triton-compatible)."""
    from radstream.model.loading import resolve_model_path
    from radstream.serving.server import ServeConfig, serve

    scale: tuple[int, int] | None = None
    if autoscale:
        low, sep, high = autoscale.partition(":")
        if not sep or not low.isdigit() or not high.isdigit():
            raise typer.BadParameter("--autoscale takes MIN:MAX such as 1:2")
        scale = (int(low), int(high))
    if host not in ("127.0.0.1", "localhost", "::1") and not token:
        console.print(
            f"[yellow]warning[/yellow] binding {host} without --token: anyone who can reach "
            "this address can use the model"
        )
    try:
        config = ServeConfig(
            model_path=resolve_model_path(_settings(data_dir, model)),
            name=name,
            host=host,
            port=port,
            max_batch_size=max_batch_size,
            max_queue_delay_ms=max_queue_delay_ms,
            max_queue=max_queue,
            instances=instances,
            autoscale=scale,
            scale_up_delay_s=scale_up_delay,
            scale_down_delay_s=scale_down_delay,
            token=token,
        )
        serve(config, announce=lambda url: console.print(f"serving {name} at {url}/v2"))
    except RadStreamError as exc:
        _fail(exc)


@model_app.command("import")
def model_import(
    src: Annotated[Path, typer.Argument(exists=True, dir_okay=False, help="ONNX file")],
    labels: Annotated[
        str, typer.Option(help="txrv18, a comma-separated list, or a file of one per line")
    ] = "txrv18",
    input_range: Annotated[str, typer.Option(help="MIN,MAX the model expects")] = "-1024,1024",
    size: Annotated[int, typer.Option(min=1, help="Input side in pixels")] = 224,
    name: Annotated[str | None, typer.Option(help="Model name [default: file stem]")] = None,
    version: Annotated[str, typer.Option(help="Model version")] = "1",
    data_dir: DataDir = None,
) -> None:
    """Register a real model: copy it under the data directory with its metadata."""
    from radstream.model.importer import import_model

    try:
        low, high = (float(v) for v in input_range.split(","))
    except ValueError:
        raise typer.BadParameter("--input-range takes MIN,MAX such as -1024,1024") from None
    settings = _settings(data_dir)
    try:
        path = import_model(
            src,
            settings.models_dir,
            labels=labels,
            input_range=(low, high),
            size=size,
            name=name,
            version=version,
        )
    except (RadStreamError, ValueError) as exc:
        if isinstance(exc, RadStreamError):
            _fail(exc)
        raise typer.BadParameter(str(exc)) from None
    out.print(f"{path}\nuse it with --model {path} (or model.path in radstream.toml)")


@model_app.command("export-txrv")
def model_export_txrv(
    out_path: Annotated[Path, typer.Option("--out", help="ONNX file to write")],
    weights: Annotated[
        Path | None, typer.Option(exists=True, help="TorchXRayVision weights (.pt)")
    ] = None,
) -> None:
    """Export TorchXRayVision's DenseNet121 to ONNX (needs torch and torchxrayvision)."""
    from radstream.model.export_txrv import export_txrv

    try:
        path = export_txrv(weights, out_path)
    except RadStreamError as exc:
        _fail(exc)
        return
    out.print(str(path))


@model_app.command("predict")
def model_predict(
    image: Annotated[Path, typer.Argument(exists=True, dir_okay=False, help="PNG, JPEG or DICOM")],
    sidecar: Annotated[Path | None, typer.Option(exists=True, help="Its JSON sidecar")] = None,
    endpoint: Annotated[
        str | None, typer.Option(help="KServe v2 / Triton URL [default: in process]")
    ] = None,
    model: ModelPath = None,
    data_dir: DataDir = None,
) -> None:
    """Print the 14 CheXpert probabilities of one image, in process or through an endpoint."""
    from radstream.model.loading import load_model_client
    from radstream.model.predict import predict_image

    settings = _settings(data_dir, model)
    if endpoint:
        settings = settings.model_copy(
            update={"model": settings.model.model_copy(update={"endpoint": endpoint})}
        )
    try:
        probabilities = predict_image(image, load_model_client(settings), sidecar_path=sidecar)
    except RadStreamError as exc:
        _fail(exc)
        return
    sys.stdout.write(json.dumps(probabilities, indent=2) + "\n")


@model_app.command("info")
def model_info(
    model: ModelPath = None,
    data_dir: DataDir = None,
) -> None:
    """Show a model file's metadata (the configured model by default)."""
    from radstream.model import read_model_info
    from radstream.model.loading import resolve_model_path

    settings = _settings(data_dir)
    try:
        path = model or resolve_model_path(settings)
        info = read_model_info(path)
    except RadStreamError as exc:
        _fail(exc)
        return
    out.print_json(
        json.dumps(
            {
                "path": str(path),
                "name": info.name,
                "version": info.version,
                "sha256": info.sha256,
                "input_size": info.input_size,
                "input_range": [info.input_min, info.input_max],
                "channels": info.channels,
                "labels": list(info.labels),
            }
        )
    )


@app.command()
def bench(
    studies: Annotated[int, typer.Option(min=2, help="Measured studies (after warm-up)")] = 60,
    rate: Annotated[float | None, typer.Option(help="Open loop: studies per second")] = None,
    poisson: Annotated[bool, typer.Option("--poisson", help="Poisson arrivals at --rate")] = False,
    concurrency: Annotated[
        int | None, typer.Option(min=1, help="Closed loop: studies in flight")
    ] = None,
    shape: Annotated[
        str | None, typer.Option(help="step:R/S,R/S… | burst:N/S | ramp:R0-R1/S")
    ] = None,
    trace: Annotated[Path | None, typer.Option(exists=True, help="CSV of send offsets (s)")] = None,
    fmt: Annotated[str, typer.Option("--format", help="png|png16|jpeg|dicom|mix")] = "jpeg",
    size: Annotated[str, typer.Option(help="Image size WxH")] = "2000x2500",
    invalid_ratio: Annotated[float, typer.Option(min=0.0, max=0.99)] = 0.0,
    warmup: Annotated[int, typer.Option(min=0, help="Unmeasured studies sent first")] = 4,
    seed: Annotated[int, typer.Option()] = 1,
    baseline: Annotated[
        bool, typer.Option("--baseline", help="Also measure the in-memory limit: efficiency")
    ] = False,
    slo: Annotated[
        list[str] | None, typer.Option("--slo", help="NAME=VALUE target override (repeatable)")
    ] = None,
    pricing: Annotated[Path | None, typer.Option(exists=True, help="Pricing JSON override")] = None,
    memory_mb: Annotated[
        int | None, typer.Option(help="Lambda memory for the cost model [cost.memory_mb]")
    ] = None,
    arch: Annotated[str | None, typer.Option(help="x86_64 or arm64 [cost.architecture]")] = None,
    storage_class: Annotated[
        str | None, typer.Option(help="standard or express [cost.storage_class]")
    ] = None,
    state_machine: Annotated[
        str | None, typer.Option(help="STANDARD or EXPRESS [cost.state_machine]")
    ] = None,
    model_backend: Annotated[
        str, typer.Option(help="lambda, or endpoint: add the endpoint's instance-hours")
    ] = "lambda",
    endpoint_hourly: Annotated[
        float | None, typer.Option(help="Endpoint instance price per hour (USD)")
    ] = None,
    report: Annotated[Path | None, typer.Option(help="Write a self-contained HTML report")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="One JSON object on stdout")] = False,
    workers: Annotated[int | None, typer.Option(min=1, help="Worker processes")] = None,
    model: ModelPath = None,
    data_dir: DataDir = None,
    stack: Annotated[
        str | None,
        typer.Option(help="Benchmark this deployed AWS stack instead of local workers"),
    ] = None,
    region: RegionOpt = None,
    endpoint_url: AwsEndpointOpt = None,
) -> None:
    """Measure the pipeline under a load: latency from intended send time, throughput, cost,
    and an SLO verdict (exit status 1 on any breach). With --stack, the load goes to a
    deployed stack; its latencies are upper bounds (outcomes are seen by polling S3)."""
    from radstream.bench.runner import run_bench

    if stack is not None and (workers is not None or model is not None):
        # Both describe local workers; the stack runs the model it was deployed with.
        raise typer.BadParameter("--workers and --model are local only; not with --stack")
    cfg = _load_config(
        studies,
        rate,
        concurrency,
        poisson,
        shape,
        trace,
        fmt,
        size,
        invalid_ratio,
        seed,
        warmup=warmup,
        baseline=baseline,
        slo=slo or [],
        model_backend=model_backend,
        endpoint_hourly_usd=endpoint_hourly,
    )
    # Injected "image never arrives" studies would otherwise hold the run for the full wait.
    settings = _settings(
        data_dir, model, workers=workers, image_wait_s=5.0 if invalid_ratio else None
    )
    overrides = {
        "memory_mb": memory_mb,
        "architecture": arch,
        "storage_class": storage_class,
        "state_machine": state_machine,
        "pricing": pricing,
    }
    try:
        cost = type(settings.cost).model_validate(
            settings.cost.model_dump() | {k: v for k, v in overrides.items() if v is not None}
        )
    except ValueError as exc:
        raise typer.BadParameter(str(exc)) from None
    settings = settings.model_copy(update={"cost": cost})
    with _progress() as bar:
        tasks: dict[str, Any] = {}

        def progress(phase: str, done: int, total: int) -> None:
            if phase not in tasks:
                tasks[phase] = bar.add_task(phase, total=total)
            bar.update(tasks[phase], completed=done)

        try:
            stack_ref = _stack(settings, stack, region, endpoint_url) if stack else None
            result = run_bench(settings, cfg, progress, stack=stack_ref)
        except RadStreamError as exc:
            _fail(exc)
            return
    if report is not None:
        from radstream.bench.report_html import render_report

        render_report(result, report)
        console.print(f"report written to {report}")
    if as_json:
        public = {k: v for k, v in result.items() if k != "series"}
        sys.stdout.write(json.dumps(public, default=str) + "\n")
    else:
        _print_bench(result)
    if result.get("telemetry_note"):
        console.print(f"[yellow]note[/yellow] {result['telemetry_note']}")
    if not all(target["pass"] for target in result["slo"].values()):
        raise typer.Exit(1)


def _print_bench(r: dict[str, Any]) -> None:
    table = Table(title="RadStream benchmark", show_header=False)
    table.add_row("studies measured (valid)", str(r["n"]))
    table.add_row(
        "end-to-end p50 / p95 / p99 / max",
        f"{r['p50_ms']} / {r['p95_ms']} / {r['p99_ms']} / {r['max_ms']} ms (from intended send)",
    )
    late = r["late_sends"]
    table.add_row("late sends", f"{late['count']} (max {late['max_ms']} ms)")
    table.add_row(
        "throughput", f"{r['throughput_per_min']} /min ({'stable' if r['stable'] else 'UNSTABLE'})"
    )
    table.add_row("success rate", f"{r['success_rate']}")
    table.add_row("cost per image", f"${r['cost_per_image_usd']}")
    if r.get("efficiency") is not None:
        table.add_row("efficiency (vs in-memory limit)", f"{r['efficiency']}")
    for stage, stats in r["stages"].items():
        table.add_row(f"  {stage} p50 / p95", f"{stats['p50_ms']} / {stats['p95_ms']} ms")
    for name, slo in r["slo"].items():
        mark = "[green]pass[/green]" if slo["pass"] else "[red]FAIL[/red]"
        table.add_row(f"SLO {name} {slo['op']} {slo['limit']}", f"{slo['value']}  {mark}")
    out.print(table)


class OutputFormat(StrEnum):
    """How query results are printed."""

    table = "table"
    csv = "csv"
    json = "json"


@app.command()
def query(
    name: Annotated[str | None, typer.Argument(help="A named query (see --list)")] = None,
    list_queries: Annotated[bool, typer.Option("--list", help="List the named queries")] = False,
    param: Annotated[
        list[str] | None, typer.Option("--param", help="name=value (repeatable)")
    ] = None,
    sql: Annotated[str | None, typer.Option("--sql", help="Ad-hoc Athena SQL")] = None,
    fmt: Annotated[OutputFormat, typer.Option("--format")] = OutputFormat.table,
    data_dir: DataDir = None,
    stack: Annotated[
        str | None, typer.Option("--stack", help="Run on Athena, in this deployed stack")
    ] = None,
    region: Annotated[
        str | None, typer.Option(help="AWS region of --stack [default: aws.region]")
    ] = None,
    endpoint_url: Annotated[
        str | None,
        typer.Option("--endpoint-url", help="Send AWS calls here [default: aws.endpoint_url]"),
    ] = None,
) -> None:
    """Run Athena SQL over the telemetry lake (DuckDB locally, or Athena with --stack)."""
    from radstream.lake.duckdb_runner import LocalQueryRunner
    from radstream.lake.queries import named_queries

    if list_queries:
        for q in named_queries().values():
            takes = ", ".join(f"{p}={q.defaults.get(p, '?')}" for p in q.params)
            out.print(f"[bold]{q.name}[/bold]  {q.description}  [dim]({takes})[/dim]")
        return
    if (name is None) == (sql is None):
        raise typer.BadParameter("give a query NAME, or --sql, or --list")
    params = dict(_split_param(p) for p in param or [])
    settings = _settings(data_dir)
    try:
        if stack:
            from radstream.aws.athena_runner import AthenaQueryRunner
            from radstream.aws.session import AwsTarget, StackRef

            target = AwsTarget(
                region or settings.aws.region, endpoint_url or settings.aws.endpoint_url
            )
            athena = AthenaQueryRunner.for_stack(StackRef(stack, target))
            result = athena.run_named(name, params) if name else athena.run_sql(sql or "", params)
        else:
            with LocalQueryRunner(settings.lake_dir) as runner:
                result = (
                    runner.run_named(name, params) if name else runner.run_sql(sql or "", params)
                )
    except RadStreamError as exc:
        _fail(exc)
        return
    _print_rows(result.columns, result.rows, fmt)


def _split_param(text: str) -> tuple[str, str]:
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise typer.BadParameter(f"--param {text!r}: expected name=value")
    return key, value


def _print_rows(columns: list[str], rows: list[tuple[Any, ...]], fmt: OutputFormat) -> None:
    if fmt is OutputFormat.json:
        sys.stdout.write(
            json.dumps([dict(zip(columns, r, strict=True)) for r in rows], default=str) + "\n"
        )
    elif fmt is OutputFormat.csv:
        writer = csv.writer(sys.stdout)
        writer.writerow(columns)
        writer.writerows(rows)
    else:
        table = Table(*columns)
        for row in rows:
            # 6 significant digits: latencies keep their ms, and costs of $0.00015 stay visible.
            table.add_row(*(f"{v:.6g}" if isinstance(v, float) else str(v) for v in row))
        out.print(table)


@lake_app.command("glue-schema")
def lake_glue_schema(
    fmt: Annotated[str, typer.Option("--format", help="json (Glue TableInput) or ddl")] = "json",
    location: Annotated[
        str, typer.Option(help="S3 prefix of the telemetry table")
    ] = "s3://radstream-telemetry/telemetry/",
) -> None:
    """Print the Glue table of radstream.telemetry, derived from the telemetry model."""
    from radstream.lake.glue import DATABASE, create_table_ddl, table_input

    if fmt == "ddl":
        sys.stdout.write(create_table_ddl(location) + ";\n")
    elif fmt == "json":
        doc = {"DatabaseName": DATABASE, "TableInput": table_input(location)}
        sys.stdout.write(json.dumps(doc, indent=2) + "\n")
    else:
        raise typer.BadParameter("--format is json or ddl")


@lake_app.command("compact")
def lake_compact(data_dir: DataDir = None) -> None:
    """Merge each partition's small Parquet files into one, atomically."""
    from radstream.lake.compact import compact_lake

    report = compact_lake(_settings(data_dir).lake_dir)
    out.print(
        f"{report.partitions} partitions: {report.files_before} files → {report.files_after}, "
        f"{report.rows} rows rewritten"
    )


@lake_app.command("prune")
def lake_prune(
    older_than: Annotated[str, typer.Option(help="Age such as 30d")] = "30d",
    data_dir: DataDir = None,
) -> None:
    """Delete partitions older than the given number of days."""
    from datetime import timedelta

    from radstream.lake.compact import prune

    if not older_than.endswith("d") or not older_than[:-1].isdigit():
        raise typer.BadParameter("--older-than takes days, such as 30d")
    removed = prune(_settings(data_dir).lake_dir, older_than=timedelta(days=int(older_than[:-1])))
    out.print(f"removed {len(removed)} day(s): {', '.join(removed) or '-'}")


MemoryOpt = Annotated[int | None, typer.Option(help="Lambda memory [cost.memory_mb]")]
ArchOpt = Annotated[str | None, typer.Option(help="x86_64 or arm64 [cost.architecture]")]
MachineOpt = Annotated[str | None, typer.Option(help="STANDARD or EXPRESS [cost.state_machine]")]
ExpressOpt = Annotated[
    bool | None,
    typer.Option("--express-artifacts/--standard-artifacts", help="S3 Express for tensors"),
]
EndpointModelOpt = Annotated[
    str | None, typer.Option(help="KServe v2 URL; unset: ONNX Runtime in Lambda")
]
KmsOpt = Annotated[bool, typer.Option("--kms", help="SSE-KMS with a key from the stack")]
StackOpt = Annotated[str, typer.Option(help="Stack name (prefixes every resource name)")]
PythonOpt = Annotated[
    str | None,
    typer.Option(
        help="Lambda Python [3.12]; 3.11 only for an emulator that runs the code on Python 3.11"
    ),
]
RegionOpt = Annotated[str | None, typer.Option(help="AWS region [aws.region]")]
AwsEndpointOpt = Annotated[
    str | None,
    typer.Option(help="Send every AWS call here, e.g. an emulator [aws.endpoint_url]"),
]


def _template_options(
    settings: Settings,
    memory_mb: int | None,
    architecture: str | None,
    state_machine: str | None,
    express_artifacts: bool | None,
    model_endpoint: str | None,
    kms: bool,
) -> dict[str, Any]:
    """The template's options from the flags, else the settings: `aws template` prints
    exactly what `aws deploy` sends."""
    from radstream.aws.deploy import lambda_settings

    cost = settings.cost
    return {
        "memory_mb": memory_mb or cost.memory_mb,
        "architecture": architecture or cost.architecture,
        "state_machine_type": state_machine or cost.state_machine,
        "express_artifacts": (
            express_artifacts if express_artifacts is not None else cost.storage_class == "express"
        ),
        "model_endpoint": model_endpoint or settings.model.endpoint,
        "kms": kms,
        "settings_env": lambda_settings(settings)[0],
    }


def _stack(settings: Settings, name: str, region: str | None, endpoint_url: str | None) -> Any:
    from radstream.aws.session import AwsTarget, StackRef

    target = AwsTarget(
        region=region or settings.aws.region, endpoint_url=endpoint_url or settings.aws.endpoint_url
    )
    return StackRef(name=name, target=target)


@aws_app.command("template")
def aws_template(
    stack: StackOpt,
    memory_mb: MemoryOpt = None,
    architecture: ArchOpt = None,
    state_machine: MachineOpt = None,
    express_artifacts: ExpressOpt = None,
    model_endpoint: EndpointModelOpt = None,
    kms: KmsOpt = False,
    data_dir: DataDir = None,
) -> None:
    """Print the CloudFormation template of the whole stack (JSON), as `aws deploy` sends it."""
    from radstream.aws.template import template_json

    settings = _settings(data_dir)
    try:
        text = template_json(
            stack,
            **_template_options(
                settings,
                memory_mb,
                architecture,
                state_machine,
                express_artifacts,
                model_endpoint,
                kms,
            ),
        )
    except RadStreamError as exc:
        _fail(exc)
        return
    sys.stdout.write(text + "\n")


@aws_app.command("package")
def aws_package(
    out_dir: Annotated[Path, typer.Option("--out", help="Where to write the zips")] = Path(
        "dist/lambda"
    ),
    architecture: ArchOpt = None,
    python_version: PythonOpt = None,
    data_dir: DataDir = None,
) -> None:
    """Build the Lambda package and layers (manylinux wheels; reproducible; size-checked)."""
    from radstream.aws.package import DEFAULT_PYTHON, build_package

    settings = _settings(data_dir)
    try:
        manifest = build_package(
            out_dir,
            python_version=python_version or DEFAULT_PYTHON,
            architecture=architecture or settings.cost.architecture,
        )
    except RadStreamError as exc:
        _fail(exc)
        return
    for artifact in manifest.artifacts.values():
        out.print(
            f"{artifact.path}  {artifact.zipped_bytes / 1e6:7.1f} MB zipped  "
            f"{artifact.unzipped_bytes / 1e6:7.1f} MB unzipped  sha256 {artifact.sha256[:16]}"
        )
    for stage, size in manifest.functions.items():
        out.print(f"function {stage:<15} {size / 1e6:7.1f} MB of 262.1 MB")


@aws_app.command("deploy")
def aws_deploy(
    stack: StackOpt,
    region: RegionOpt = None,
    endpoint_url: AwsEndpointOpt = None,
    model: ModelPath = None,
    package_dir: Annotated[
        Path, typer.Option("--package", help="Package directory (built if missing)")
    ] = Path("dist/lambda"),
    python_version: PythonOpt = None,
    memory_mb: MemoryOpt = None,
    architecture: ArchOpt = None,
    state_machine: MachineOpt = None,
    express_artifacts: ExpressOpt = None,
    model_endpoint: EndpointModelOpt = None,
    kms: KmsOpt = False,
    named_queries: Annotated[
        bool | None,
        typer.Option(
            "--named-queries/--no-named-queries",
            help="Athena named queries [default: yes on AWS, no with --endpoint-url]",
        ),
    ] = None,
    confirm: Annotated[
        bool, typer.Option("--confirm", help="Ask before applying the change set")
    ] = False,
    data_dir: DataDir = None,
) -> None:
    """Create or update the stack through a change set; print the change set and the outputs."""
    from radstream.aws.deploy import DeployOptions, deploy, lambda_settings
    from radstream.aws.package import DEFAULT_PYTHON, build_package, load_manifest
    from radstream.model.loading import resolve_model_path
    from radstream.model.metadata import read_model_info

    settings = _settings(data_dir, model)
    ref = _stack(settings, stack, region, endpoint_url)
    try:
        options = _template_options(
            settings,
            memory_mb,
            architecture,
            state_machine,
            express_artifacts,
            model_endpoint,
            kms,
        )
        python = python_version or DEFAULT_PYTHON
        manifest = load_manifest(package_dir)
        if (
            manifest is None
            or manifest.architecture != options["architecture"]
            or manifest.python_version != python
        ):
            console.print(f"building the Lambda package into {package_dir}")
            manifest = build_package(
                package_dir, python_version=python, architecture=options["architecture"]
            )
        model_path = resolve_model_path(settings)
        info = read_model_info(model_path)
        preprocessing = {
            "size": info.input_size,
            "input_min": info.input_min,
            "input_max": info.input_max,
            "channels": info.channels,
        }
        _, secrets = lambda_settings(settings)
        outputs = deploy(
            ref,
            DeployOptions(
                secrets=secrets,
                package=manifest,
                # With an endpoint the model runs there; its file supplies preprocessing only.
                model_path=None if options["model_endpoint"] else model_path,
                model_preprocessing=preprocessing,
                template=options,
                named_queries=(
                    named_queries if named_queries is not None else ref.target.endpoint_url is None
                ),
            ),
            report=console.print,
            confirm=(lambda _changes: typer.confirm("apply these changes?")) if confirm else None,
        )
    except RadStreamError as exc:
        _fail(exc)
        return
    for key, value in sorted(outputs.items()):
        out.print(f"{key:<28} {value}")


@aws_app.command("destroy")
def aws_destroy(
    stack: StackOpt,
    region: RegionOpt = None,
    endpoint_url: AwsEndpointOpt = None,
    data_dir: DataDir = None,
) -> None:
    """Empty the stack's buckets (all versions) and delete the stack and its code bucket."""
    from radstream.aws.deploy import destroy

    ref = _stack(_settings(data_dir), stack, region, endpoint_url)
    try:
        destroy(ref, report=console.print)
    except RadStreamError as exc:
        _fail(exc)


@aws_app.command("status")
def aws_status(
    stack: StackOpt,
    region: RegionOpt = None,
    endpoint_url: AwsEndpointOpt = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON")] = False,
    data_dir: DataDir = None,
) -> None:
    """The stack's status, outputs and executions by status."""
    from radstream.aws.deploy import status

    ref = _stack(_settings(data_dir), stack, region, endpoint_url)
    try:
        report = status(ref)
    except RadStreamError as exc:
        _fail(exc)
        return
    if as_json:
        out.print_json(json.dumps(report))
        return
    out.print(f"stack {report['stack']}: {report['status']}")
    for key, value in sorted(report["outputs"].items()):
        out.print(f"  {key:<28} {value}")
    executions = ", ".join(f"{k} {v}" for k, v in sorted(report["executions"].items()))
    out.print(f"  executions: {executions or 'none'}")


def main() -> None:
    """Console-script entry point."""
    app()


if __name__ == "__main__":
    main()
