"""Model instances, seen from the server: one worker process each, driven over a Pipe.

Each ``Instance`` has its own one-thread executor in the server process; its blocking
methods (``start``, ``infer``, ``stop``) run there, so the event loop never waits on a
worker. The worker side is ``radstream.serving.worker``.
"""

from __future__ import annotations

import contextlib
import multiprocessing
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from multiprocessing.connection import Connection
from multiprocessing.process import BaseProcess
from typing import Literal

import numpy as np
import numpy.typing as npt

from radstream.errors import ModelUnavailable, RadStreamError, all_error_classes
from radstream.serving.config import ServeConfig
from radstream.serving.worker import ErrorReply, WorkerReply, worker_main

InstanceState = Literal["starting", "idle", "busy", "stopping", "dead"]

_ERRORS_BY_CODE: dict[str, type[RadStreamError]] = {}


def error_from_reply(reply: ErrorReply) -> RadStreamError:
    """Rebuild the typed error a worker reported as ``("error", code, message, retryable)``."""
    if not _ERRORS_BY_CODE:
        _ERRORS_BY_CODE.update({cls.code: cls for cls in all_error_classes()})
    _, code, message, retryable = reply
    cls = _ERRORS_BY_CODE.get(str(code))
    if cls is None:
        cls = ModelUnavailable if retryable else RadStreamError
    return cls(str(message))


class InstanceDied(Exception):
    """The worker process of an instance exited or stopped answering."""


class Instance:
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
            args=(
                child,
                str(self._config.model_path),
                self._config.intra_op_threads,
                self._config.precision,
                self._config.runtime,
                self._config.allow_unverified,
            ),
            name=f"radstream-instance-{self.index}",
            daemon=True,
        )
        with self._lock:
            if self._killed:
                parent.close()
                child.close()
                raise InstanceDied("stopped before it started")
            process.start()
            self._process, self._conn = process, parent
            self.pid = process.pid
        child.close()  # the worker holds the only other end: its death gives us EOF
        reply = self._receive(timeout_s)
        if reply[0] == "error":
            self.kill()
            raise error_from_reply(reply)
        if reply[0] != "ready":
            self.kill()
            raise InstanceDied(f"worker answered {reply[0]!r} instead of 'ready'")

    def _receive(self, timeout_s: float | None) -> WorkerReply:
        process, conn = self._process, self._conn
        if process is None or conn is None:
            raise InstanceDied("not started")
        deadline = None if timeout_s is None else time.monotonic() + timeout_s
        try:
            while not conn.poll(0.2):
                if not process.is_alive():
                    raise InstanceDied(f"worker exited with code {process.exitcode}")
                if deadline is not None and time.monotonic() > deadline:
                    self.kill()
                    raise InstanceDied(f"worker did not answer within {timeout_s:g} s")
            reply: WorkerReply = conn.recv()
        except (EOFError, OSError) as exc:
            raise InstanceDied(f"worker pipe closed ({type(exc).__name__})") from None
        return reply

    def infer(self, batch: npt.NDArray[np.float32]) -> npt.NDArray[np.float32]:
        """Run one batch on the worker (blocking); raises InstanceDied or the worker's error."""
        conn = self._conn
        if conn is None:
            raise InstanceDied("not started")
        try:
            conn.send(batch)
        except (OSError, ValueError) as exc:
            raise InstanceDied(f"cannot send to worker ({type(exc).__name__})") from None
        reply = self._receive(None)
        if reply[0] == "ok":
            return reply[1]
        if reply[0] == "error":
            raise error_from_reply(reply)
        raise InstanceDied(f"worker answered {reply[0]!r} to a batch")

    def alive(self) -> bool:
        """Whether the worker process is running."""
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


__all__ = ["Instance", "InstanceDied", "InstanceState", "error_from_reply"]
