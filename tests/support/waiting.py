"""Waiting for something another process or thread does, without asserting how long it takes.

The timeout is a hang guard only: a test must never pass or fail on how fast a machine is,
so it is generous, and what the test then asserts is the state that was waited for.
"""

from __future__ import annotations

import socket
import time
from collections.abc import Callable

import pytest


def wait_until(
    predicate: Callable[[], bool],
    what: str,
    *,
    timeout_s: float = 60.0,
    interval_s: float = 0.02,
    on_poll: Callable[[], object] | None = None,
) -> None:
    """Poll ``predicate`` until it is true; fail the test (naming ``what``) after ``timeout_s``.

    ``on_poll`` runs before each check (e.g. a worker pool's ``supervise``), so the loop can
    keep the system under test moving while it waits.
    """
    deadline = time.monotonic() + timeout_s
    while True:
        if on_poll is not None:
            on_poll()
        if predicate():
            return
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout_s} s waiting for {what}")
        time.sleep(interval_s)


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])
