"""``radstream demo``: synthetic studies through the whole embedded pipeline."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from radstream.bench.outcomes import OutcomeSummary, summarise
from radstream.loadgen.synthetic import Study, make_studies
from radstream.loadgen.uploader import upload_generated
from radstream.local.engine import LocalEngine
from radstream.local.executor import execution_id
from radstream.local.outcomes import collect_outcomes
from radstream.local.pool import WorkerPool
from radstream.local.results import read_row
from radstream.model.loading import resolve_model_path
from radstream.model.metadata import read_model_info
from radstream.settings import Settings
from radstream.stages.completions import Outcome, outcome_key_of
from radstream.stages.ports import ObjectInfo

DEMO_FORMATS = ("png", "jpeg", "dicom")

Progress = Callable[[str, int, int], None]


@dataclass(frozen=True)
class DemoReport:
    """What the demo prints."""

    summary: OutcomeSummary
    outcomes: list[Outcome]
    expected: dict[str, str | None]
    """sidecar key -> the error code the study was made to fail with (None: should succeed)."""
    model: str = ""
    """The model that ran: its name and version, or its endpoint."""
    model_trained: bool = True
    """False when the untrained stand-in produced the probabilities."""

    @property
    def unexpected(self) -> list[str]:
        """Studies whose outcome differs from what they were built to produce."""
        bad = []
        for outcome in self.outcomes:
            want = self.expected[outcome.sidecar_key]
            got = outcome.error_code if outcome.status == "failed" else None
            if outcome.status == "lost" or got != want:
                bad.append(
                    f"{outcome.sidecar_key}: expected {want or 'success'}, got "
                    f"{got or outcome.status}"
                )
        return bad


def run_demo(
    settings: Settings,
    *,
    studies: int,
    invalid: int,
    seed: int = 7,
    width: int = 2000,
    height: int = 2500,
    progress: Progress | None = None,
    timeout_s: float | None = None,
) -> DemoReport:
    """Generate studies, start workers, upload, wait for every outcome, and summarise."""
    report = progress or (lambda _phase, _done, _total: None)
    rng = np.random.default_rng(seed)
    run = uuid.uuid4().hex[:6]
    report("generate", 0, studies)
    made = make_studies(studies, invalid, formats=DEMO_FORMATS, rng=rng, width=width, height=height)
    report("generate", len(made), len(made))
    if settings.model.endpoint:
        model, trained = f"{settings.model.endpoint_model} at {settings.model.endpoint}", True
    else:
        # Build the stand-in once, before the workers race for it.
        model_info = read_model_info(resolve_model_path(settings))
        model, trained = f"{model_info.name} v{model_info.version}", not model_info.untrained
    with LocalEngine.open(settings) as engine, WorkerPool(settings) as pool:
        pool.wait_ready(engine.executor)
        uploads: list[ObjectInfo] = []
        expected: dict[str, str | None] = {}
        for i, study in enumerate(made):
            info = _upload(engine, study, run)
            uploads.append(info)
            expected[info.key] = study.expected_code
            report("upload", i + 1, len(made))
        _wait_terminal(engine, pool, uploads, report, timeout_s or 60.0 + 5.0 * len(made))
    with LocalEngine.open(settings) as engine:
        outcomes = collect_outcomes(engine.executor, engine.store, uploads)
        if settings.model.endpoint:  # the results say whether the served model is trained
            rows = (
                read_row(engine.store, outcome_key_of(o.sidecar_key, "result"))
                for o in outcomes
                if o.status == "succeeded"
            )
            trained = not any(r is not None and r.untrained for r in rows)
    return DemoReport(
        summary=summarise(outcomes),
        outcomes=outcomes,
        expected=expected,
        model=model,
        model_trained=trained,
    )


def _upload(engine: LocalEngine, study: Study, run: str) -> ObjectInfo:
    # A per-run prefix keeps repeated demos in one data directory apart.
    study = study.renamed(f"demo-{run}-{study.study_id}")
    return upload_generated(engine.store, study)


def _wait_terminal(
    engine: LocalEngine,
    pool: WorkerPool,
    uploads: list[ObjectInfo],
    report: Progress,
    timeout_s: float,
) -> None:
    ids = [execution_id(u.bucket, u.key, u.etag) for u in uploads]
    deadline = time.monotonic() + timeout_s
    while True:
        done = engine.executor.terminal_count(ids)
        report("process", done, len(ids))
        if done >= len(ids) or time.monotonic() > deadline:
            return
        pool.supervise()
        time.sleep(0.1)
