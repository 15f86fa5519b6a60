"""The in-memory limit: what the hardware allows, with no pipeline around the model.

One process per core decodes, preprocesses and classifies images held in memory: no store,
no executor, no telemetry. Pipeline throughput is reported as a fraction of this.
"""

from __future__ import annotations

import multiprocessing as mp
import statistics
import time
from dataclasses import dataclass
from pathlib import Path

from radstream.imaging import Preprocessing, prepare_image
from radstream.model import OnnxModel

# Every process has loaded its model and warmed up before the clock starts.
_START_DELAY_S = 8.0


@dataclass(frozen=True)
class Limit:
    """In-memory throughput and mean time per image on one core."""

    images_per_s: float
    ms_per_image: float


def _limit_worker(
    model_path: str,
    images: list[bytes],
    names: list[str],
    start: float,
    queue: mp.Queue,  # type: ignore[type-arg]
) -> None:
    model = OnnxModel.load(Path(model_path), intra_op_threads=1)
    info = model.info
    pre = Preprocessing(info.input_size, info.input_min, info.input_max, info.channels)
    for data, name in zip(images[:3], names[:3], strict=False):  # warm-up, not timed
        model.predict_logits(prepare_image(data, filename=name, preprocessing=pre).tensor)
    while time.time() < start:
        time.sleep(0.001)
    t0 = time.perf_counter()
    per_image = []
    for data, name in zip(images, names, strict=True):
        t = time.perf_counter()
        model.predict_logits(prepare_image(data, filename=name, preprocessing=pre).tensor)
        per_image.append(time.perf_counter() - t)
    queue.put((time.perf_counter() - t0, per_image))


def measure_limit(model_path: Path, images: list[tuple[str, bytes]], workers: int) -> Limit:
    """Images per second over ``images`` (name, bytes) with ``workers`` processes."""
    ctx = mp.get_context("spawn")
    queue: mp.Queue = ctx.Queue()  # type: ignore[type-arg]
    shares = [images[i::workers] for i in range(workers)]
    start = time.time() + _START_DELAY_S
    procs = [
        ctx.Process(
            target=_limit_worker,
            args=(str(model_path), [b for _, b in share], [n for n, _ in share], start, queue),
        )
        for share in shares
        if share
    ]
    for p in procs:
        p.start()
    results = [queue.get() for _ in procs]
    for p in procs:
        p.join()
    wall = max(r[0] for r in results)
    per_image = [t for r in results for t in r[1]]
    return Limit(images_per_s=len(images) / wall, ms_per_image=1000.0 * statistics.mean(per_image))
