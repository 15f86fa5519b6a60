"""Lakes left by real demo runs, for the lake tests and the Athena tests that upload one."""

from __future__ import annotations

from pathlib import Path

from radstream.demo import run_demo
from radstream.settings import Settings

# Quick retries and flushes, two workers: a demo run of a few studies takes seconds.
ENGINE = {"workers": 2, "image_wait_s": 1.0, "retry_base_s": 0.05, "retry_max_s": 0.3}
FLUSH_S = 0.2


def demo_settings(data_dir: Path, model_path: Path, *, variant: str | None = None) -> Settings:
    """The settings a test's demo run uses: ``data_dir``, the model at ``model_path``."""
    telemetry: dict[str, object] = {"flush_s": FLUSH_S}
    if variant is not None:
        telemetry["variant"] = variant
    return Settings(
        data_dir=data_dir, model={"path": model_path}, engine=dict(ENGINE), telemetry=telemetry
    )


def run_demo_lake(
    data_dir: Path,
    model_path: Path,
    *,
    studies: int,
    invalid: int,
    variant: str | None = None,
) -> Path:
    """Run the demo (``studies``, ``invalid`` of them bad) into ``data_dir``; its lake dir.

    Fails the test if the run lost a study. Runs into the same ``data_dir`` add to one lake.
    """
    settings = demo_settings(data_dir, model_path, variant=variant)
    report = run_demo(settings, studies=studies, invalid=invalid, width=700, height=800)
    assert report.summary.lost == 0
    return settings.lake_dir
