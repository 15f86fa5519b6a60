"""The bounded queue, the dynamic batcher and the pool of instances (event loop only).

Requests go into a bounded queue; the batcher forms batches of up to ``max_batch_size``
images (waiting at most ``max_queue_delay_ms`` after the first queued request, and never
splitting a request) and hands each batch to an idle instance. Overload is refused, never
queued without bound: when ``max_queue`` requests are already waiting, ``submit`` raises
``QueueFull``. An instance that dies is replaced; the requests of the batch it was running
fail with ``ModelUnavailable`` (retryable), never a hang.

With ``autoscale=(MIN, MAX)`` the controller adds an instance when requests have waited
with every instance busy for ``scale_up_delay_s`` and removes one that has been idle for
``scale_down_delay_s``, staying within MIN..MAX. An instance that fails to load is retried
with RadStream's backoff.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import deque
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from typing import ClassVar, TypeVar

import numpy as np
import numpy.typing as npt

from radstream.backoff import Backoff
from radstream.errors import ModelUnavailable, RadStreamError, TransientError, error_from_exception
from radstream.logs import get_logger
from radstream.serving.config import INSTANCE_LOAD_TIMEOUT_S, ServeConfig
from radstream.serving.instances import Instance, InstanceDied
from radstream.serving.metrics import Stats

logger = get_logger(__name__)

Float32Array = npt.NDArray[np.float32]
"""Float32 arrays: the images of a request going in, their logits coming out."""
_T = TypeVar("_T")

LOAD_BACKOFF = Backoff(base_s=0.5, max_s=30.0)
"""Waits between failed instance loads (their ceilings: the load is retried at once after)."""


class QueueFull(TransientError):
    """The server's request queue is full: retry after a moment (HTTP 503)."""

    code: ClassVar[str] = "KSERVE_QUEUE_FULL"
    hint: ClassVar[str] = (
        "The model server is at capacity; retry after the Retry-After delay, or raise "
        "--max-queue / --instances."
    )


@dataclass(eq=False)
class Pending:
    """One queued request: its images, the future its handler awaits, when it was queued."""

    images: Float32Array
    future: asyncio.Future[Float32Array]
    enqueued: float

    @property
    def count(self) -> int:
        """Images in the request (its batch dimension)."""
        return int(self.images.shape[0])


def resolve(future: asyncio.Future[_T], result: _T) -> None:
    """Settle ``future`` with ``result``, unless it is already done (an abandoned request)."""
    if not future.done():
        future.set_result(result)


def reject(future: asyncio.Future[_T], error: BaseException) -> None:
    """Fail ``future`` with ``error``, unless it is already done (an abandoned request)."""
    if not future.done():
        future.set_exception(error)


class Scheduler:
    """The bounded queue, the dynamic batcher and the pool of instances (event loop only)."""

    def __init__(
        self,
        config: ServeConfig,
        stats: Stats,
        on_fatal: Callable[[RadStreamError], None],
    ) -> None:
        self.config = config
        self.stats = stats
        self._on_fatal = on_fatal
        self.pending: deque[Pending] = deque()
        self.instances: list[Instance] = []
        self._idle: deque[Instance] = deque()
        self._work = asyncio.Event()
        self._freed = asyncio.Event()
        self.target = config.initial_instances
        self._tasks: set[asyncio.Task[None]] = set()
        self._loops: list[asyncio.Task[None]] = []
        self.closing = False
        self._ever_loaded = False
        self._load_failures = 0
        self._next_start = 0.0
        self._saturated_since: float | None = None
        self._counter = 0
        self.fatal: RadStreamError | None = None

    # -- state, read by the app and the metrics ------------------------------------------

    @property
    def loaded(self) -> int:
        """Instances that have loaded the model (idle or busy)."""
        return sum(1 for i in self.instances if i.state in ("idle", "busy"))

    @property
    def busy(self) -> int:
        """Instances running a batch."""
        return sum(1 for i in self.instances if i.state == "busy")

    @property
    def starting(self) -> int:
        """Instances still loading the model."""
        return sum(1 for i in self.instances if i.state == "starting")

    # -- lifecycle ----------------------------------------------------------------------

    async def start(self) -> None:
        """Start the batcher and the instance controller (which starts the instances)."""
        self._loops = [
            asyncio.create_task(self._batch_loop(), name="radstream-batcher"),
            asyncio.create_task(self._control_loop(), name="radstream-controller"),
        ]

    def _spawn(self, coro: Coroutine[object, object, None]) -> None:
        task: asyncio.Task[None] = asyncio.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def close(self) -> None:
        """Fail what is queued, stop every instance and the loops (waits 15 s at most)."""
        self.closing = True
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

    async def submit(self, images: Float32Array) -> Float32Array:
        """Queue ``images`` (one request) and wait for its logits."""
        if self.fatal is not None:
            raise ModelUnavailable(f"the model cannot be loaded: {self.fatal.message}")
        if self.closing:
            raise ModelUnavailable("the model server is shutting down; retry elsewhere")
        if len(self.pending) >= self.config.max_queue:
            raise QueueFull(
                f"{len(self.pending)} requests are already waiting (max_queue="
                f"{self.config.max_queue}); retry after a moment"
            )
        future: asyncio.Future[Float32Array] = asyncio.get_running_loop().create_future()
        self.pending.append(Pending(images, future, time.monotonic()))
        self._work.set()
        return await future

    def _fail_pending(self, error: RadStreamError) -> None:
        while self.pending:
            reject(self.pending.popleft().future, error)

    def _prune(self) -> bool:
        """Drop abandoned requests from the front; return whether any request is waiting."""
        while self.pending and self.pending[0].future.done():
            self.pending.popleft()
        return bool(self.pending)

    def batch_is_full(self) -> bool:
        """Whether the next batch is as full as it can get without waiting."""
        total = 0
        for item in self.pending:
            if item.future.done():
                continue
            if total + item.count > self.config.max_batch_size:
                return True  # the next request would not fit (or is oversized on its own)
            total += item.count
        return total >= self.config.max_batch_size

    def take_batch(self) -> list[Pending]:
        limit = self.config.max_batch_size
        batch: list[Pending] = []
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

    async def _acquire(self) -> Instance:
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

    def _release(self, instance: Instance) -> None:
        if instance.state != "busy":
            return
        instance.state = "idle"
        instance.last_used = time.monotonic()
        self._idle.append(instance)
        self._freed.set()

    def _bury(self, instance: Instance, when: str) -> None:
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
            while not self.batch_is_full():
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    break
                self._work.clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._work.wait(), remaining)
            items = self.take_batch()
            if not items:
                self._release(instance)
                continue
            self._spawn(self._run_batch(instance, items))

    async def _run_batch(self, instance: Instance, items: list[Pending]) -> None:
        loop = asyncio.get_running_loop()
        started = time.monotonic()
        arrays = [item.images for item in items]
        batch = arrays[0] if len(arrays) == 1 else np.concatenate(arrays, axis=0)
        try:
            logits = await loop.run_in_executor(instance.executor, instance.infer, batch)
        except InstanceDied as exc:
            self._bury(instance, f"while running a batch ({exc})")
            error: RadStreamError = ModelUnavailable(
                f"model instance {instance.index} died while running a batch of "
                f"{batch.shape[0]} image(s); retry the request"
            )
            for item in items:
                reject(item.future, error)
            return
        except Exception as exc:
            error = error_from_exception(exc)
            for item in items:
                reject(item.future, error)
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
            resolve(item.future, logits[offset : offset + item.count])
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

    async def _stop_instance(self, instance: Instance) -> None:
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(instance.executor, instance.stop)
        instance.executor.shutdown(wait=False)

    def _start_instance(self) -> None:
        self._counter += 1
        instance = Instance(self._counter, self.config)
        self.instances.append(instance)
        self._spawn(self._load(instance))

    async def _load(self, instance: Instance) -> None:
        loop = asyncio.get_running_loop()
        try:
            await loop.run_in_executor(instance.executor, instance.start, INSTANCE_LOAD_TIMEOUT_S)
        except Exception as exc:
            self._load_failed(instance, exc)
            return
        if self.closing or instance.state != "starting":
            return  # close() stops it
        instance.state = "idle"
        instance.last_used = time.monotonic()
        self._ever_loaded = True
        self._load_failures = 0
        self._idle.append(instance)
        self._freed.set()
        logger.info("model instance %d loaded (pid %s)", instance.index, instance.pid)

    def _load_failed(self, instance: Instance, exc: Exception) -> None:
        with contextlib.suppress(ValueError):
            self.instances.remove(instance)
        instance.state = "dead"
        instance.kill()
        instance.executor.shutdown(wait=False)
        if self.closing:
            return
        if isinstance(exc, InstanceDied):
            error: RadStreamError = ModelUnavailable(f"model instance failed to start: {exc}")
        else:
            error = error_from_exception(exc)
        self.stats.load_failures += 1
        self._load_failures += 1
        # The ceiling, not a jittered draw: one server retries alone, nothing to spread out.
        backoff = LOAD_BACKOFF.ceiling(self._load_failures)
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


__all__ = ["LOAD_BACKOFF", "Float32Array", "Pending", "QueueFull", "Scheduler", "reject", "resolve"]
