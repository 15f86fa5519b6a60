"""Pipeline throughput and latency against the in-memory limit, on the same images.

(a) limit: one process per core doing decode + preprocess + inference on bytes in memory,
    no store, no executor, no telemetry: what the hardware allows.
(b) pipeline: the same images uploaded through the folder store, routed and leased by the
    SQLite executor, processed by the worker pool, results and telemetry written.
(c) latency: an open-loop upload at half the limit's rate; end-to-end latency runs from
    each study's *intended* send time to the engine's record of its outcome, and its p95
    is compared with the in-memory time per image.

The limit is measured before and after (b) and (c) and averaged.

Run:  .venv/bin/python benchmarks/pipeline_vs_limit.py [--format jpeg] [--studies 240] [--fsync]

``--fsync`` runs the pipeline with ``engine.fsync = true`` (objects, their folders and every
SQLite commit synced to disk); run it with and without to measure what durability costs.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from radstream.bench.limit import measure_limit
from radstream.bench.outcomes import percentiles_ms
from radstream.loadgen.synthetic import Study, make_study
from radstream.loadgen.uploader import upload_generated
from radstream.local.engine import LocalEngine
from radstream.local.executor import execution_id
from radstream.local.pool import WorkerPool
from radstream.model import ensure_standin
from radstream.settings import Settings
from radstream.stages.ports import ObjectInfo

UNIQUE_IMAGES = 24


def _settings(data_dir: Path, model_path: Path, workers: int, *, fsync: bool) -> Settings:
    return Settings(
        data_dir=data_dir,
        model={"path": model_path},
        engine={"workers": workers, "fsync": fsync},
        telemetry={"flush_s": 2.0},
    )


def _upload(engine: LocalEngine, study: Study, tag: str) -> ObjectInfo:
    return upload_generated(engine.store, study.renamed(f"{tag}-{study.study_id}"))


def _wait_all(engine: LocalEngine, infos: list[ObjectInfo], timeout: float) -> None:
    ids = [execution_id(i.bucket, i.key, i.etag) for i in infos]
    deadline = time.monotonic() + timeout
    # Latency comes from the engine's own timestamps, so this poll's interval does not
    # enter any figure; it is kept slow so that it takes no CPU from the workers.
    while engine.executor.terminal_count(ids) < len(ids):
        if time.monotonic() > deadline:
            raise TimeoutError("pipeline did not finish")
        time.sleep(0.1)


def _rows(engine: LocalEngine, infos: list[ObjectInfo]) -> list[dict[str, float]]:
    latest = engine.executor.latest([execution_id(i.bucket, i.key, i.etag) for i in infos])
    rows = [dict(r) for r in latest.values()]
    failed = [r for r in rows if r["state"] != "succeeded"]
    if failed:
        raise RuntimeError(f"{len(failed)} benchmark studies failed: {failed[0]['error_code']}")
    return rows


def measure_pipeline(settings: Settings, studies: list[Study], rate: float) -> dict[str, object]:
    """Throughput (all uploaded at once) and latency (open loop at ``rate``) of the pipeline."""
    with LocalEngine.open(settings) as engine, WorkerPool(settings) as pool:
        pool.wait_ready(engine.executor)
        warm = [_upload(engine, s, "warm") for s in studies[: 2 * settings.engine.workers]]
        _wait_all(engine, warm, 120)

        # Throughput: everything queued at once; rate over first upload -> last outcome.
        burst = [_upload(engine, s, "tput") for s in studies]
        _wait_all(engine, burst, 600)
        rows = _rows(engine, burst)
        span = max(r["finished_at"] for r in rows) - min(r["created_at"] for r in rows)
        throughput = len(rows) / span

        # Latency: open loop at `rate`, measured from each study's intended send time.
        intended: dict[str, float] = {}
        latency_infos = []
        late = 0
        t0 = time.time() + 0.5
        for i, study in enumerate(studies):
            due = t0 + i / rate
            delay = due - time.time()
            if delay > 0:
                time.sleep(delay)
            elif delay < -0.01:
                late += 1
            info = _upload(engine, study, "lat")
            latency_infos.append(info)
            intended[execution_id(info.bucket, info.key, info.etag)] = due
        _wait_all(engine, latency_infos, 600)
        lat_rows = _rows(engine, latency_infos)
        latencies = [r["finished_at"] - intended[str(r["trigger_id"])] for r in lat_rows]
    return {
        "throughput_per_s": throughput,
        "latency": percentiles_ms(latencies),
        "late_sends": late,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--format", default="jpeg", choices=["jpeg", "png", "png16", "dicom"])
    parser.add_argument("--studies", type=int, default=240)
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--size", default="2000x2500")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.add_argument(
        "--fsync", action="store_true", help="engine.fsync = true: durable against power loss"
    )
    args = parser.parse_args()
    width, height = (int(v) for v in args.size.split("x"))

    with tempfile.TemporaryDirectory(prefix="radstream-bench-") as tmp:
        root = Path(tmp)
        model_path = ensure_standin(root / "models")
        rng = np.random.default_rng(11)
        # Images are made before any clock starts; a few unique ones are cycled so that
        # generation time stays small, while every study is a distinct upload.
        unique = [
            make_study(f"b{i:05d}", args.format, rng, width=width, height=height)
            for i in range(UNIQUE_IMAGES)
        ]
        studies = [unique[i % UNIQUE_IMAGES].renamed(f"b{i:05d}") for i in range(args.studies)]
        # The limit is measured before and after the pipeline and averaged, so that a
        # machine that speeds up or slows down during the run does not bias the ratio.
        images = [(s.image_name, s.image) for s in studies]
        before = measure_limit(model_path, images, args.workers)
        settings = _settings(root / "data", model_path, args.workers, fsync=args.fsync)
        pipe = measure_pipeline(settings, studies, rate=before.images_per_s / 2)
        after = measure_limit(model_path, images, args.workers)
        limit = {
            "images_per_s": (before.images_per_s + after.images_per_s) / 2,
            "ms_per_image": (before.ms_per_image + after.ms_per_image) / 2,
        }

    latency = pipe["latency"]
    assert isinstance(latency, dict)
    report = {
        "format": args.format,
        "size": args.size,
        "studies": args.studies,
        "workers": args.workers,
        "fsync": args.fsync,
        "limit_images_per_s": round(limit["images_per_s"], 2),
        "limit_before_after": [round(before.images_per_s, 2), round(after.images_per_s, 2)],
        "pipeline_images_per_s": round(float(pipe["throughput_per_s"]), 2),  # type: ignore[arg-type]
        "ratio": round(float(pipe["throughput_per_s"]) / limit["images_per_s"], 3),  # type: ignore[arg-type]
        "in_memory_ms_per_image": round(limit["ms_per_image"], 1),
        "half_rate_per_s": round(before.images_per_s / 2, 2),
        "half_rate_latency_ms": latency,
        "half_rate_p95_over_in_memory": round(latency["p95_ms"] / limit["ms_per_image"], 2),
        "late_sends": pipe["late_sends"],
    }
    if args.json:
        print(json.dumps(report))
    else:
        for key, value in report.items():
            print(f"{key:>30}: {value}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
