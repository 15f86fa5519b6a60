"""``bench``: measure the pipeline under a load, locally or on a deployed stack."""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass, fields
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.markup import escape
from rich.table import Table

from radstream.cli.app import (
    AwsEndpointOpt,
    JsonOpt,
    ModelPath,
    RegionOpt,
    app,
    console,
    out,
    own_data_dir,
    phase_progress,
    progress_bar,
    settings_for,
    stack_ref,
)
from radstream.cli.load import LoadOptions
from radstream.settings import CostSettings

if TYPE_CHECKING:
    from radstream.bench.report import BenchReport

"""``run_bench``'s report: the ``--json`` object (plus raw series). A JSON boundary until
the bench package gives its report a model."""


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
    as_json: JsonOpt = False,
    workers: Annotated[int | None, typer.Option(min=1, help="Worker processes")] = None,
    model: ModelPath = None,
    data_dir: Annotated[
        Path | None,
        typer.Option(
            "--data-dir",
            help="Data directory [default: a 'bench' folder inside the data directory, so "
            "synthetic studies never mix with real ones]",
        ),
    ] = None,
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
    load = LoadOptions(
        studies=studies,
        rate=rate,
        concurrency=concurrency,
        poisson=poisson,
        shape=shape,
        trace=trace,
        fmt=fmt,
        size=size,
        invalid_ratio=invalid_ratio,
        seed=seed,
    )
    cfg = load.config(
        warmup=warmup,
        baseline=baseline,
        slo=slo or [],
        model_backend=model_backend,
        endpoint_hourly_usd=endpoint_hourly,
    )
    # Injected "image never arrives" studies would otherwise hold the run for the full wait.
    settings = settings_for(
        data_dir, model, workers=workers, image_wait_s=5.0 if invalid_ratio else None
    )
    cost = _cost(
        settings.cost,
        CostFlags(memory_mb, arch, storage_class, state_machine, pricing),
    )
    settings = settings.model_copy(update={"cost": cost})
    if stack is None:
        # Synthetic studies in their own data directory: the operational one stays real.
        settings = own_data_dir(settings, data_dir, "bench")
        if not settings.db_path.is_file():
            console.print(f"creating data directory {escape(str(settings.data_dir.resolve()))}")
    with progress_bar() as bar:
        ref = stack_ref(settings, stack, region, endpoint_url) if stack else None
        result = run_bench(settings, cfg, phase_progress(bar), stack=ref)
    _show(result, report=report, as_json=as_json)


@dataclass(frozen=True)
class CostFlags:
    """The cost-model flags of ``bench``, named as the ``cost`` settings; None: keep it."""

    memory_mb: int | None
    architecture: str | None
    storage_class: str | None
    state_machine: str | None
    pricing: Path | None

    def given(self) -> dict[str, object]:
        """The flags that were given, by setting name."""
        return {
            f.name: getattr(self, f.name) for f in fields(self) if getattr(self, f.name) is not None
        }


def _cost(current: CostSettings, flags: CostFlags) -> CostSettings:
    """The cost settings with the flags on top, validated as the settings file would be."""
    try:
        return CostSettings.model_validate(current.model_dump() | flags.given())
    except ValueError as exc:
        raise typer.BadParameter(str(exc)) from None


def _show(result: BenchReport, *, report: Path | None, as_json: bool) -> None:
    """Print the benchmark (``--json``: one object), write its report; exit 1 on a breach."""
    if report is not None:
        from radstream.bench.report_html import render_report

        render_report(result, report)
        console.print(f"report written to {escape(str(report))}")
    if as_json:
        sys.stdout.write(json.dumps(result.json_object(), default=str) + "\n")
    else:
        _print_bench(result)
    if result.telemetry_note:
        console.print(f"[yellow]note[/yellow] {escape(result.telemetry_note)}")
    if not result.slo_met:
        raise typer.Exit(1)


def _print_bench(report: BenchReport) -> None:
    from radstream.bench.console import summary_rows

    table = Table(title="RadStream benchmark", show_header=False)
    for label, value in summary_rows(report):
        table.add_row(label, value)
    out.print(table)
