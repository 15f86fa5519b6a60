"""The in-memory limit: what the hardware allows, with no pipeline around the model.

One process per core decodes, preprocesses and classifies images held in memory: no store,
no executor, no telemetry. Pipeline throughput is reported as a fraction of this. The model
is loaded as the pipeline's workers load it (``load_backend``: runtime and precision), so a
limit measured for a reduced-precision model is that model's limit.
"""

from __future__ import annotations

import multiprocessing as mp
import statistics
import time
from collections.abc import Sequence
from dataclasses import dataclass
from multiprocessing.process import BaseProcess
from pathlib import Path
from queue import Empty

from radstream.errors import RadStreamError, error_from_exception
from radstream.imaging import prepare_image
from radstream.model.backends import load_backend
from radstream.stages.prepare import preprocessing_for

# Every process has loaded its model and warmed up before the clock starts.
_START_DELAY_S = 8.0
_POLL_S = 1.0  # how often a wait for the workers checks that none has died
_FAILED = "failed"


@dataclass(frozen=True)
class Backend:
    """Which model file, runtime and precision a limit is measured for."""

    path: Path
    runtime: str = "onnxruntime"
    precision: str = "fp32"


@dataclass(frozen=True)
class Limit:
    """In-memory throughput, and the mean time per image on one core (and its two parts).

    ``cpu_ms_per_image`` is the processes' own CPU time per image (``time.process_time``):
    unlike the wall-clock figures, it does not grow when other work shares the cores, so
    ``cpu_images_per_s`` (one core per process, fully ours) compares runs on a busy machine.
    """

    images_per_s: float
    ms_per_image: float
    prepare_ms: float
    infer_ms: float
    cpu_ms_per_image: float = 0.0
    cpu_images_per_s: float = 0.0


class LimitFailed(RadStreamError):
    """A process measuring the in-memory limit could not load or run the model."""

    code = "LIMIT_FAILED"
    hint = (
        "The message says which error stopped it; check the model with `radstream model info` "
        "(runtime, precision), or run bench without --baseline."
    )


def _limit_worker(
    backend: Backend,
    images: list[bytes],
    names: list[str],
    start: float,
    queue: mp.Queue,  # type: ignore[type-arg]
) -> None:
    try:
        model = load_backend(
            backend.path, precision=backend.precision, runtime=backend.runtime, intra_op_threads=1
        )
        pre = preprocessing_for(model.info)
        for data, name in zip(images[:3], names[:3], strict=False):  # warm-up, not timed
            model.predict_logits(prepare_image(data, filename=name, preprocessing=pre).tensor)
        while time.time() < start:
            time.sleep(0.001)
        t0 = time.perf_counter()
        cpu0 = time.process_time()
        prep, infer = [], []
        for data, name in zip(images, names, strict=True):
            t = time.perf_counter()
            tensor = prepare_image(data, filename=name, preprocessing=pre).tensor
            t1 = time.perf_counter()
            model.predict_logits(tensor)
            prep.append(t1 - t)
            infer.append(time.perf_counter() - t1)
        queue.put((time.perf_counter() - t0, prep, infer, time.process_time() - cpu0))
    except Exception as exc:  # the parent raises it, typed; it must not wait for this one
        error = error_from_exception(exc)
        queue.put((_FAILED, error.code, error.message))


def _collect(
    procs: Sequence[BaseProcess],
    queue: mp.Queue,  # type: ignore[type-arg]
) -> list[tuple[float, list[float], list[float], float]]:
    """Every worker's figures; LimitFailed (the others stopped) if one fails or dies."""
    results: list[tuple[float, list[float], list[float], float]] = []
    try:
        while len(results) < len(procs):
            try:
                item = queue.get(timeout=_POLL_S)
            except Empty:
                dead = [p.exitcode for p in procs if p.exitcode not in (None, 0)]
                if dead:
                    raise LimitFailed(f"a limit process died (exit code {dead[0]})") from None
                continue
            if item[0] == _FAILED:
                raise LimitFailed(f"a limit process failed: [{item[1]}] {item[2]}")
            results.append(item)
    except BaseException:
        for p in procs:
            p.terminate()
        raise
    finally:
        for p in procs:
            p.join()
    return results


def measure_limit(model: Path | Backend, images: list[tuple[str, bytes]], workers: int) -> Limit:
    """Images per second over ``images`` (name, bytes) with ``workers`` processes.

    ``model`` is a file (run as fp32 on ONNX Runtime) or a :class:`Backend`.
    """
    backend = model if isinstance(model, Backend) else Backend(model)
    ctx = mp.get_context("spawn")
    queue: mp.Queue = ctx.Queue()  # type: ignore[type-arg]
    shares = [images[i::workers] for i in range(workers)]
    start = time.time() + _START_DELAY_S
    procs = [
        ctx.Process(
            target=_limit_worker,
            args=(backend, [b for _, b in share], [n for n, _ in share], start, queue),
        )
        for share in shares
        if share
    ]
    for p in procs:
        p.start()
    results = _collect(procs, queue)
    wall = max(r[0] for r in results)
    prep = [t for r in results for t in r[1]]
    infer = [t for r in results for t in r[2]]
    per_image = [p + i for p, i in zip(prep, infer, strict=True)]
    cpu_ms = 1000.0 * sum(r[3] for r in results) / len(images)
    return Limit(
        images_per_s=len(images) / wall,
        ms_per_image=1000.0 * statistics.mean(per_image),
        prepare_ms=1000.0 * statistics.mean(prep),
        infer_ms=1000.0 * statistics.mean(infer),
        cpu_ms_per_image=cpu_ms,
        cpu_images_per_s=len(results) * 1000.0 / cpu_ms if cpu_ms > 0 else 0.0,
    )
