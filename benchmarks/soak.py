"""Soak test: mixed valid, hostile and faulty input at half capacity, for 30 minutes.

A worker pool runs the local engine while studies arrive at half its measured capacity:
valid PNG, JPEG and DICOM studies; every kind of bad input of
:mod:`radstream.loadgen.bad_inputs`; progressive JPEGs with 1,500 repeated scans
(``IMAGE_TOO_COMPLEX``). Storage faults come and go meanwhile: the results folder is
read-only for 20 s at a third of the run, the telemetry lake for 20 s at two thirds
(read-only bind mounts; skipped, and said so, where this process cannot mount).

At the end, once every study is done, it prints (and with ``--json`` writes) the figures
the issue asks for: studies lost (no outcome, or an outcome object missing), duplicated
(more than one execution or outcome object), abandoned (``EXECUTION_ABANDONED``), failures
by code, worker restarts, and the workers' resident memory over time (first, peak, last).
It exits 1 if anything was lost, duplicated, abandoned or given another outcome than
its input calls for.

Run:  .venv/bin/python benchmarks/soak.py [--minutes 30] [--workers 2] [--model PATH]
"""

from __future__ import annotations

import argparse
import io
import json
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image

from radstream.loadgen.bad_inputs import BAD_KINDS, make_bad_study
from radstream.loadgen.study import Study, make_study
from radstream.loadgen.uploader import upload_generated
from radstream.local.engine import LocalEngine
from radstream.local.pool import WorkerPool
from radstream.model.loading import resolve_model_path
from radstream.settings import Settings

FAULT_S = 20.0
EXPECTED: dict[str, str | None] = {}
"""Each uploaded study's expected error code (None: it should succeed)."""
IMAGE = (1000, 1200)


@dataclass
class Figures:
    """What the soak printed."""

    minutes: float
    workers: int
    rate_per_s: float
    uploaded: int = 0
    succeeded: int = 0
    failed: int = 0
    lost: int = 0
    duplicated: int = 0
    abandoned: int = 0
    unexpected: int = 0
    """Studies whose outcome is not the one their input calls for (a valid one failed...)."""
    restarts: int = 0
    faults: list[str] = field(default_factory=list)
    failures_by_code: dict[str, int] = field(default_factory=dict)
    rss_mb_first: float = 0.0
    rss_mb_peak: float = 0.0
    rss_mb_last: float = 0.0
    drain_s: float = 0.0


def _rss_mb(pids: list[int | None]) -> float:
    """The largest resident set of the given processes, in MB (from /proc)."""
    largest = 0.0
    for pid in pids:
        try:
            with open(f"/proc/{pid}/status", encoding="ascii") as fh:
                for line in fh:
                    if line.startswith("VmRSS:"):
                        largest = max(largest, int(line.split()[1]) / 1024)
        except (OSError, ValueError):
            continue
    return largest


def _many_scans(study_id: str, rng: np.random.Generator) -> Study:
    """A progressive JPEG whose shortest scan is repeated 1,500 times."""
    valid = make_study(study_id, "jpeg", rng, width=400, height=480)
    pixels = (rng.random((480, 400)) * 255).astype(np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, "JPEG", progressive=True, quality=90)
    data = buffer.getvalue()
    starts = [i for i in range(len(data) - 1) if data[i : i + 2] == b"\xff\xda"]
    spans = [data[a:b] for a, b in zip(starts, [*starts[1:], len(data) - 2], strict=True)]
    hostile = data[:-2] + min(spans, key=len) * 1_500 + data[-2:]
    sidecar = json.loads(valid.sidecar)
    sidecar.pop("image_size", None)
    return Study(
        study_id=study_id,
        image_name=f"{study_id}.jpg",
        image=hostile,
        sidecar=json.dumps(sidecar).encode(),
        expected_code="IMAGE_TOO_COMPLEX",
    )


def next_study(index: int, rng: np.random.Generator) -> Study:
    """Mostly valid studies; one in ten bad input, one in twenty too many JPEG scans."""
    study_id = f"soak-{index:06d}"
    draw = rng.random()
    if draw < 0.10:
        kind = sorted(BAD_KINDS)[int(rng.integers(len(BAD_KINDS)))]
        return make_bad_study(kind, study_id, rng)
    if draw < 0.15:
        return _many_scans(study_id, rng)
    fmt = ("png", "jpeg", "dicom")[index % 3]
    return make_study(study_id, fmt, rng, width=IMAGE[0], height=IMAGE[1])


def _run(*args: str) -> bool:
    return subprocess.run(list(args), capture_output=True, check=False).returncode == 0


@contextmanager
def read_only(folder: Path) -> Iterator[bool]:
    """A read-only bind mount of ``folder`` (yields False when it cannot be made)."""
    folder.mkdir(parents=True, exist_ok=True)
    mounted = _run("mount", "--bind", str(folder), str(folder))
    if mounted and not _run("mount", "-o", "remount,bind,ro", str(folder)):
        _run("umount", "-l", str(folder))
        mounted = False
    try:
        yield mounted
    finally:
        if mounted:
            _run("umount", "-l", str(folder))


def capacity(engine: LocalEngine, pool: WorkerPool, rng: np.random.Generator) -> float:
    """Valid studies per second the pool finishes, from a burst of 4 per worker."""
    count = 4 * len(pool.processes)
    studies = [
        make_study(f"cal-{i:03d}", "png", rng, width=IMAGE[0], height=IMAGE[1])
        for i in range(count)
    ]
    start = time.monotonic()
    for study in studies:
        upload_generated(engine.store, study)
    while engine.executor.counts()["succeeded"] < count:
        pool.supervise()
        time.sleep(0.1)
    return count / (time.monotonic() - start)


def soak(minutes: float, workers: int, model: Path | None) -> Figures:
    """Run the soak; returns its figures."""
    with tempfile.TemporaryDirectory(prefix="radstream-soak-") as tmp:
        settings = Settings(
            data_dir=Path(tmp) / "data",
            model={"path": model},
            engine={"workers": workers, "lease_s": 10.0, "image_wait_s": 2.0, "retry_max_s": 2.0},
            telemetry={"flush_s": 1.0},
        )
        settings = settings.model_copy(
            update={
                "model": settings.model.model_copy(update={"path": resolve_model_path(settings)})
            }
        )
        rng = np.random.default_rng(2026)
        with LocalEngine.open(settings) as engine, WorkerPool(settings) as pool:
            pool.wait_ready(engine.executor)
            rate = capacity(engine, pool, rng) / 2
            figures = Figures(minutes=minutes, workers=workers, rate_per_s=round(rate, 2))
            _drive(engine, pool, settings, figures, rng, rate, minutes * 60.0)
            drain = time.monotonic()
            while True:
                counts = engine.executor.counts()
                if counts["pending"] + counts["running"] == 0:
                    break
                pool.supervise()
                rss = _rss_mb([p.pid for p in pool.processes])
                figures.rss_mb_peak = round(max(figures.rss_mb_peak, rss), 1)
                time.sleep(0.2)
            figures.drain_s = round(time.monotonic() - drain, 1)
            figures.rss_mb_last = round(_rss_mb([p.pid for p in pool.processes]), 1)
            figures.restarts = pool.restarts
            _count(engine, figures)
        return figures


def _drive(
    engine: LocalEngine,
    pool: WorkerPool,
    settings: Settings,
    figures: Figures,
    rng: np.random.Generator,
    rate: float,
    duration_s: float,
) -> None:
    faults = [
        (duration_s / 3, settings.data_dir / "buckets" / "results", "results read-only"),
        (2 * duration_s / 3, settings.lake_dir, "lake read-only"),
    ]
    start = time.monotonic()
    index = 0
    last_sample = 0.0
    while (now := time.monotonic() - start) < duration_s:
        if faults and now >= faults[0][0]:
            _, folder, name = faults.pop(0)
            with read_only(folder) as mounted:
                figures.faults.append(
                    f"{name} {FAULT_S:.0f} s" if mounted else f"{name}: skipped (cannot mount)"
                )
                end = time.monotonic() + (FAULT_S if mounted else 0.0)
                while time.monotonic() < end:
                    index = _arrivals(engine, figures, rng, rate, start, index)
                    pool.supervise()
                    time.sleep(0.05)
            continue
        index = _arrivals(engine, figures, rng, rate, start, index)
        pool.supervise()
        if now - last_sample >= 5.0:
            last_sample = now
            rss = _rss_mb([p.pid for p in pool.processes])
            figures.rss_mb_first = figures.rss_mb_first or round(rss, 1)
            figures.rss_mb_peak = round(max(figures.rss_mb_peak, rss), 1)
        time.sleep(0.02)


def _arrivals(
    engine: LocalEngine,
    figures: Figures,
    rng: np.random.Generator,
    rate: float,
    start: float,
    index: int,
) -> int:
    """Upload the studies due by now at ``rate`` (a steady stream); returns the next index."""
    due = int((time.monotonic() - start) * rate)
    while index < due:
        study = next_study(index, rng)
        EXPECTED[study.study_id] = study.expected_code
        upload_generated(engine.store, study)
        figures.uploaded += 1
        index += 1
    return index


def _count(engine: LocalEngine, figures: Figures) -> None:
    """Fill in outcomes, lost and duplicated studies from the executions and the store."""
    rows = [r for r in engine.executor.executions() if "/soak-" in r["key"]]
    per_trigger = Counter(r["trigger_id"] for r in rows)
    figures.duplicated = sum(n - 1 for n in per_trigger.values() if n > 1)
    figures.succeeded = sum(r["state"] == "succeeded" for r in rows)
    figures.failed = sum(r["state"] == "failed" for r in rows)
    figures.failures_by_code = dict(
        Counter(r["error_code"] for r in rows if r["state"] == "failed")
    )
    figures.abandoned = figures.failures_by_code.get("EXECUTION_ABANDONED", 0)
    for row in rows:
        expected = EXPECTED.get(row["key"].split("/")[1], "?")
        if row["error_code"] != expected:
            figures.unexpected += 1
    figures.lost = figures.uploaded - len(per_trigger)
    for row in rows:
        if row["state"] not in ("succeeded", "failed") or not engine.store.exists(
            "results", row["outcome_key"] or "x"
        ):
            figures.lost += 1
    # Exactly one outcome object per study folder (a result or a failure, not both).
    folders = Counter(
        key.split("/")[1]
        for prefix in ("results/", "failed/")
        for key in engine.store.list("results", prefix)
    )
    figures.duplicated += sum(n - 1 for f, n in folders.items() if f.startswith("soak-") and n > 1)


def main() -> None:
    """Parse arguments, run, print the figures."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--minutes", type=float, default=30.0)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument(
        "--model", type=Path, default=None, help="ONNX model (default: the stand-in)"
    )
    parser.add_argument("--json", type=Path, default=None, help="also write the figures here")
    args = parser.parse_args()
    figures = soak(args.minutes, args.workers, args.model)
    for name, value in asdict(figures).items():
        print(f"{name:<18} {value}")
    if args.json is not None:
        args.json.write_text(json.dumps(asdict(figures), indent=2))
    if figures.lost or figures.duplicated or figures.abandoned or figures.unexpected:
        sys.exit(1)


if __name__ == "__main__":
    main()
