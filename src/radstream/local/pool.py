"""A pool of worker processes, one per core by default."""

from __future__ import annotations

import logging
import multiprocessing as mp
import os
import time
import uuid
from collections import deque
from collections.abc import Callable
from multiprocessing.connection import Connection
from multiprocessing.process import BaseProcess
from types import TracebackType

from radstream.local.executor import Executor
from radstream.local.reports import ReportHub
from radstream.local.worker import worker_main
from radstream.logs import JsonFormatter, LogFormat, get_logger
from radstream.settings import Settings

logger = get_logger(__name__)

RESTART_WINDOW_S = 60.0
"""The window of the restart rate: at most ``max_restarts`` replacements per minute."""


def parent_log_setup() -> tuple[str, LogFormat] | None:
    """The ``(level, format)`` :func:`radstream.logs.configure` gave this process, if any."""
    root = logging.getLogger("radstream")
    for handler in root.handlers:
        if getattr(handler, "_radstream", False):
            fmt: LogFormat = "json" if isinstance(handler.formatter, JsonFormatter) else "text"
            return logging.getLevelName(root.level), fmt
    return None


class WorkerPool:
    """Start N worker processes, replace any that die, stop them cleanly.

    A worker that dies (killed, out of memory, a crash in a decoder) is replaced, so one
    poisonous study cannot take the whole pool down: its execution is taken over, and after
    ``engine.max_takeovers`` deaths it fails with ``EXECUTION_ABANDONED``. Replacements are
    limited to a rate, ``max_restarts`` per minute, not a lifetime count: a worker that
    cannot even start (a broken model file) does not spin, and a pool that lost workers
    to a passing fault an hour ago still replaces the next one. A dead worker beyond the
    rate is replaced once the window allows; the pool never gives up while not stopped.
    """

    def __init__(
        self,
        settings: Settings,
        *,
        workers: int | None = None,
        until_idle: bool = False,
        max_restarts: int | None = None,
        clock: Callable[[], float] = time.monotonic,
        reports: ReportHub | None = None,
    ):
        """``reports``: a hub that reads each worker's metrics reports (one pipe per
        worker, replacements included); None sends none."""
        self._settings = settings
        self._settings_json = settings.model_dump_json()
        self._count = workers or settings.engine.workers
        self._until_idle = until_idle
        self._max_restarts = (
            max_restarts
            if max_restarts is not None
            else max(2 * (settings.engine.max_takeovers + 1), 2 * self._count)
        )
        self._clock = clock
        self._reports = reports
        self._recent: deque[float] = deque()
        # spawn, not fork: ONNX Runtime and SQLite handles must not be inherited.
        self._ctx = mp.get_context("spawn")
        self._stop = self._ctx.Event()
        self._run = uuid.uuid4().hex[:6]
        self._spawned = 0
        self._throttled = False
        self.restarts = 0
        self.processes: list[BaseProcess] = []
        self.worker_ids: list[str] = []

    def _spawn(self) -> tuple[BaseProcess, str]:
        worker_id = f"w{os.getpid()}-{self._run}-{self._spawned}"
        self._spawned += 1
        reader: Connection | None = None
        writer: Connection | None = None
        if self._reports is not None:
            reader, writer = self._ctx.Pipe(duplex=False)
        proc = self._ctx.Process(
            target=worker_main,
            args=(
                self._settings_json,
                worker_id,
                self._stop,
                self._until_idle,
                os.getpid(),
                parent_log_setup(),
                writer,
            ),
            name=f"radstream-{worker_id}",
            daemon=False,
        )
        proc.start()
        if self._reports is not None and reader is not None and writer is not None:
            # The worker holds its own copy now; closing ours lets its exit end the pipe.
            writer.close()
            self._reports.attach(reader)
        return proc, worker_id

    def start(self) -> WorkerPool:
        """Start the workers and return self."""
        for _ in range(self._count):
            proc, worker_id = self._spawn()
            self.processes.append(proc)
            self.worker_ids.append(worker_id)
        return self

    def supervise(self) -> int:
        """Replace workers that died abnormally, within the restart rate; returns how many
        were replaced now."""
        if self._stop.is_set():
            return 0
        now = self._clock()
        while self._recent and now - self._recent[0] >= RESTART_WINDOW_S:
            self._recent.popleft()
        replaced = 0
        for slot, proc in enumerate(self.processes):
            if proc.exitcode in (None, 0):
                continue
            if len(self._recent) >= self._max_restarts:
                if not self._throttled:
                    logger.error(
                        "workers keep dying (%d in %.0f s); replacing the next one when the "
                        "rate allows",
                        len(self._recent),
                        RESTART_WINDOW_S,
                    )
                self._throttled = True
                break
            self.processes[slot], self.worker_ids[slot] = self._spawn()
            self._recent.append(now)
            self.restarts += 1
            replaced += 1
        if replaced:
            self._throttled = False
        return replaced

    def _awaiting_replacement(self) -> bool:
        # A dead worker the rate did not let us replace yet: keep waiting for the window.
        return not self._stop.is_set() and any(p.exitcode not in (None, 0) for p in self.processes)

    def wait_ready(self, executor: Executor, timeout: float = 120.0) -> None:
        """Block until every worker has loaded its model and registered."""
        deadline = time.monotonic() + timeout
        while executor.registered_workers(self.worker_ids) < len(self.worker_ids):
            dead = [p for p in self.processes if p.exitcode is not None]
            if dead:
                raise RuntimeError(
                    f"worker {dead[0].name} exited with code {dead[0].exitcode} while starting"
                )
            if time.monotonic() > deadline:
                raise TimeoutError(f"workers not ready after {timeout:.0f}s")
            time.sleep(0.05)

    def wait(self, timeout: float | None = None) -> bool:
        """Wait for every worker to exit, replacing dead ones meanwhile; True if all did."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            # Every turn, not only once all are dead: while one worker lives, a dead peer
            # must still be replaced (``serve`` relies on this loop alone).
            self.supervise()
            if not any(p.is_alive() for p in self.processes) and not self._awaiting_replacement():
                return True
            if deadline is not None and time.monotonic() >= deadline:
                return False
            for proc in self.processes:
                proc.join(0.1)
            if not any(p.is_alive() for p in self.processes):
                time.sleep(0.1)  # every slot waits for the rate: do not spin

    def stop(self, timeout: float = 30.0) -> None:
        """Ask workers to finish their current execution and exit; kill stragglers."""
        self._stop.set()
        if not self.wait(timeout):
            for proc in self.processes:
                if proc.is_alive():
                    proc.kill()
            self.wait(5.0)

    @property
    def exit_codes(self) -> list[int | None]:
        """Exit codes of the worker processes (None while running)."""
        return [p.exitcode for p in self.processes]

    def __enter__(self) -> WorkerPool:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
