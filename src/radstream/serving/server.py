"""The KServe v2 model server behind ``radstream model serve``.

One uvicorn event loop runs a Starlette app; requests go into a bounded queue; a batcher
forms batches of up to ``max_batch_size`` images (waiting at most ``max_queue_delay_ms``
after the first queued request) and hands each batch to an idle *instance*: a worker
process that loaded the ONNX model once (``radstream.serving.worker``). Each instance has
its own thread in this process that sends it batches over a Pipe and waits for the
logits, so the event loop never blocks on inference.

Overload is refused, never queued without bound: when ``max_queue`` requests are already
waiting, a new one gets 503 with ``Retry-After: 1``. An instance that dies is replaced;
the requests of the batch it was running get 503 (retryable), never a hang.

With ``autoscale=(MIN, MAX)`` a controller adds an instance when requests have waited
with every instance busy for ``scale_up_delay_s`` and removes one that has been idle for
``scale_down_delay_s``, staying within MIN..MAX.

Endpoints (Open Inference Protocol, as Triton serves it; see ``radstream.serving.protocol``
for the body format): ``GET /v2``, ``/v2/health/live``, ``/v2/health/ready``,
``/v2/models/{name}[/versions/1]``, ``/v2/models/{name}[/versions/1]/ready``,
``POST /v2/models/{name}[/versions/1]/infer`` and ``GET /metrics`` (Prometheus).
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import json
import logging
import math
import multiprocessing
import signal
import socket
import threading
import time
import zlib
from collections import deque
from collections.abc import AsyncIterator, Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from multiprocessing.process import BaseProcess
from pathlib import Path
from typing import Any, ClassVar, Literal

import numpy as np
import numpy.typing as npt
import uvicorn
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from starlette.applications import Starlette
from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from starlette.types import Receive, Scope, Send

from radstream import __version__
from radstream.errors import (
    ConfigInvalid,
    ModelUnavailable,
    RadStreamError,
    TransientError,
    all_error_classes,
    error_from_exception,
)
from radstream.model.metadata import ModelInfo, _format_number, read_model_info
from radstream.serving.protocol import (
    HEADER_LENGTH,
    InferRequest,
    ProtocolError,
    datatype_of,
    decode_infer_request,
    encode_error,
    encode_infer_response,
    parse_header_length,
)
from radstream.serving.worker import worker_main

logger = logging.getLogger("radstream.serving")

MODEL_VERSION = "1"
"""The only KServe model version this server has."""

MAX_BODY_BYTES = 256 * 1024 * 1024
"""Largest request body accepted (after decompression): 413 above it."""

INSTANCE_LOAD_TIMEOUT_S = 120.0
OPEN_PATHS = frozenset({"/v2/health/live", "/v2/health/ready"})


class QueueFull(TransientError):
    """The server's request queue is full: retry after a moment (HTTP 503)."""

    code: ClassVar[str] = "KSERVE_QUEUE_FULL"
    hint: ClassVar[str] = (
        "The model server is at capacity; retry after the Retry-After delay, or raise "
        "--max-queue / --instances."
    )


# --- configuration ---------------------------------------------------------------------


@dataclass(frozen=True)
class ServeConfig:
    """Settings of one model server (``radstream model serve``).

    ``autoscale=(MIN, MAX)`` replaces the fixed ``instances`` count: the server starts
    ``instances`` clamped to MIN..MAX and scales within that range.
    """

    model_path: Path
    name: str = "radstream-densenet121"
    host: str = "127.0.0.1"
    port: int = 8000
    max_batch_size: int = 8
    max_queue_delay_ms: float = 5.0
    max_queue: int = 64
    instances: int = 1
    autoscale: tuple[int, int] | None = None
    scale_up_delay_s: float = 1.0
    scale_down_delay_s: float = 10.0
    token: str | None = None
    intra_op_threads: int = 1

    def __post_init__(self) -> None:
        def bad(message: str) -> ConfigInvalid:
            return ConfigInvalid(f"serve: {message}")

        if not self.name or "/" in self.name or self.name.strip() != self.name:
            raise bad(f"model name must be non-empty without '/' or spaces, got {self.name!r}")
        if not 0 <= self.port <= 65535:
            raise bad(f"port must be 0..65535 (0 picks a free one), got {self.port}")
        positive = {
            "max_batch_size": self.max_batch_size,
            "max_queue": self.max_queue,
            "instances": self.instances,
        }
        for key, value in positive.items():
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise bad(f"{key} must be an integer >= 1, got {value!r}")
        for key, number in {
            "max_queue_delay_ms": self.max_queue_delay_ms,
            "scale_up_delay_s": self.scale_up_delay_s,
            "scale_down_delay_s": self.scale_down_delay_s,
        }.items():
            if not math.isfinite(number) or number < 0:
                raise bad(f"{key} must be a finite number >= 0, got {number!r}")
        if self.autoscale is not None:
            low, high = self.autoscale
            if not 1 <= low <= high:
                raise bad(
                    f"autoscale must be (MIN, MAX) with 1 <= MIN <= MAX, got {self.autoscale}"
                )
        if self.token is not None and not self.token.strip():
            raise bad("token must not be empty (leave it unset to disable authentication)")
        if self.intra_op_threads < 0:
            raise bad(f"intra_op_threads must be >= 0, got {self.intra_op_threads}")

    @property
    def instance_range(self) -> tuple[int, int]:
        """(MIN, MAX) instances: the autoscale range, or the fixed count twice."""
        return self.autoscale if self.autoscale is not None else (self.instances, self.instances)

    @property
    def initial_instances(self) -> int:
        """Instances started at launch."""
        low, high = self.instance_range
        return min(max(self.instances, low), high)


# --- statistics and metrics --------------------------------------------------------------

FAILURE_REASONS = ("REJECTED", "BAD_REQUEST", "UNAVAILABLE", "BACKEND")


@dataclass
class _Stats:
    """Counters, updated on the event loop thread only (so /metrics reads them consistently)."""

    success: int = 0
    failure: dict[str, int] = field(default_factory=lambda: dict.fromkeys(FAILURE_REASONS, 0))
    inference_count: int = 0
    execution_count: int = 0
    request_us: float = 0.0
    queue_us: float = 0.0
    compute_us: float = 0.0
    batch_compute_us: float = 0.0
    instance_deaths: int = 0
    load_failures: int = 0
    scale_ups: int = 0
    scale_downs: int = 0


class _Metrics(Collector):
    """Prometheus view of a ServingApp, with Triton's ``nv_inference_*`` metric names."""

    def __init__(self, app: ServingApp) -> None:
        self._app = app

    def collect(self) -> Iterable[Metric]:
        app = self._app
        stats = app.stats
        keys = ["model", "version"]
        labels = [app.config.name, MODEL_VERSION]

        def counter(name: str, doc: str, value: float) -> Metric:
            family = CounterMetricFamily(name, doc, labels=keys)
            family.add_metric(labels, value)
            return family

        def gauge(name: str, doc: str, value: float) -> Metric:
            family = GaugeMetricFamily(name, doc, labels=keys)
            family.add_metric(labels, value)
            return family

        yield counter(
            "nv_inference_request_success", "Successful inference requests", stats.success
        )
        failures = CounterMetricFamily(
            "nv_inference_request_failure",
            "Failed inference requests, by reason",
            labels=[*keys, "reason"],
        )
        for reason, count in stats.failure.items():
            failures.add_metric([*labels, reason], count)
        yield failures
        yield counter(
            "nv_inference_count", "Images inferred (batch dimension summed)", stats.inference_count
        )
        yield counter("nv_inference_exec_count", "Batches executed", stats.execution_count)
        yield counter(
            "nv_inference_request_duration_us",
            "Cumulative end-to-end request handling time in the server, microseconds",
            stats.request_us,
        )
        yield counter(
            "nv_inference_queue_duration_us",
            "Cumulative time requests waited in the queue, microseconds",
            stats.queue_us,
        )
        yield counter(
            "nv_inference_compute_infer_duration_us",
            "Cumulative compute time of the batches, counted once per request, microseconds",
            stats.compute_us,
        )
        yield counter(
            "radstream_batch_compute_duration_us",
            "Cumulative compute time of the batches, counted once per batch, microseconds",
            stats.batch_compute_us,
        )
        yield gauge(
            "nv_inference_pending_request_count",
            "Requests waiting in the queue",
            app.queue_depth,
        )
        yield gauge("radstream_model_instances", "Model instances loaded", app.instances)
        yield gauge("radstream_model_instances_busy", "Model instances busy", app.busy_instances)
        yield gauge(
            "radstream_model_instances_target", "Model instances wanted", app.target_instances
        )
        yield counter(
            "radstream_model_instance_deaths",
            "Instances that died unexpectedly",
            stats.instance_deaths,
        )
        yield counter(
            "radstream_model_instance_load_failures",
            "Instances that failed to load",
            stats.load_failures,
        )
        yield counter(
            "radstream_model_scale_ups", "Instances added by autoscaling", stats.scale_ups
        )
        yield counter(
            "radstream_model_scale_downs", "Instances removed by autoscaling", stats.scale_downs
        )


# --- instances -------------------------------------------------------------------------

_ERRORS_BY_CODE: dict[str, type[RadStreamError]] = {}


def _error_from_reply(reply: tuple[Any, ...]) -> RadStreamError:
    """Rebuild the typed error a worker reported as ``("error", code, message, retryable)``."""
    if not _ERRORS_BY_CODE:
        _ERRORS_BY_CODE.update({cls.code: cls for cls in all_error_classes()})
    _, code, message, retryable = reply
    cls = _ERRORS_BY_CODE.get(str(code))
    if cls is None:
        cls = ModelUnavailable if retryable else RadStreamError
    return cls(str(message))


class _InstanceDied(Exception):
    """The worker process of an instance exited or stopped answering."""


InstanceState = Literal["starting", "idle", "busy", "stopping", "dead"]


class _Instance:
    """Parent-side handle of one worker process; blocking methods run on its own thread."""

    def __init__(self, index: int, config: ServeConfig) -> None:
        self.index = index
        self.state: InstanceState = "starting"
        self.last_used = time.monotonic()
        self.executor = ThreadPoolExecutor(
            max_workers=1, thread_name_prefix=f"radstream-instance-{index}"
        )
        self._config = config
        self._lock = threading.Lock()
        self._killed = False
        self._process: BaseProcess | None = None
        self._conn: Connection | None = None
        self.pid: int | None = None

    def start(self, timeout_s: float) -> None:
        """Spawn the worker and wait until it has loaded the model (blocking)."""
        context = multiprocessing.get_context("spawn")
        parent, child = context.Pipe(duplex=True)
        process = context.Process(
            target=worker_main,
            args=(child, str(self._config.model_path), self._config.intra_op_threads),
            name=f"radstream-instance-{self.index}",
            daemon=True,
        )
        with self._lock:
            if self._killed:
                parent.close()
                child.close()
                raise _InstanceDied("stopped before it started")
            process.start()
            self._process, self._conn = process, parent
            self.pid = process.pid
        child.close()  # the worker holds the only other end: its death gives us EOF
        reply = self._receive(timeout_s)
        if reply[0] != "ready":
            self.kill()
            raise _error_from_reply(reply)

    def _receive(self, timeout_s: float | None) -> tuple[Any, ...]:
        process, conn = self._process, self._conn
        if process is None or conn is None:
            raise _InstanceDied("not started")
        deadline = None if timeout_s is None else time.monotonic() + timeout_s
        try:
            while not conn.poll(0.2):
                if not process.is_alive():
                    raise _InstanceDied(f"worker exited with code {process.exitcode}")
                if deadline is not None and time.monotonic() > deadline:
                    self.kill()
                    raise _InstanceDied(f"worker did not answer within {timeout_s:g} s")
            reply: tuple[Any, ...] = conn.recv()
        except (EOFError, OSError) as exc:
            raise _InstanceDied(f"worker pipe closed ({type(exc).__name__})") from None
        return reply

    def infer(self, batch: npt.NDArray[np.float32]) -> npt.NDArray[np.float32]:
        """Run one batch on the worker (blocking); raises _InstanceDied or the worker's error."""
        conn = self._conn
        if conn is None:
            raise _InstanceDied("not started")
        try:
            conn.send(batch)
        except (OSError, ValueError) as exc:
            raise _InstanceDied(f"cannot send to worker ({type(exc).__name__})") from None
        reply = self._receive(None)
        if reply[0] == "ok":
            logits: npt.NDArray[np.float32] = reply[1]
            return logits
        raise _error_from_reply(reply)

    def alive(self) -> bool:
        process = self._process
        try:
            return process is not None and process.is_alive()
        except ValueError:  # closed by stop()
            return False

    def kill(self) -> None:
        """Kill the worker now (safe from any thread; a running ``infer`` then fails)."""
        with self._lock:
            self._killed = True
            process = self._process
        if process is not None and self.alive():
            with contextlib.suppress(ValueError, OSError):
                process.kill()

    def stop(self, grace_s: float = 5.0) -> None:
        """Ask the worker to exit, then make sure it has (blocking)."""
        process, conn = self._process, self._conn
        with contextlib.suppress(OSError, ValueError):
            if conn is not None and process is not None and process.is_alive():
                conn.send(None)
        if process is not None:
            process.join(grace_s)
            if process.is_alive():
                process.kill()
                process.join(5.0)
            with contextlib.suppress(ValueError):
                process.close()
        if conn is not None:
            conn.close()
        with self._lock:
            self._killed = True


# --- queue, batcher, instance pool -----------------------------------------------------


@dataclass(eq=False)
class _Pending:
    images: npt.NDArray[np.float32]
    future: asyncio.Future[npt.NDArray[np.float32]]
    enqueued: float

    @property
    def count(self) -> int:
        return int(self.images.shape[0])


def _resolve(
    future: asyncio.Future[Any], *, result: Any = None, error: BaseException | None = None
) -> None:
    if future.done():
        return
    if error is not None:
        future.set_exception(error)
    else:
        future.set_result(result)


class _Scheduler:
    """The bounded queue, the dynamic batcher and the pool of instances (event loop only)."""

    def __init__(
        self,
        config: ServeConfig,
        stats: _Stats,
        on_fatal: Callable[[RadStreamError], None],
    ) -> None:
        self.config = config
        self.stats = stats
        self._on_fatal = on_fatal
        self.pending: deque[_Pending] = deque()
        self.instances: list[_Instance] = []
        self._idle: deque[_Instance] = deque()
        self._work = asyncio.Event()
        self._freed = asyncio.Event()
        self.target = config.initial_instances
        self._tasks: set[asyncio.Task[Any]] = set()
        self._loops: list[asyncio.Task[None]] = []
        self._closing = False
        self._ever_loaded = False
        self._load_failures = 0
        self._next_start = 0.0
        self._saturated_since: float | None = None
        self._counter = 0
        self.fatal: RadStreamError | None = None

    # -- state, read by the app and the metrics ------------------------------------------

    @property
    def loaded(self) -> int:
        return sum(1 for i in self.instances if i.state in ("idle", "busy"))

    @property
    def busy(self) -> int:
        return sum(1 for i in self.instances if i.state == "busy")

    @property
    def starting(self) -> int:
        return sum(1 for i in self.instances if i.state == "starting")

    # -- lifecycle ----------------------------------------------------------------------

    async def start(self) -> None:
        self._loops = [
            asyncio.create_task(self._batch_loop(), name="radstream-batcher"),
            asyncio.create_task(self._control_loop(), name="radstream-controller"),
        ]

    def _spawn(self, coro: Any) -> None:
        task: asyncio.Task[Any] = asyncio.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def close(self) -> None:
        self._closing = True
        for task in self._loops:
            task.cancel()
        await asyncio.gather(*self._loops, return_exceptions=True)
        self._fail_pending(ModelUnavailable("the model server is shutting down; retry elsewhere"))
        loop = asyncio.get_running_loop()
        stops = []
        for instance in list(self.instances):
            if instance.state != "idle":
                instance.kill()  # a running batch fails with 503, a starting load stops
            instance.state = "stopping"
            stops.append(loop.run_in_executor(instance.executor, instance.stop))
        if stops:
            await asyncio.wait(stops, timeout=15.0)
        if self._tasks:
            await asyncio.wait(list(self._tasks), timeout=15.0)
        for instance in self.instances:
            instance.executor.shutdown(wait=False)
        self.instances.clear()
        self._idle.clear()

    # -- requests -----------------------------------------------------------------------

    async def submit(self, images: npt.NDArray[np.float32]) -> npt.NDArray[np.float32]:
        """Queue ``images`` (one request) and wait for its logits."""
        if self.fatal is not None:
            raise ModelUnavailable(f"the model cannot be loaded: {self.fatal.message}")
        if self._closing:
            raise ModelUnavailable("the model server is shutting down; retry elsewhere")
        if len(self.pending) >= self.config.max_queue:
            raise QueueFull(
                f"{len(self.pending)} requests are already waiting (max_queue="
                f"{self.config.max_queue}); retry after a moment"
            )
        future: asyncio.Future[npt.NDArray[np.float32]] = asyncio.get_running_loop().create_future()
        self.pending.append(_Pending(images, future, time.monotonic()))
        self._work.set()
        return await future

    def _fail_pending(self, error: RadStreamError) -> None:
        while self.pending:
            _resolve(self.pending.popleft().future, error=error)

    def _prune(self) -> bool:
        """Drop abandoned requests from the front; return whether any request is waiting."""
        while self.pending and self.pending[0].future.done():
            self.pending.popleft()
        return bool(self.pending)

    def _fillable(self) -> bool:
        """Whether the next batch is as full as it can get without waiting."""
        total = 0
        for item in self.pending:
            if item.future.done():
                continue
            if total + item.count > self.config.max_batch_size:
                return True  # the next request would not fit (or is oversized on its own)
            total += item.count
        return total >= self.config.max_batch_size

    def _take(self) -> list[_Pending]:
        limit = self.config.max_batch_size
        batch: list[_Pending] = []
        total = 0
        while self.pending:
            item = self.pending[0]
            if item.future.done():
                self.pending.popleft()
                continue
            if batch and total + item.count > limit:
                break
            self.pending.popleft()
            batch.append(item)
            total += item.count
            if total >= limit:
                break
        return batch

    async def _acquire(self) -> _Instance:
        while True:
            while self._idle:
                instance = self._idle.popleft()
                if instance.alive() and instance.state == "idle":
                    instance.state = "busy"
                    return instance
                if instance.state == "idle":
                    self._bury(instance, "while idle")
            self._freed.clear()
            await self._freed.wait()

    def _release(self, instance: _Instance) -> None:
        if instance.state != "busy":
            return
        instance.state = "idle"
        instance.last_used = time.monotonic()
        self._idle.append(instance)
        self._freed.set()

    def _bury(self, instance: _Instance, when: str) -> None:
        """Forget an instance whose worker died; the controller starts a replacement."""
        if instance.state == "dead":
            return
        instance.state = "dead"
        with contextlib.suppress(ValueError):
            self.instances.remove(instance)
        with contextlib.suppress(ValueError):
            self._idle.remove(instance)
        self.stats.instance_deaths += 1
        logger.warning(
            "model instance %d (pid %s) died %s; starting a replacement",
            instance.index,
            instance.pid,
            when,
        )
        instance.kill()
        loop = asyncio.get_running_loop()
        loop.run_in_executor(instance.executor, instance.stop, 1.0)
        instance.executor.shutdown(wait=False)

    async def _batch_loop(self) -> None:
        delay = self.config.max_queue_delay_ms / 1000.0
        while True:
            while not self._prune():
                self._work.clear()
                await self._work.wait()
            instance = await self._acquire()
            if not self._prune():
                self._release(instance)
                continue
            deadline = self.pending[0].enqueued + delay
            while not self._fillable():
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    break
                self._work.clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._work.wait(), remaining)
            items = self._take()
            if not items:
                self._release(instance)
                continue
            self._spawn(self._run_batch(instance, items))

    async def _run_batch(self, instance: _Instance, items: list[_Pending]) -> None:
        loop = asyncio.get_running_loop()
        started = time.monotonic()
        arrays = [item.images for item in items]
        batch = arrays[0] if len(arrays) == 1 else np.concatenate(arrays, axis=0)
        try:
            logits = await loop.run_in_executor(instance.executor, instance.infer, batch)
        except _InstanceDied as exc:
            self._bury(instance, f"while running a batch ({exc})")
            error: RadStreamError = ModelUnavailable(
                f"model instance {instance.index} died while running a batch of "
                f"{batch.shape[0]} image(s); retry the request"
            )
            for item in items:
                _resolve(item.future, error=error)
            return
        except Exception as exc:
            error = error_from_exception(exc)
            for item in items:
                _resolve(item.future, error=error)
            self._release(instance)
            return
        finished = time.monotonic()
        self._release(instance)
        compute_us = (finished - started) * 1e6
        stats = self.stats
        stats.execution_count += 1
        stats.inference_count += int(batch.shape[0])
        stats.batch_compute_us += compute_us
        stats.compute_us += compute_us * len(items)
        stats.queue_us += sum((started - item.enqueued) * 1e6 for item in items)
        offset = 0
        for item in items:
            _resolve(item.future, result=logits[offset : offset + item.count])
            offset += item.count

    # -- instances ----------------------------------------------------------------------

    async def _control_loop(self) -> None:
        config = self.config
        tick = max(0.02, min(0.1, config.scale_up_delay_s / 4, config.scale_down_delay_s / 4))
        while True:
            now = time.monotonic()
            for instance in list(self._idle):
                if instance.state == "idle" and not instance.alive():
                    self._bury(instance, "while idle")
            if config.autoscale is not None:
                self._autoscale(now)
            if len(self.instances) < self.target and now >= self._next_start and self.fatal is None:
                for _ in range(self.target - len(self.instances)):
                    self._start_instance()
            await asyncio.sleep(tick)

    def _autoscale(self, now: float) -> None:
        low, high = self.config.instance_range
        config = self.config
        saturated = (
            bool(self.pending)
            and self.loaded > 0
            and not self._idle
            and self.starting == 0
            and len(self.instances) < high
        )
        if not saturated:
            self._saturated_since = None
        elif self._saturated_since is None:
            self._saturated_since = now
        elif now - self._saturated_since >= config.scale_up_delay_s:
            self._saturated_since = None
            self.target = min(high, len(self.instances) + 1)
            self.stats.scale_ups += 1
            logger.info(
                "autoscale: queue waiting with every instance busy; %d instance(s)", self.target
            )
            return
        if len(self.instances) > low and self.starting == 0:
            for instance in list(self._idle):
                if (
                    instance.state == "idle"
                    and now - instance.last_used >= config.scale_down_delay_s
                ):
                    self._idle.remove(instance)
                    self.instances.remove(instance)
                    instance.state = "stopping"
                    self.target = max(low, len(self.instances))
                    self.stats.scale_downs += 1
                    logger.info(
                        "autoscale: instance %d idle; %d instance(s)", instance.index, self.target
                    )
                    self._spawn(self._stop_instance(instance))
                    break

    async def _stop_instance(self, instance: _Instance) -> None:
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(instance.executor, instance.stop)
        instance.executor.shutdown(wait=False)

    def _start_instance(self) -> None:
        self._counter += 1
        instance = _Instance(self._counter, self.config)
        self.instances.append(instance)
        self._spawn(self._load(instance))

    async def _load(self, instance: _Instance) -> None:
        loop = asyncio.get_running_loop()
        try:
            await loop.run_in_executor(instance.executor, instance.start, INSTANCE_LOAD_TIMEOUT_S)
        except Exception as exc:
            self._load_failed(instance, exc)
            return
        if self._closing or instance.state != "starting":
            return  # close() stops it
        instance.state = "idle"
        instance.last_used = time.monotonic()
        self._ever_loaded = True
        self._load_failures = 0
        self._idle.append(instance)
        self._freed.set()
        logger.info("model instance %d loaded (pid %s)", instance.index, instance.pid)

    def _load_failed(self, instance: _Instance, exc: Exception) -> None:
        with contextlib.suppress(ValueError):
            self.instances.remove(instance)
        instance.state = "dead"
        instance.kill()
        instance.executor.shutdown(wait=False)
        if self._closing:
            return
        if isinstance(exc, _InstanceDied):
            error: RadStreamError = ModelUnavailable(f"model instance failed to start: {exc}")
        else:
            error = error_from_exception(exc)
        self.stats.load_failures += 1
        self._load_failures += 1
        backoff = min(30.0, 0.5 * 2 ** (self._load_failures - 1))
        self._next_start = time.monotonic() + backoff
        logger.error(
            "model instance %d failed to load (%s); next attempt in %.1f s",
            instance.index,
            error.message,
            backoff,
        )
        if not error.retryable and not self._ever_loaded:
            self.fatal = error
            self._fail_pending(ModelUnavailable(f"the model cannot be loaded: {error.message}"))
            self._on_fatal(error)
        elif self.loaded == 0:
            self._fail_pending(
                ModelUnavailable(f"no model instance is available ({error.message}); retry")
            )


# --- HTTP ------------------------------------------------------------------------------


class _BearerAuth:
    """ASGI middleware: every path except the health probes needs ``Bearer <token>``."""

    def __init__(self, app: Callable[[Scope, Receive, Send], Any], token: str) -> None:
        self._app = app
        self._expected = f"Bearer {token}".encode()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["path"] not in OPEN_PATHS:
            given = b""
            for key, value in scope["headers"]:
                if key == b"authorization":
                    given = value
                    break
            if not hmac.compare_digest(given, self._expected):
                response = _error("missing or wrong bearer token", 401)
                response.headers["WWW-Authenticate"] = 'Bearer realm="radstream"'
                await response(scope, receive, send)
                return
        await self._app(scope, receive, send)


class _BodyTooLarge(Exception):
    pass


def _error(message: str, status: int, *, retry_after: bool = False) -> Response:
    headers = {"Retry-After": "1"} if retry_after else None
    return Response(encode_error(message), status, headers=headers, media_type="application/json")


def _status_for(error: RadStreamError) -> tuple[int, str]:
    """HTTP status and failure reason of an error."""
    if isinstance(error, QueueFull):
        return 503, "REJECTED"
    if isinstance(error, ProtocolError):
        return 400, "BAD_REQUEST"
    if isinstance(error, TransientError):
        return 503, "UNAVAILABLE"
    return 500, "BACKEND"


async def _read_body(request: Request) -> bytes:
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > MAX_BODY_BYTES:
        raise _BodyTooLarge
    chunks: list[bytes] = []
    total = 0
    async for chunk in request.stream():
        total += len(chunk)
        if total > MAX_BODY_BYTES:
            raise _BodyTooLarge
        chunks.append(chunk)
    body = b"".join(chunks)
    encoding = request.headers.get("content-encoding", "identity").strip().lower()
    if encoding in ("", "identity"):
        return body
    if encoding not in ("gzip", "deflate"):
        raise ProtocolError(f"unsupported Content-Encoding {encoding!r}; use gzip or deflate")
    inflater = zlib.decompressobj(wbits=31 if encoding == "gzip" else 15)
    try:
        data = inflater.decompress(body, MAX_BODY_BYTES + 1)
    except zlib.error as exc:
        raise ProtocolError(f"the {encoding} body cannot be decompressed ({exc})") from None
    if len(data) > MAX_BODY_BYTES or inflater.unconsumed_tail:
        raise _BodyTooLarge
    return data


class ServingApp:
    """The ASGI application of the model server (Starlette routes, optional bearer auth).

    Reads the model's metadata at construction (raising ModelFileInvalid for a bad file);
    instances start with the ASGI lifespan and stop with it.
    """

    def __init__(
        self,
        config: ServeConfig,
        *,
        on_fatal: Callable[[RadStreamError], None] | None = None,
    ) -> None:
        self.config = config
        self.info: ModelInfo = read_model_info(Path(config.model_path))
        self.stats = _Stats()
        self.fatal_error: RadStreamError | None = None
        self.on_fatal = on_fatal
        self._scheduler: _Scheduler | None = None
        self.registry = CollectorRegistry(auto_describe=False)
        self.registry.register(_Metrics(self))
        self._metadata = self._model_metadata()
        routes = [
            Route("/v2", self._server_metadata, methods=["GET"]),
            Route("/v2/health/live", self._live, methods=["GET"]),
            Route("/v2/health/ready", self._ready, methods=["GET"]),
            Route("/v2/models/{name}", self._metadata_endpoint, methods=["GET"]),
            Route("/v2/models/{name}/versions/{version}", self._metadata_endpoint, methods=["GET"]),
            Route("/v2/models/{name}/ready", self._model_ready, methods=["GET"]),
            Route("/v2/models/{name}/versions/{version}/ready", self._model_ready, methods=["GET"]),
            Route("/v2/models/{name}/infer", self._infer, methods=["POST"]),
            Route("/v2/models/{name}/versions/{version}/infer", self._infer, methods=["POST"]),
            Route("/metrics", self._metrics, methods=["GET"]),
        ]
        starlette = Starlette(routes=routes, lifespan=self._lifespan)
        self._asgi: Callable[[Scope, Receive, Send], Any] = starlette
        if config.token is not None:
            self._asgi = _BearerAuth(starlette, config.token)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await self._asgi(scope, receive, send)

    # -- state --------------------------------------------------------------------------

    @property
    def ready(self) -> bool:
        """Whether at least one instance is loaded (safe to read from any thread)."""
        scheduler = self._scheduler
        return scheduler is not None and not scheduler._closing and scheduler.loaded > 0

    @property
    def instances(self) -> int:
        scheduler = self._scheduler
        return 0 if scheduler is None else scheduler.loaded

    @property
    def busy_instances(self) -> int:
        scheduler = self._scheduler
        return 0 if scheduler is None else scheduler.busy

    @property
    def target_instances(self) -> int:
        scheduler = self._scheduler
        return 0 if scheduler is None else scheduler.target

    @property
    def queue_depth(self) -> int:
        scheduler = self._scheduler
        return 0 if scheduler is None else len(scheduler.pending)

    def _fatal(self, error: RadStreamError) -> None:
        self.fatal_error = error
        if self.on_fatal is not None:
            self.on_fatal(error)

    @contextlib.asynccontextmanager
    async def _lifespan(self, _app: Starlette) -> AsyncIterator[None]:
        scheduler = _Scheduler(self.config, self.stats, self._fatal)
        self._scheduler = scheduler
        await scheduler.start()
        try:
            yield
        finally:
            await scheduler.close()

    # -- metadata -----------------------------------------------------------------------

    def _model_metadata(self) -> dict[str, Any]:
        info = self.info
        return {
            "name": self.config.name,
            "versions": [MODEL_VERSION],
            "platform": "onnxruntime_onnx",
            "inputs": [
                {
                    "name": info.input_name,
                    "datatype": "FP32",
                    "shape": [-1, info.channels, info.input_size, info.input_size],
                }
            ],
            "outputs": [
                {"name": info.output_name, "datatype": "FP32", "shape": [-1, len(info.labels)]}
            ],
            "parameters": {
                "labels": json.dumps(list(info.labels)),
                "input_range": f"{_format_number(info.input_min)},{_format_number(info.input_max)}",
                "input_size": str(info.input_size),
                "channels": str(info.channels),
                "model_name": info.name,
                "model_version": info.version,
                "sha256": info.sha256,
            },
        }

    def _unknown_model(self, request: Request) -> Response | None:
        name = request.path_params["name"]
        version = request.path_params.get("version")
        if name != self.config.name:
            return _error(f"unknown model {name!r}; this server serves {self.config.name!r}", 404)
        if version is not None and version != MODEL_VERSION:
            return _error(
                f"unknown version {version!r} of model {name!r}; available: [{MODEL_VERSION!r}]",
                404,
            )
        return None

    # -- endpoints ----------------------------------------------------------------------

    async def _server_metadata(self, _request: Request) -> Response:
        return JSONResponse(
            {"name": "radstream", "version": __version__, "extensions": ["binary_tensor_data"]}
        )

    async def _live(self, _request: Request) -> Response:
        return Response(status_code=200)

    async def _ready(self, _request: Request) -> Response:
        if self.ready:
            return Response(status_code=200)
        return _error("no model instance is loaded yet", 503, retry_after=True)

    async def _metadata_endpoint(self, request: Request) -> Response:
        return self._unknown_model(request) or JSONResponse(self._metadata)

    async def _model_ready(self, request: Request) -> Response:
        unknown = self._unknown_model(request)
        if unknown is not None:
            return unknown
        return await self._ready(request)

    async def _metrics(self, _request: Request) -> Response:
        return Response(generate_latest(self.registry), media_type=CONTENT_TYPE_LATEST)

    async def _infer(self, request: Request) -> Response:
        unknown = self._unknown_model(request)
        if unknown is not None:
            return unknown
        arrived = time.monotonic()
        try:
            response = await self._infer_inner(request)
        except _BodyTooLarge:
            self.stats.failure["BAD_REQUEST"] += 1
            return _error(f"the request body is over {MAX_BODY_BYTES} bytes", 413)
        except ClientDisconnect:
            self.stats.failure["BAD_REQUEST"] += 1
            return _error("the client disconnected before sending the whole body", 400)
        except Exception as exc:
            error = error_from_exception(exc)
            status, reason = _status_for(error)
            self.stats.failure[reason] += 1
            if status == 500:
                logger.error("inference failed: %s", error)
            return _error(error.message, status, retry_after=status == 503)
        self.stats.success += 1
        self.stats.request_us += (time.monotonic() - arrived) * 1e6
        return response

    async def _infer_inner(self, request: Request) -> Response:
        scheduler = self._scheduler
        if scheduler is None:
            raise ModelUnavailable("the model server is starting")
        body = await _read_body(request)
        header_length = parse_header_length(request.headers.get(HEADER_LENGTH))
        if header_length is None and len(body) > 1 << 20:
            # A big JSON body takes a while to parse: keep the event loop free meanwhile.
            decoded = await asyncio.to_thread(decode_infer_request, body, header_length)
        else:
            decoded = decode_infer_request(body, header_length)
        images = self._images(decoded)
        logits = await scheduler.submit(images)
        output = self.info.output_name
        payload, headers = encode_infer_response(
            self.config.name,
            MODEL_VERSION,
            {output: logits},
            binary_outputs=decoded.binary_set([output]),
            request_id=decoded.id,
        )
        return Response(payload, 200, headers=headers)

    def _images(self, request: InferRequest) -> npt.NDArray[np.float32]:
        info = self.info
        if list(request.inputs) != [info.input_name]:
            raise ProtocolError(
                f"model {self.config.name!r} takes exactly one input {info.input_name!r}, "
                f"got {list(request.inputs)}"
            )
        if request.outputs:
            unknown = [name for name in request.outputs if name != info.output_name]
            if unknown:
                raise ProtocolError(
                    f"model {self.config.name!r} has no output {unknown[0]!r}; "
                    f"its output is {info.output_name!r}"
                )
        images = request.inputs[info.input_name]
        if images.dtype != np.float32:
            raise ProtocolError(
                f"input {info.input_name!r} must be FP32, got {datatype_of(images)}"
            )
        expected = (info.channels, info.input_size, info.input_size)
        if images.ndim != 4 or images.shape[0] < 1 or tuple(images.shape[1:]) != expected:
            raise ProtocolError(
                f"input {info.input_name!r} has shape {list(images.shape)}, expected "
                f"[N, {info.channels}, {info.input_size}, {info.input_size}] with N >= 1"
            )
        if not np.isfinite(images).all():
            raise ProtocolError(f"input {info.input_name!r} contains NaN or infinite values")
        return images


# --- running it ------------------------------------------------------------------------


def _bind(host: str, port: int) -> socket.socket:
    """A listening TCP socket on (host, port); port 0 picks a free one."""
    try:
        family, kind, proto, _, address = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0]
        sock = socket.socket(family, kind, proto)
    except OSError as exc:
        raise ConfigInvalid(f"serve: cannot resolve host {host!r} ({exc})") from exc
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(address)
        sock.listen(2048)
    except OSError as exc:
        sock.close()
        raise ConfigInvalid(
            f"serve: cannot listen on {host}:{port} ({exc.strerror or exc}); is another "
            "server running there? Pick another --port."
        ) from exc
    sock.set_inheritable(True)
    return sock


def _base_url(sock: socket.socket) -> str:
    host, port = sock.getsockname()[:2]
    shown = f"[{host}]" if ":" in host else host
    return f"http://{shown}:{port}"


def _uvicorn_server(app: ServingApp) -> uvicorn.Server:
    config = uvicorn.Config(
        app,
        log_level="warning",
        access_log=False,
        lifespan="on",
        interface="asgi3",
        timeout_graceful_shutdown=10,
        server_header=False,
    )
    return uvicorn.Server(config)


def serve(config: ServeConfig, *, announce: Callable[[str], None] | None = None) -> None:
    """Run the model server until SIGINT or SIGTERM, then stop it cleanly and return.

    Blocking. ``announce`` is called with the base URL (``http://host:port``) once the
    port is bound, before the instances have loaded. On SIGINT/SIGTERM the server stops
    accepting connections, finishes in-flight requests (10 s at most), stops every
    instance process and returns normally (no KeyboardInterrupt). Raises
    ModelFileInvalid before binding if the model file is unusable, ConfigInvalid if the
    port cannot be bound, and the load error if no instance can ever load the model.
    """
    app = ServingApp(config)
    sock = _bind(config.host, config.port)
    server = _uvicorn_server(app)

    def stop(_error: RadStreamError) -> None:
        server.should_exit = True

    app.on_fatal = stop
    # uvicorn handles SIGINT/SIGTERM itself, then re-raises the signal to the handler it
    # found; a no-op handler here makes that a normal return instead of an interrupt.
    previous: dict[signal.Signals, Any] = {}
    if threading.current_thread() is threading.main_thread():
        for sig in (signal.SIGINT, signal.SIGTERM):
            previous[sig] = signal.signal(sig, lambda _signum, _frame: None)
    try:
        if announce is not None:
            announce(_base_url(sock))
        server.run(sockets=[sock])
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        sock.close()
    if app.fatal_error is not None:
        raise app.fatal_error


@contextlib.contextmanager
def running_server(config: ServeConfig, *, ready_timeout_s: float = 120.0) -> Iterator[str]:
    """Run the server in a background thread; yield its base URL once it is ready.

    ``config.port`` 0 picks a free port. The server (and every instance process) is
    stopped when the block exits. Raises the load error, or ModelUnavailable after
    ``ready_timeout_s``, if no instance becomes ready.
    """
    app = ServingApp(config)
    sock = _bind(config.host, config.port)
    server = _uvicorn_server(app)
    thread = threading.Thread(
        target=server.run, kwargs={"sockets": [sock]}, name="radstream-serve", daemon=True
    )
    thread.start()
    try:
        deadline = time.monotonic() + ready_timeout_s
        while not app.ready:
            if app.fatal_error is not None:
                raise app.fatal_error
            if not thread.is_alive():
                raise ModelUnavailable("the model server stopped during start-up")
            if time.monotonic() > deadline:
                raise ModelUnavailable(
                    f"no model instance became ready within {ready_timeout_s:g} s"
                )
            time.sleep(0.02)
        yield _base_url(sock)
    finally:
        server.should_exit = True
        thread.join(timeout=60)
        sock.close()


__all__ = ["QueueFull", "ServeConfig", "ServingApp", "running_server", "serve"]
