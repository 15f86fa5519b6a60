"""``model …``: build, serve, import, export, predict with and inspect model files."""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated

import numpy as np
import typer
from rich.markup import escape
from rich.table import Table

from radstream.cli.app import DataDir, ModelPath, console, model_app, out, settings_for
from radstream.cli.tokens import read_token
from radstream.errors import RadStreamError
from radstream.logs import get_logger
from radstream.model.fidelity import DEFAULT_MAX_DELTA, FidelityReport
from radstream.model.metadata import UNTRAINED_NOTE, ModelInfo

log = get_logger(__name__)

PROBABILITY_DECIMALS = 4

LOOPBACK = ("127.0.0.1", "localhost", "::1")

TOKEN_ENV = "RADSTREAM_MODEL__TOKEN"
"""Where ``model serve`` reads its bearer token from the environment: the same variable
the pipeline's client (``model.token``) reads, so one secret configures both sides."""
LEGACY_TOKEN_ENV = "RADSTREAM_SERVE_TOKEN"
"""The variable earlier versions read; still honoured when ``TOKEN_ENV`` is unset."""


def serve_token(
    token: str | None, token_file: Path | None, environ: Mapping[str, str]
) -> str | None:
    """The bearer token ``model serve`` requires: from ``--token-file``, ``--token`` or the
    environment (``RADSTREAM_MODEL__TOKEN``, then the older name); None for none."""
    return read_token(token, token_file, environ, (TOKEN_ENV, LEGACY_TOKEN_ENV))


@model_app.command("build")
def model_build(
    seed: Annotated[int, typer.Option(help="Weight seed")] = 0,
    data_dir: DataDir = None,
) -> None:
    """Write the untrained stand-in DenseNet121 (ONNX) under the data directory."""
    from radstream.model import ensure_standin, read_model_info

    path = ensure_standin(settings_for(data_dir).models_dir, seed=seed)
    info = read_model_info(path)
    out.print(f"{escape(str(path))}  ({info.name} v{info.version}, sha256 {info.sha256[:16]}…)")
    if info.untrained:
        console.print(f"[yellow]note[/yellow]: {UNTRAINED_NOTE}")


def parse_autoscale(text: str | None) -> tuple[int, int] | None:
    """``MIN:MAX`` → (min, max) instances; None when not given."""
    if not text:
        return None
    low, sep, high = text.partition(":")
    if not sep or not low.isdigit() or not high.isdigit():
        raise typer.BadParameter("--autoscale takes MIN:MAX such as 1:2")
    return int(low), int(high)


@model_app.command("serve")
def model_serve(
    host: Annotated[
        str, typer.Option(help="Address to bind (loopback unless told otherwise)")
    ] = "127.0.0.1",
    port: Annotated[int, typer.Option(min=0, max=65535)] = 8000,
    name: Annotated[
        str | None,
        typer.Option(help="Model name in the URL [default: the name in the model file]"),
    ] = None,
    max_batch_size: Annotated[int, typer.Option(min=1)] = 8,
    max_queue_delay_ms: Annotated[float, typer.Option(min=0.0)] = 5.0,
    max_queue: Annotated[int, typer.Option(min=1, help="Beyond this: 503 + Retry-After")] = 64,
    instances: Annotated[int, typer.Option(min=1, help="Worker processes (fixed)")] = 1,
    autoscale: Annotated[
        str | None, typer.Option(help="MIN:MAX instances, scaled on queue depth")
    ] = None,
    scale_up_delay: Annotated[float, typer.Option(help="Seconds of backlog before adding")] = 1.0,
    scale_down_delay: Annotated[float, typer.Option(help="Idle seconds before removing")] = 10.0,
    token_file: Annotated[
        Path | None,
        typer.Option(
            dir_okay=False,
            help=f"Require the bearer token in this file (or set {TOKEN_ENV})",
        ),
    ] = None,
    token: Annotated[
        str | None,
        typer.Option(
            help="Require this bearer token. Visible to every user in `ps`: prefer "
            f"--token-file or {TOKEN_ENV}",
        ),
    ] = None,
    model: ModelPath = None,
    data_dir: DataDir = None,
) -> None:
    """Serve the model over KServe v2 / Open Inference Protocol (Triton-compatible)."""
    from radstream.model.loading import resolve_model_path
    from radstream.serving.server import ServeConfig, serve

    scale = parse_autoscale(autoscale)
    if token is not None:
        console.print(
            "[yellow]warning[/yellow] --token is visible to every user of this machine "
            f"(ps, /proc); use --token-file or {TOKEN_ENV} instead"
        )
    secret = serve_token(token, token_file, os.environ)
    if host not in LOOPBACK and not secret:
        console.print(
            f"[yellow]warning[/yellow] binding {escape(host)} without a token: anyone who can "
            "reach this address can use the model"
        )
    from radstream.model import read_model_info

    settings = settings_for(data_dir, model)
    model_path = resolve_model_path(settings)
    info = read_model_info(model_path)
    # One name for the model everywhere: the file's, which results also carry.
    name = name or info.name
    config = ServeConfig(
        model_path=model_path,
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
        token=secret,
        precision=settings.model.precision,
        runtime=settings.model.runtime,
        allow_unverified=settings.model.allow_unverified,
    )
    log.info("model server starting", extra={"model": name, "instances": instances})

    def announce(url: str) -> None:
        untrained = " (untrained stand-in)" if info.untrained else ""
        console.print(
            f"serving {escape(name)} v{escape(info.version)}{untrained} from "
            f"{escape(str(model_path))} at {escape(url)}/v2/models/{escape(name)}"
        )

    serve(config, announce=announce)


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
    settings = settings_for(data_dir)
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
    except RadStreamError:
        raise  # the CLI's error handler prints it with its code
    except ValueError as exc:
        # import_model says what is wrong with the options (labels, range) as ValueError.
        raise typer.BadParameter(str(exc)) from None
    shown = escape(str(path))
    out.print(f"{shown}\nuse it with --model {shown} (or model.path in radstream.toml)")


@model_app.command("export-txrv")
def model_export_txrv(
    out_path: Annotated[Path, typer.Option("--out", help="ONNX file to write")],
    weights: Annotated[
        Path | None, typer.Option(exists=True, help="TorchXRayVision weights (.pt)")
    ] = None,
) -> None:
    """Export TorchXRayVision's DenseNet121 to ONNX (needs torch and torchxrayvision)."""
    from radstream.model.export_txrv import export_txrv

    out.print(escape(str(export_txrv(weights, out_path))))


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
    from radstream.stages.predict import predict_image

    settings = settings_for(data_dir, model)
    if endpoint:
        settings = settings.model_copy(
            update={"model": settings.model.model_copy(update={"endpoint": endpoint})}
        )
    client = load_model_client(settings)
    probabilities = predict_image(image, client, sidecar_path=sidecar)
    # Four decimals: more is noise in a probability, and a user reads these.
    shown = {
        k: None if v is None else round(v, PROBABILITY_DECIMALS) for k, v in probabilities.items()
    }
    sys.stdout.write(json.dumps(shown, indent=2) + "\n")
    if client.info.untrained:
        console.print(f"[yellow]note[/yellow]: {UNTRAINED_NOTE}")


@model_app.command("info")
def model_info(model: ModelPath = None, data_dir: DataDir = None) -> None:
    """Show a model file's metadata (the configured model by default) and what the CPU offers."""
    from radstream.model import read_model_info
    from radstream.model.backends import choose, cpu_support
    from radstream.model.fidelity import verified
    from radstream.model.loading import resolve_model_path
    from radstream.model.openvino_runtime import openvino_available

    settings = settings_for(data_dir)
    path = model or resolve_model_path(settings)
    info = read_model_info(path)
    report = verified(info, info.precision)
    try:
        choice = choose(info, precision=settings.model.precision, runtime=settings.model.runtime)
        runs_as: dict[str, str | None] = {
            "runtime": choice.runtime,
            "precision": choice.precision,
            "note": choice.note,
        }
    except RadStreamError as exc:  # the settings contradict the file: say so, still show it
        runs_as = {"runtime": None, "precision": None, "note": exc.message}
    doc = {
        "path": str(path),
        "name": info.name,
        "version": info.version,
        "sha256": info.sha256,
        "input_size": info.input_size,
        "input_range": [info.input_min, info.input_max],
        "channels": info.channels,
        "labels": list(info.labels),
        "trained": not info.untrained,
        "precision": info.precision,
        "precision_runtime": info.precision_runtime,
        "fidelity_verified": info.precision == "fp32" or report is not None,
        "fidelity_max_abs_delta": None if report is None else report.max_abs_delta,
        "runs_as": runs_as,
        "cpu": cpu_support().as_dict(),
        "openvino_installed": openvino_available(),
    }
    out.print_json(json.dumps(doc))
    if info.untrained:
        console.print(f"[yellow]note[/yellow]: {UNTRAINED_NOTE}")


IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".dcm", ".dicom")


def load_images(directory: Path, model_path: Path) -> list[tuple[str, np.ndarray]]:
    """Every image under ``directory`` (sorted by path), preprocessed exactly as the pipeline
    preprocesses it for the model at ``model_path``: (relative name, tensor) pairs.

    Files that are not images, or that the pipeline would reject, are skipped with a
    warning; raises typer.BadParameter when none is left.
    """
    from radstream.imaging import prepare_image
    from radstream.model import read_model_info
    from radstream.stages.prepare import preprocessing_for

    preprocessing = preprocessing_for(read_model_info(model_path))
    found: list[tuple[str, np.ndarray]] = []
    for file in sorted(p for p in directory.rglob("*") if p.is_file()):
        if file.suffix.lower() not in IMAGE_SUFFIXES:
            continue
        name = str(file.relative_to(directory))
        try:
            prepared = prepare_image(
                file.read_bytes(), filename=file.name, preprocessing=preprocessing
            )
        except RadStreamError as exc:
            console.print(f"[yellow]skipped[/yellow] {escape(name)}: {escape(exc.message)}")
            continue
        found.append((name, prepared.tensor))
    if not found:
        raise typer.BadParameter(f"no usable image (PNG, JPEG, DICOM) under {directory}")
    return found


def print_report(report: FidelityReport) -> None:
    """The fidelity report as a table on the console, and as JSON on stdout."""
    table = Table(title=f"fidelity on {report.images} image(s), threshold {report.threshold}")
    table.add_column("label")
    table.add_column("max |Δp|", justify="right")
    table.add_column("mean |Δp|", justify="right")
    for row in report.labels:
        table.add_row(escape(row.label), f"{row.max_abs_delta:.4f}", f"{row.mean_abs_delta:.4f}")
    table.add_row("[bold]all[/bold]", f"{report.max_abs_delta:.4f}", f"{report.mean_abs_delta:.4f}")
    console.print(table)
    console.print(
        f"top-1 label agreement {report.top1_agreement:.3f}, "
        f"mean rank correlation {report.rank_correlation:.4f}"
    )
    sys.stdout.write(report.to_json() + "\n")


ImagesDir = Annotated[
    Path, typer.Option("--images", exists=True, file_okay=False, help="Folder of images")
]
MaxDelta = Annotated[
    float, typer.Option(min=0.0, help="Largest |Δp| allowed on any label and image")
]


@model_app.command("compare")
def model_compare(
    reference: Annotated[Path, typer.Argument(exists=True, dir_okay=False, help="fp32 model")],
    candidate: Annotated[Path, typer.Argument(exists=True, dir_okay=False, help="Model to check")],
    images: ImagesDir,
    max_delta: MaxDelta = DEFAULT_MAX_DELTA,
    runtime: Annotated[
        str, typer.Option(help="Runtime of the candidate: onnxruntime, openvino or auto")
    ] = "auto",
) -> None:
    """Fidelity gate: compare two models' probabilities on the same images; exit 1 above it.

    Both models see the images preprocessed exactly as the pipeline does. This measures how
    close the candidate stays to the reference, not whether either is clinically right.
    """
    from radstream.model.backends import load_backend
    from radstream.model.fidelity import compare_models
    from radstream.model.runtime import OnnxModel

    ref = OnnxModel.load(reference, allow_unverified=True)
    cand_info = read_info(candidate)
    cand = load_backend(candidate, precision=cand_info.precision, runtime=runtime)
    tensors = [t for _, t in load_images(images, reference)]
    try:
        report = compare_models(ref, cand, tensors, max_delta=max_delta)
    except ValueError as exc:
        raise typer.BadParameter(str(exc)) from None
    print_report(report)
    if not report.passed:
        console.print(f"[red]FAIL[/red] max |Δp| {report.max_abs_delta:.4f} > {report.threshold}")
        raise typer.Exit(1)
    console.print(f"[green]PASS[/green] max |Δp| {report.max_abs_delta:.4f} <= {max_delta}")


def read_info(path: Path) -> ModelInfo:
    """The model file's ModelInfo (imports ONNX only when called)."""
    from radstream.model import read_model_info

    return read_model_info(path)


@model_app.command("optimize")
def model_optimize(
    out_path: Annotated[Path, typer.Option("--out", dir_okay=False, help="ONNX file to write")],
    calibrate: Annotated[
        Path,
        typer.Option(exists=True, file_okay=False, help="Images to calibrate and check on"),
    ],
    precision: Annotated[str, typer.Option(help="int8 or bf16")] = "int8",
    runtime: Annotated[
        str | None,
        typer.Option(help="onnxruntime (int8) or openvino (bf16) [default: per precision]"),
    ] = None,
    max_delta: MaxDelta = DEFAULT_MAX_DELTA,
    model: ModelPath = None,
    data_dir: DataDir = None,
) -> None:
    """Make a reduced-precision model, check it against fp32 on held-out images, write it.

    int8: ONNX Runtime static quantization (QDQ, per-channel weights) calibrated on 3/4 of
    the images; the other 1/4 are held out for the fidelity gate. bf16: the fp32 graph,
    marked to run in bf16 with OpenVINO. Nothing is written if the gate fails (exit 1).
    """
    from radstream.model.loading import resolve_model_path
    from radstream.model.quantize import FidelityGateFailed, optimize_model

    if precision not in ("int8", "bf16"):
        raise typer.BadParameter("--precision takes int8 or bf16")
    chosen = runtime or ("onnxruntime" if precision == "int8" else "openvino")
    source = resolve_model_path(settings_for(data_dir, model))
    tensors = [t for _, t in load_images(calibrate, source)]
    try:
        result = optimize_model(
            source, tensors, out_path, precision=precision, runtime=chosen, max_delta=max_delta
        )
    except FidelityGateFailed as exc:
        print_report(exc.report)
        console.print(f"[red]FAIL[/red] {escape(str(exc))}")
        raise typer.Exit(1) from None
    except ValueError as exc:
        raise typer.BadParameter(str(exc)) from None
    print_report(result.report)
    console.print(
        f"[green]PASS[/green] wrote {escape(str(result.path))} ({result.precision}, "
        f"{result.runtime}, calibrated on {result.calibration_images} image(s))"
    )
