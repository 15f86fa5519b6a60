"""The bounded queue and the dynamic batcher in front of the instance pool (event loop only).

Requests go into a bounded queue; the batcher forms batches of up to ``max_batch_size``
images (waiting at most ``max_queue_delay_ms`` after the first queued request, and never
splitting a request) and hands each batch to an idle instance of the pool
(``radstream.serving.pool``). Overload is refused, never queued without bound: when
``max_queue`` requests are already waiting, ``submit`` raises ``QueueFull``. When an
instance dies mid-batch, the requests of that batch fail with ``ModelUnavailable``
(retryable), never a hang.
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

from radstream.errors import ModelUnavailable, RadStreamError, TransientError, error_from_exception
from radstream.serving.config import ServeConfig
from radstream.serving.instances import Instance, InstanceDied
from radstream.serving.metrics import Stats
from radstream.serving.pool import InstancePool

Float32Array = npt.NDArray[np.float32]
"""Float32 arrays: the images of a request going in, their logits coming out."""
_T = TypeVar("_T")


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
    """The bounded queue and the dynamic batcher, over a pool of instances (event loop only)."""

    def __init__(
        self,
        config: ServeConfig,
        stats: Stats,
        on_fatal: Callable[[RadStreamError], None],
    ) -> None:
        self.config = config
        self.stats = stats
        self.pending: deque[Pending] = deque()
        self.pool = InstancePool(
            config, stats, on_fatal=on_fatal, on_none_available=self._fail_pending
        )
        self._work = asyncio.Event()
        self._tasks: set[asyncio.Task[None]] = set()
        self._loops: list[asyncio.Task[None]] = []
        self.closing = False

    # -- state, read by the app and the metrics ------------------------------------------

    @property
    def loaded(self) -> int:
        """Instances that have loaded the model (idle or busy)."""
        return self.pool.loaded

    @property
    def busy(self) -> int:
        """Instances running a batch."""
        return self.pool.busy

    @property
    def target(self) -> int:
        """Instances wanted (the autoscaler's target)."""
        return self.pool.target

    # -- lifecycle ----------------------------------------------------------------------

    async def start(self) -> None:
        """Start the batcher and the instance controller (which starts the instances)."""
        self._loops = [
            asyncio.create_task(self._batch_loop(), name="radstream-batcher"),
            asyncio.create_task(
                self.pool.control_loop(lambda: bool(self.pending)), name="radstream-controller"
            ),
        ]

    def _spawn(self, coro: Coroutine[object, object, None]) -> None:
        task: asyncio.Task[None] = asyncio.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def close(self) -> None:
        """Fail what is queued, stop every instance and the loops (waits 15 s at most)."""
        self.closing = True
        self.pool.closing = True
        for task in self._loops:
            task.cancel()
        await asyncio.gather(*self._loops, return_exceptions=True)
        self._fail_pending(ModelUnavailable("the model server is shutting down; retry elsewhere"))
        await self.pool.stop_all()
        await self.pool.close(self._tasks)

    # -- requests -----------------------------------------------------------------------

    async def submit(self, images: Float32Array) -> Float32Array:
        """Queue ``images`` (one request) and wait for its logits."""
        fatal = self.pool.fatal
        if fatal is not None:
            raise ModelUnavailable(f"the model cannot be loaded: {fatal.message}")
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
        """Take the next batch off the queue, never splitting a request.

        At most ``max_batch_size`` images, unless one request alone is larger: then it
        goes alone. Abandoned requests are dropped on the way.
        """
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

    async def _batch_loop(self) -> None:
        delay = self.config.max_queue_delay_ms / 1000.0
        pool = self.pool
        while True:
            while not self._prune():
                self._work.clear()
                await self._work.wait()
            instance = await pool.acquire()
            if not self._prune():
                pool.release(instance)
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
                pool.release(instance)
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
            self.pool.bury(instance, f"while running a batch ({exc})")
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
            self.pool.release(instance)
            return
        finished = time.monotonic()
        self.pool.release(instance)
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


__all__ = ["Float32Array", "Pending", "QueueFull", "Scheduler", "reject", "resolve"]
