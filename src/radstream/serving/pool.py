"""The pool of model instances: lend idle ones to the batcher, replace dead ones, autoscale.

Runs on the event loop only. An instance that dies is buried and the controller starts a
replacement. With ``autoscale=(MIN, MAX)`` the controller adds an instance when requests
have waited with every instance busy for ``scale_up_delay_s`` and removes one that has been
idle for ``scale_down_delay_s``, staying within MIN..MAX. An instance that fails to load is
retried after RadStream's backoff; a permanent load error before any instance ever loaded
is fatal.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import deque
from collections.abc import Callable, Coroutine

from radstream.backoff import Backoff
from radstream.errors import ModelUnavailable, RadStreamError, error_from_exception
from radstream.logs import get_logger
from radstream.serving.config import INSTANCE_LOAD_TIMEOUT_S, ServeConfig
from radstream.serving.instances import Instance, InstanceDied
from radstream.serving.metrics import Stats

logger = get_logger(__name__)

LOAD_BACKOFF = Backoff(base_s=0.5, max_s=30.0)
"""Waits between failed instance loads (their ceilings: one server retries alone)."""

STOP_TIMEOUT_S = 15.0
"""How long closing the pool waits for instances to stop and tasks to finish."""

ErrorSink = Callable[[RadStreamError], None]


class InstancePool:
    """The instances of one server, their states, and the controller that keeps them."""

    def __init__(
        self,
        config: ServeConfig,
        stats: Stats,
        *,
        on_fatal: ErrorSink,
        on_none_available: ErrorSink,
    ) -> None:
        """``on_fatal``: no instance can ever load; ``on_none_available``: none is loaded now.

        Both are called with the error the waiting requests should fail with.
        """
        self.config = config
        self.stats = stats
        self._on_fatal = on_fatal
        self._on_none_available = on_none_available
        self.instances: list[Instance] = []
        self._idle: deque[Instance] = deque()
        self._freed = asyncio.Event()
        self.target = config.initial_instances
        self._tasks: set[asyncio.Task[None]] = set()
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

    def _spawn(self, coro: Coroutine[object, object, None]) -> None:
        task: asyncio.Task[None] = asyncio.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    # -- lending ------------------------------------------------------------------------

    async def acquire(self) -> Instance:
        """Wait for an idle, live instance and mark it busy."""
        while True:
            while self._idle:
                instance = self._idle.popleft()
                if instance.alive() and instance.state == "idle":
                    instance.state = "busy"
                    return instance
                if instance.state == "idle":
                    self.bury(instance, "while idle")
            self._freed.clear()
            await self._freed.wait()

    def release(self, instance: Instance) -> None:
        """Give a busy instance back: it is idle again."""
        if instance.state != "busy":
            return
        instance.state = "idle"
        instance.last_used = time.monotonic()
        self._idle.append(instance)
        self._freed.set()

    def bury(self, instance: Instance, when: str) -> None:
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

    # -- the controller -----------------------------------------------------------------

    async def control_loop(self, waiting: Callable[[], bool]) -> None:
        """Forever: bury dead idle instances, autoscale, start what is missing.

        ``waiting`` tells whether requests are queued (the autoscaler's signal).
        """
        config = self.config
        tick = max(0.02, min(0.1, config.scale_up_delay_s / 4, config.scale_down_delay_s / 4))
        while True:
            now = time.monotonic()
            for instance in list(self._idle):
                if instance.state == "idle" and not instance.alive():
                    self.bury(instance, "while idle")
            if config.autoscale is not None:
                self._autoscale(now, waiting())
            if len(self.instances) < self.target and now >= self._next_start and self.fatal is None:
                for _ in range(self.target - len(self.instances)):
                    self._start_instance()
            await asyncio.sleep(tick)

    def _autoscale(self, now: float, waiting: bool) -> None:
        low, high = self.config.instance_range
        config = self.config
        saturated = (
            waiting
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
            self._on_none_available(
                ModelUnavailable(f"the model cannot be loaded: {error.message}")
            )
            self._on_fatal(error)
        elif self.loaded == 0:
            self._on_none_available(
                ModelUnavailable(f"no model instance is available ({error.message}); retry")
            )

    # -- shutting down ------------------------------------------------------------------

    async def stop_all(self) -> None:
        """Stop every instance (a running batch fails, a starting load stops)."""
        self.closing = True
        loop = asyncio.get_running_loop()
        stops = []
        for instance in list(self.instances):
            if instance.state != "idle":
                instance.kill()  # a running batch fails with 503, a starting load stops
            instance.state = "stopping"
            stops.append(loop.run_in_executor(instance.executor, instance.stop))
        if stops:
            await asyncio.wait(stops, timeout=STOP_TIMEOUT_S)

    async def close(self, others: set[asyncio.Task[None]]) -> None:
        """After ``stop_all``: wait for the pool's tasks and ``others``, then let go."""
        tasks = self._tasks | others
        if tasks:
            await asyncio.wait(list(tasks), timeout=STOP_TIMEOUT_S)
        for instance in self.instances:
            instance.executor.shutdown(wait=False)
        self.instances.clear()
        self._idle.clear()


__all__ = ["LOAD_BACKOFF", "STOP_TIMEOUT_S", "InstancePool"]
