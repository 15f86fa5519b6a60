"""Time every named query on a 1,000,000-row telemetry lake.

The lake has the layout the pipeline writes (``dt=…/hour=…``), one compacted file per
partition over 7 days: 250,000 executions of 4 stages (with some failures, retries, two
variants and a cost column). Each query runs once to warm up, then ``--repeat`` times; the
median is reported against the 1 s target.

Run:  .venv/bin/python benchmarks/lake_queries.py [--rows 1000000] [--repeat 3]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from radstream import PIPELINE_VERSION
from radstream.lake.columns import arrow_schema
from radstream.lake.duckdb_runner import LocalQueryRunner
from radstream.lake.queries import named_queries

STAGES = ("validate", "prepare", "infer", "store")
STAGE_MS = {"validate": 0.5, "prepare": 8.0, "infer": 60.0, "store": 1.0}
TARGET_S = 1.0


def build_lake(lake_dir: Path, rows: int, days: int = 7, seed: int = 3) -> int:
    """Write ``rows`` telemetry rows (4 per execution) as one file per hour partition."""
    rng = np.random.default_rng(seed)
    executions = rows // len(STAGES)
    start0 = np.datetime64("2026-01-01T00:00:00", "ms").astype(np.int64)
    span_ms = days * 24 * 3600 * 1000
    exec_start = np.sort(start0 + rng.integers(0, span_ms, executions))
    failed = rng.random(executions) < 0.02
    queue = rng.exponential(40.0, executions)
    columns: dict[str, list[np.ndarray]] = {name: [] for name in arrow_schema().names}
    offset = np.zeros(executions)
    for stage in STAGES:
        duration = rng.gamma(4.0, STAGE_MS[stage] / 4.0, executions)
        is_last = stage == "store"
        begin = exec_start + offset.astype(np.int64)
        columns["start_ts"].append(begin)
        columns["end_ts"].append(begin + duration.astype(np.int64))
        columns["duration_ms"].append(duration)
        columns["stage"].append(np.where(failed & is_last, "record_failure", stage).astype(object))
        columns["status"].append(np.full(executions, "ok", dtype=object))
        columns["error_code"].append(
            np.where(failed & is_last, "IMAGE_TRUNCATED", None).astype(object)
        )
        columns["queue_wait_ms"].append(
            queue if stage == "validate" else np.full(executions, np.nan)
        )
        columns["cost_usd"].append(rng.uniform(1e-6, 5e-5, executions))
        offset += duration
    n = executions * len(STAGES)
    ids = np.array([f"{i:032x}" for i in range(executions)], dtype=object)
    table = pa.table(
        {
            "record_version": pa.array(np.ones(n, dtype=np.int64)),
            "execution_id": pa.array(np.tile(ids, len(STAGES))),
            "study_id": pa.array(np.tile(ids, len(STAGES))),
            "stage": pa.array(np.concatenate(columns["stage"]), pa.string()),
            "status": pa.array(np.concatenate(columns["status"]), pa.string()),
            "error_code": pa.array(np.concatenate(columns["error_code"]), pa.string()),
            "start_ts": pa.array(np.concatenate(columns["start_ts"]), pa.timestamp("ms", "UTC")),
            "end_ts": pa.array(np.concatenate(columns["end_ts"]), pa.timestamp("ms", "UTC")),
            "duration_ms": pa.array(np.concatenate(columns["duration_ms"])),
            "queue_wait_ms": pa.array(np.concatenate(columns["queue_wait_ms"]), from_pandas=True),
            "attempt": pa.array(np.ones(n, dtype=np.int64)),
            "batch_size": pa.array(rng.choice([1, 2, 4, 8], n).astype(np.int64)),
            "bytes_in": pa.array(rng.integers(0, 10**6, n)),
            "bytes_out": pa.array(np.zeros(n, dtype=np.int64)),
            "model_name": pa.array(np.full(n, "densenet121-standin", dtype=object)),
            "model_version": pa.array(np.full(n, "1", dtype=object)),
            "backend": pa.array(np.full(n, "local", dtype=object)),
            "config_id": pa.array(np.full(n, "default", dtype=object)),
            "variant": pa.array(np.tile(rng.choice(["A", "B"], executions), len(STAGES))),
            "worker_id": pa.array(np.full(n, "w0", dtype=object)),
            "cold_start": pa.array(np.zeros(n, dtype=bool)),
            "memory_mb": pa.array(np.full(n, 2048, dtype=np.int64)),
            "cost_usd": pa.array(np.concatenate(columns["cost_usd"])),
            "pipeline_version": pa.array(np.full(n, PIPELINE_VERSION, dtype=object)),
        }
    ).cast(arrow_schema())
    hour_key = pa.compute.strftime(table["start_ts"], format="%Y-%m-%d/%H")
    keys = np.asarray(hour_key.to_numpy(zero_copy_only=False))
    order = np.argsort(keys, kind="stable")
    table, keys = table.take(order), keys[order]
    bounds = np.flatnonzero(keys[1:] != keys[:-1]) + 1
    files = 0
    for lo, hi in zip(np.r_[0, bounds], np.r_[bounds, len(keys)], strict=True):
        day, hour = keys[lo].split("/")
        folder = lake_dir / f"dt={day}" / f"hour={hour}"
        folder.mkdir(parents=True, exist_ok=True)
        pq.write_table(table.slice(lo, hi - lo), folder / "part-bench.parquet", compression="zstd")
        files += 1
    return files


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="radstream-lake-") as tmp:
        lake = Path(tmp) / "telemetry"
        t0 = time.perf_counter()
        files = build_lake(lake, args.rows)
        build_s = time.perf_counter() - t0
        times: dict[str, float] = {}
        with LocalQueryRunner(lake) as runner:
            for name in named_queries():
                runner.run_named(name)  # warm-up: file metadata cached, plan compiled
                samples = []
                for _ in range(args.repeat):
                    t = time.perf_counter()
                    runner.run_named(name)
                    samples.append(time.perf_counter() - t)
                times[name] = statistics.median(samples)
    report = {
        "rows": args.rows,
        "files": files,
        "build_s": round(build_s, 1),
        "median_s": {k: round(v, 3) for k, v in times.items()},
        "slowest_s": round(max(times.values()), 3),
        "all_under_1s": max(times.values()) < TARGET_S,
    }
    if args.json:
        print(json.dumps(report))
    else:
        print(f"lake: {args.rows} rows in {files} files (built in {build_s:.1f}s)")
        for name, seconds in times.items():
            verdict = "ok" if seconds < TARGET_S else "SLOW"
            print(f"  {name:<32} {seconds * 1000:8.1f} ms  {verdict}")
        print(f"slowest: {max(times.values()) * 1000:.1f} ms (target < {TARGET_S * 1000:.0f} ms)")
    return 0 if report["all_under_1s"] else 1


if __name__ == "__main__":
    sys.exit(main())
