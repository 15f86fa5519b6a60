"""``upload``: files, or synthetic studies at a load shape; locally or to a deployed stack."""

from __future__ import annotations

import sqlite3
import time
import uuid
from collections.abc import Iterable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.markup import escape

from radstream.cli.app import (
    AwsEndpointOpt,
    DataDir,
    RegionOpt,
    app,
    console,
    open_engine,
    out,
    progress_bar,
    settings_for,
    stack_ref,
)
from radstream.cli.load import LoadOptions
from radstream.layout import INCOMING
from radstream.settings import Settings
from radstream.stages.ports import ObjectInfo, ObjectStore

if TYPE_CHECKING:
    from radstream.aws.session import StackRef
    from radstream.loadgen.synthetic import Study
    from radstream.stages.completions import Outcome


@dataclass(frozen=True)
class FileOptions:
    """How files on disk are uploaded."""

    follow_symlinks: bool = False
    replace: bool = False


@dataclass(frozen=True)
class UploadTarget:
    """Where uploads go: a store, and (locally) the engine database that sees outcomes."""

    store: ObjectStore
    conn: sqlite3.Connection | None = None
    """The local engine's database; None for a deployed stack (outcomes come from S3)."""


@app.command(
    help=f"Upload studies (image first, sidecar last) under {INCOMING}{{study_id}}/: files, "
    "or synthetic ones at a chosen load shape; locally, or to a deployed stack (--stack)."
)
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
    follow_symlinks: Annotated[
        bool,
        typer.Option(
            "--follow-symlinks",
            help="Follow symbolic links (only to files inside the PATHs given)",
        ),
    ] = False,
    replace_images: Annotated[
        bool,
        typer.Option(
            "--replace",
            help="Replace a stored image of the same study and name that has no outcome "
            "yet (default: refused as STUDY_CONFLICT)",
        ),
    ] = False,
    no_wait: Annotated[bool, typer.Option("--no-wait", help="Do not wait for outcomes")] = False,
    timeout: Annotated[float, typer.Option(help="Seconds to wait for outcomes")] = 300.0,
    stack: Annotated[
        str | None, typer.Option(help="Upload to this deployed AWS stack instead")
    ] = None,
    region: RegionOpt = None,
    endpoint_url: AwsEndpointOpt = None,
    data_dir: DataDir = None,
) -> None:
    """Upload studies, from files or synthetic, locally or to a deployed stack.

    Exits with status 1 when a study failed or was lost, or when a file was skipped,
    refused or ambiguous (each is listed).
    """
    settings = settings_for(data_dir)
    files = FileOptions(follow_symlinks=follow_symlinks, replace=replace_images)
    if (paths is None) == (synthetic is None):
        raise typer.BadParameter("give PATHs or --synthetic N")
    load = (
        None
        if synthetic is None
        else LoadOptions(
            studies=synthetic,
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
    )
    if stack is not None:
        if concurrency:
            raise typer.BadParameter("--concurrency is local only; use --rate or --shape")
        ref = stack_ref(settings, stack, region, endpoint_url)
        problems = _upload_to_stack(
            ref, paths or [], load, files, wait=not no_wait, timeout=timeout
        )
    else:
        problems = _upload_locally(
            settings, paths or [], load, files, wait=not no_wait, timeout=timeout
        )
    if problems:
        console.print(f"[red]{problems} file(s) skipped, refused or ambiguous[/red] (listed above)")
        raise typer.Exit(1)


def _upload_locally(
    settings: Settings,
    paths: list[Path],
    load: LoadOptions | None,
    files: FileOptions,
    *,
    wait: bool,
    timeout: float,
) -> int:
    """Upload and wait (locally); returns how many files were skipped, refused or ambiguous."""
    from radstream.local.executor import execution_id
    from radstream.local.outcomes import collect_outcomes

    with open_engine(settings) as engine:
        target = UploadTarget(store=engine.store, conn=engine.conn)
        infos, problems = (
            (upload_synthetic(target, load), 0)
            if load
            else _upload_files(engine.store, paths, files)
        )
        console.print(f"uploaded {len(infos)} studies to {escape(str(settings.data_dir))}")
        if not wait or not infos:
            return problems
        if not engine.executor.live_workers():
            console.print(
                "no worker is running: start `radstream serve`, or run "
                "`radstream run --until-idle`, to process them"
            )
            return problems
        console.print("waiting for outcomes")
        ids = [execution_id(i.bucket, i.key, i.etag) for i in infos]
        deadline = time.monotonic() + timeout
        while engine.executor.terminal_count(ids) < len(ids) and time.monotonic() < deadline:
            time.sleep(0.1)
        _print_outcomes(
            collect_outcomes(engine.executor, engine.store, infos), engine.store, problems
        )
    return problems


def _upload_to_stack(
    stack: StackRef,
    paths: list[Path],
    load: LoadOptions | None,
    files: FileOptions,
    *,
    wait: bool,
    timeout: float,
) -> int:
    """Upload to the stack's images bucket; outcomes come from its results bucket."""
    from radstream.aws.completions import S3CompletionWatcher
    from radstream.aws.outcomes import stack_store, wait_for_outcomes

    store = stack_store(stack)
    # Outcomes already there (an earlier upload of the same images) must not count.
    watcher = S3CompletionWatcher(store, min_interval_s=0.0) if wait else None
    infos, problems = (
        (upload_synthetic(UploadTarget(store=store), load), 0)
        if load
        else _upload_files(store, paths, files)
    )
    console.print(f"uploaded {len(infos)} studies to stack {escape(stack.name)}")
    if watcher is None or not infos:
        return problems
    console.print("waiting for outcomes (polling the results bucket)")
    now = time.time()
    found = wait_for_outcomes(watcher, [(i.key, now) for i in infos], timeout_s=timeout)
    _print_outcomes(found, store, problems)
    return problems


def _upload_files(
    store: ObjectStore, paths: list[Path], files: FileOptions
) -> tuple[list[ObjectInfo], int]:
    """Upload what ``paths`` hold; returns the sidecars put and how many files were
    skipped, refused or ambiguous (each printed with its reason)."""
    from radstream.errors import RadStreamError
    from radstream.loadgen.uploader import (
        Skipped,
        find_studies,
        is_dicom_image,
        sidecar_path_for,
        upload_dicom_drop,
        upload_files,
    )

    found = find_studies(paths, follow_symlinks=files.follow_symlinks)
    problems: list[Skipped] = [*found.skipped]
    drops: list[ObjectInfo] = []
    dropped: dict[str, str] = {}  # drop key -> digest: two files never share one key
    for image in found.orphans:
        if is_dicom_image(image):
            # A DICOM file carries its own study: it is uploaded as a study of its own.
            try:
                drops.append(upload_dicom_drop(store, image, dropped))
            except RadStreamError as exc:
                problems.append(Skipped(image, exc.message, exc.code))
                continue
            except OSError as exc:
                problems.append(Skipped(image, f"cannot be read: {exc.strerror or exc}"))
                continue
            console.print(
                f"{escape(str(image))}: DICOM without a sidecar → {escape(drops[-1].key)}"
            )
            continue
        problems.append(Skipped(image, f"no sidecar {sidecar_path_for(image)}"))
    for study in found.studies:
        if study.image is None:
            console.print(
                f"[yellow]warning[/yellow] {escape(str(study.sidecar))}: no image next to it "
                "(same name with .png, .jpg, .dcm, or a DICOM file without extension); "
                "uploaded alone, it will fail with IMAGE_MISSING"
            )
    for item in found.ambiguous:
        console.print(
            f"[yellow]ambiguous[/yellow] {_shown(item.path)}: {escape(item.reason)}; "
            "uploaded, the study will fail with IMAGE_AMBIGUOUS"
        )
    uploaded = upload_files(store, found.studies, replace=files.replace)
    problems.extend(uploaded.refused)
    for item in problems:
        code = f"{item.code}: " if item.code else ""
        console.print(f"[yellow]skipped[/yellow] {_shown(item.path)}: {escape(code + item.reason)}")
    if any(item.code == "STUDY_CONFLICT" for item in problems):
        from radstream.errors import StudyConflict

        console.print(f"  → {escape(StudyConflict.hint)}")
    return [*drops, *uploaded.infos], len(problems) + len(found.ambiguous)


def _shown(path: Path) -> str:
    """A path as printable text: a newline or other control character in a name shows as
    its escape, so that one line stays one line."""
    return escape(repr(str(path))[1:-1])


def _print_outcomes(outcomes: Iterable[Outcome], store: ObjectStore, problems: int = 0) -> None:
    """One line per study: its upload, its outcome object and top finding, or its failure
    code and hint (or lost). Exits with status 1 when any study failed or was lost (saying
    also how many files were skipped, when ``problems``)."""
    from radstream.local.results import UNTRAINED_NOTE, read_row

    bad = untrained = total = 0
    for outcome in outcomes:
        total += 1
        if outcome.status == "lost":
            bad += 1
            out.print(f"lost      {escape(outcome.sidecar_key)}: no result and no failure")
            continue
        key = outcome.object_key or ""
        row = read_row(store, key)
        what = row.summary(top=1) if row is not None else outcome.error_code or ""
        if row is not None and row.untrained:
            untrained += 1
        if outcome.status != "succeeded":
            bad += 1
            hint = f"  → {row.hint}" if row is not None and row.hint else ""
            what = f"{outcome.error_code}{hint}"
        line = f"{outcome.status:<9} {outcome.sidecar_key} → {key}  {what}"
        out.print(escape(line), highlight=False)
    if untrained:
        console.print(f"[yellow]note[/yellow]: {UNTRAINED_NOTE}")
    if bad:
        console.print(f"[red]{bad} of {total} studies failed or were lost[/red]")
        if problems:
            console.print(
                f"[red]{problems} file(s) skipped, refused or ambiguous[/red] (listed above)"
            )
        raise typer.Exit(1)


def upload_synthetic(target: UploadTarget, load: LoadOptions) -> list[ObjectInfo]:
    """Generate ``load.studies`` studies and upload them at the load's shape (all at once
    when none is given); return what was uploaded."""
    from radstream.bench.runner import generate, schedule
    from radstream.loadgen.driver import LoadDriver
    from radstream.loadgen.uploader import upload_generated
    from radstream.local.completions import CompletionWatcher

    if load.concurrency and target.conn is None:
        raise typer.BadParameter("--concurrency is local only; use --rate or --shape")
    if not load.has_shape:
        load = replace(load, shape=f"burst:{load.studies}/1")  # send everything at once
    cfg = load.config(warmup=0)
    # A benchmark needs two studies for its statistics; an upload of one is fine.
    replace(cfg, studies=max(cfg.studies, 2)).validate()
    count = load.studies
    infos: list[ObjectInfo] = []
    with progress_bar() as bar:
        task = bar.add_task("generate", total=count)
        _, studies = generate(cfg, uuid.uuid4().hex[:6])
        bar.update(task, completed=count)

        def send(study: Study) -> str:
            info = upload_generated(target.store, study)
            infos.append(info)
            return info.key

        sending = bar.add_task("upload", total=count)
        watcher = (
            CompletionWatcher(target.conn) if load.concurrency and target.conn is not None else None
        )
        driver = LoadDriver(send, watcher, progress=lambda d, _t: bar.update(sending, completed=d))
        if load.concurrency:
            driver.closed_loop(studies, load.concurrency)
        else:
            driver.open_loop(studies, schedule(cfg, count), wait=False)
        bar.update(sending, completed=len(infos))
    return infos
