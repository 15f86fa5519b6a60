"""A pool of worker processes, one per core by default."""

from __future__ import annotations

import multiprocessing as mp
import os
import time
import uuid
from multiprocessing.process import BaseProcess
from types import TracebackType

from radstream.local.executor import Executor
from radstream.local.worker import worker_main
from radstream.settings import Settings


class WorkerPool:
    """Start N worker processes; stop them cleanly (each flushes its telemetry)."""

    def __init__(self, settings: Settings, *, workers: int | None = None, until_idle: bool = False):
        self._settings = settings
        self._count = workers or settings.engine.workers
        self._until_idle = until_idle
        # spawn, not fork: ONNX Runtime and SQLite handles must not be inherited.
        self._ctx = mp.get_context("spawn")
        self._stop = self._ctx.Event()
        self.processes: list[BaseProcess] = []
        self.worker_ids: list[str] = []

    def start(self) -> WorkerPool:
        """Start the workers and return self."""
        settings_json = self._settings.model_dump_json()
        run = uuid.uuid4().hex[:6]
        for index in range(self._count):
            worker_id = f"w{os.getpid()}-{run}-{index}"
            proc = self._ctx.Process(
                target=worker_main,
                args=(settings_json, worker_id, self._stop, self._until_idle),
                name=f"radstream-{worker_id}",
                daemon=False,
            )
            proc.start()
            self.processes.append(proc)
            self.worker_ids.append(worker_id)
        return self

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
        """Wait for every worker to exit; True if all did."""
        for proc in self.processes:
            proc.join(timeout)
        return all(not p.is_alive() for p in self.processes)

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
