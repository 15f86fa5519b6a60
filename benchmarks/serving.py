"""The KServe v2 server against the in-process runtime, batch sizes, and autoscaling.

(a) in process: one process per core (up to the concurrency) calling ONNX Runtime on
    [1,1,224,224] tensors back to back; no HTTP.
(b) server: `radstream model serve` with one instance per core; C client threads, each
    with its own keep-alive connection, send single-image binary requests.
(c) batch size 1, 4 and 8 at concurrency 8.
(d) a burst against `--autoscale 1:2` and against one fixed instance.

Throughput is requests (images) per second; latency is per request, client side.

Run:  .venv/bin/python benchmarks/serving.py [--requests 96]
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np

from radstream.model import OnnxModel, ensure_standin
from radstream.model.kserve_client import KServeModelClient
from radstream.serving.server import ServeConfig, running_server

CORES = os.cpu_count() or 1


def _tensor(seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return rng.uniform(-1024, 1024, (1, 1, 224, 224)).astype(np.float32)


def _in_process_worker(path: str, count: int, start: float, queue: mp.Queue) -> None:  # type: ignore[type-arg]
    model = OnnxModel.load(Path(path))
    x = _tensor(0)
    model.predict_logits(x)
    while time.time() < start:
        time.sleep(0.001)
    latencies = []
    for _ in range(count):
        t = time.perf_counter()
        model.predict_logits(x)
        latencies.append(time.perf_counter() - t)
    queue.put(latencies)


def in_process(path: Path, requests: int, concurrency: int) -> dict[str, float]:
    """Throughput with min(concurrency, cores) processes, no HTTP."""
    procs_n = min(concurrency, CORES)
    ctx = mp.get_context("spawn")
    queue: mp.Queue = ctx.Queue()  # type: ignore[type-arg]
    start = time.time() + 5.0
    procs = [
        ctx.Process(target=_in_process_worker, args=(str(path), requests // procs_n, start, queue))
        for _ in range(procs_n)
    ]
    for p in procs:
        p.start()
    results = [queue.get() for _ in procs]
    for p in procs:
        p.join()
    wall = max(sum(r) for r in results)
    flat = [t for r in results for t in r]
    return _summary(len(flat), wall, flat)


def through_server(base_url: str, name: str, requests: int, concurrency: int) -> dict[str, float]:
    """C threads, each with its own client, sending single-image binary requests."""
    latencies: list[float] = []
    lock = threading.Lock()
    counter = iter(range(requests))
    clients = [KServeModelClient(base_url, name, timeout_s=60) for _ in range(concurrency)]
    x = _tensor(0)
    for client in clients:
        client.predict_logits(x)  # connect and fetch metadata before the clock starts

    def work(client: KServeModelClient) -> None:
        while True:
            with lock:
                if next(counter, None) is None:
                    return
            t = time.perf_counter()
            client.predict_logits(x)
            with lock:
                latencies.append(time.perf_counter() - t)

    threads = [threading.Thread(target=work, args=(c,)) for c in clients]
    t0 = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.perf_counter() - t0
    for client in clients:
        client.close()
    return _summary(len(latencies), wall, latencies)


def _summary(n: int, wall: float, latencies: list[float]) -> dict[str, float]:
    return {
        "images_per_s": round(n / wall, 2),
        "p95_ms": round(float(np.percentile(latencies, 95)) * 1000, 1),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=96)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    report: dict[str, Any] = {"cores": CORES, "requests": args.requests}
    with tempfile.TemporaryDirectory() as tmp:
        path = ensure_standin(Path(tmp))
        base = ServeConfig(model_path=path, port=0, instances=CORES, max_batch_size=1)
        rows = []
        for concurrency in (1, 4, 8, 16):
            local = in_process(path, args.requests, concurrency)
            with running_server(base) as url:
                served = through_server(url, base.name, args.requests, concurrency)
            rows.append({"concurrency": concurrency, "in_process": local, "server": served,
                         "ratio": round(served["images_per_s"] / local["images_per_s"], 3)})
        report["server_vs_in_process"] = rows
        batches = []
        for size in (1, 4, 8):
            config = ServeConfig(model_path=path, port=0, instances=CORES, max_batch_size=size,
                                 max_queue_delay_ms=5.0)
            with running_server(config) as url:
                batches.append({"max_batch_size": size,
                                **through_server(url, config.name, args.requests, 8)})
        report["batch_size_at_concurrency_8"] = batches
        scaling = []
        for label, extra in (("fixed 1", {"instances": 1}),
                             ("autoscale 1:2", {"autoscale": (1, 2), "scale_up_delay_s": 0.3})):
            config = ServeConfig(model_path=path, port=0, max_batch_size=1, **extra)  # type: ignore[arg-type]
            with running_server(config) as url:
                scaling.append({"server": label,
                                **through_server(url, config.name, 2 * args.requests, 16)})
        report["burst_autoscale"] = scaling
    at8 = next(r for r in report["server_vs_in_process"] if r["concurrency"] == 8)
    report["ratio_at_concurrency_8"] = at8["ratio"]
    if args.json:
        print(json.dumps(report))
    else:
        print(f"server vs in-process ({CORES} cores, {args.requests} single-image requests):")
        for r in report["server_vs_in_process"]:
            print(f"  concurrency {r['concurrency']:>2}: in-process {r['in_process']['images_per_s']:6.1f}/s "
                  f"p95 {r['in_process']['p95_ms']:6.1f} ms | server {r['server']['images_per_s']:6.1f}/s "
                  f"p95 {r['server']['p95_ms']:6.1f} ms | ratio {r['ratio']:.2f}")
        print("batch size at concurrency 8:")
        for b in batches:
            print(f"  max_batch_size {b['max_batch_size']}: {b['images_per_s']:6.1f}/s p95 {b['p95_ms']:6.1f} ms")
        print("burst at concurrency 16:")
        for s in scaling:
            print(f"  {s['server']:<14}: {s['images_per_s']:6.1f}/s p95 {s['p95_ms']:6.1f} ms")
        print(f"ratio at concurrency 8: {report['ratio_at_concurrency_8']:.2f} (target >= 0.8)")
    return 0 if report["ratio_at_concurrency_8"] >= 0.8 else 1


if __name__ == "__main__":
    sys.exit(main())
