"""Connection hygiene of the model server: header deadline, idle eviction, accept errors.

uvicorn's h11 protocol times out a keep-alive connection between requests, but not a
connection that never finishes sending its request head: idle or trickling sockets would
pile up until the process runs out of file descriptors and every ``accept()`` fails, which
locks every client out. ``hardened_protocol`` adds

* a **header deadline**: a connection that has not sent a complete request head within
  ``header_timeout_s`` of connecting (or of sending the first byte of its next request)
  is closed;
* **idle eviction**: when a new connection brings the count over the cap, the connections
  waiting for a request (idle keep-alive or trickling headers) are closed, least recently
  active first, so real clients always get a slot. When every connection is busy with a
  request, uvicorn's ``limit_concurrency`` answers the new request 503.

``AcceptErrorLog`` is the event loop's exception handler: asyncio reports every failed
``accept()`` (EMFILE, ENFILE, ENOBUFS, ENOMEM) with a traceback, once a second while the
condition lasts; it logs the first of them, then one line per interval with the count.
``RepeatedWarningFilter`` does the same for uvicorn's per-request warnings.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from typing import Any

from uvicorn.protocols.http.h11_impl import H11Protocol

from radstream.logs import get_logger

logger = get_logger(__name__)

ACCEPT_ERROR_MESSAGE = "socket.accept() out of system resource"
"""How asyncio names an accept() that failed for lack of descriptors or memory."""

UVICORN_PER_REQUEST_WARNINGS = frozenset(
    {"Exceeded concurrency limit.", "Invalid HTTP request received."}
)
"""Warnings uvicorn logs once per refused request."""


class HardenedH11Protocol(H11Protocol):
    """uvicorn's h11 protocol with a header deadline and idle eviction (see the module)."""

    header_timeout_s: float = 10.0
    max_connections: int = 1000

    _header_timer: asyncio.TimerHandle | None = None
    last_active: float = 0.0
    """When the connection last started or finished a request (monotonic)."""

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        """Register the connection, arm its header deadline, make room if at the cap."""
        super().connection_made(transport)
        self.last_active = time.monotonic()
        self._arm_header_timer()
        if len(self.connections) > self.max_connections:
            self._evict_idle()

    def connection_lost(self, exc: Exception | None) -> None:
        """Forget the connection and its timer."""
        self._cancel_header_timer()
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        """Bytes of a new request on a kept-alive connection start its header deadline."""
        if self._header_timer is None and self.waiting_for_request:
            self._arm_header_timer()
        super().data_received(data)

    def handle_events(self) -> None:
        """Let uvicorn parse; once a request head is complete, its deadline is met."""
        super().handle_events()
        if not self.waiting_for_request:
            self._cancel_header_timer()
            self.last_active = time.monotonic()

    def on_response_complete(self) -> None:
        """The connection is idle again: uvicorn's keep-alive timeout takes over."""
        self.last_active = time.monotonic()
        super().on_response_complete()

    @property
    def waiting_for_request(self) -> bool:
        """Whether no request is in progress (idle, or its head is still arriving)."""
        cycle = self.cycle
        return cycle is None or cycle.response_complete

    def close(self) -> None:
        """Close the connection now (nothing in progress is lost: it is idle)."""
        self._cancel_header_timer()
        if not self.transport.is_closing():
            self.transport.close()

    def _arm_header_timer(self) -> None:
        self._cancel_header_timer()
        self._header_timer = self.loop.call_later(self.header_timeout_s, self._header_timeout)

    def _cancel_header_timer(self) -> None:
        if self._header_timer is not None:
            self._header_timer.cancel()
            self._header_timer = None

    def _header_timeout(self) -> None:
        self._header_timer = None
        if self.waiting_for_request:
            self.close()

    def _evict_idle(self) -> None:
        """Close idle connections, least recently active first, down to the cap."""
        idle = sorted(
            (
                other
                for other in self.connections
                if other is not self
                and isinstance(other, HardenedH11Protocol)
                and other.waiting_for_request
                and not other.transport.is_closing()
            ),
            key=lambda other: other.last_active,
        )
        excess = len(self.connections) - self.max_connections
        for other in idle[:excess]:
            # connection_lost removes it from the set later; closing is what frees the
            # slot for uvicorn's limit_concurrency check, which counts the set.
            other.close()
            self.connections.discard(other)


def hardened_protocol(*, header_timeout_s: float, max_connections: int) -> type[H11Protocol]:
    """The protocol class for uvicorn's ``http=``, with these limits."""
    return type(
        "RadStreamH11Protocol",
        (HardenedH11Protocol,),
        {"header_timeout_s": header_timeout_s, "max_connections": max_connections},
    )


class AcceptErrorLog:
    """Event-loop exception handler that logs failed accepts at most once per interval.

    Everything else goes to the loop's default handler unchanged.
    """

    def __init__(
        self, interval_s: float = 60.0, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.interval_s = interval_s
        self._clock = clock
        self._last: float | None = None
        self.suppressed = 0
        """Failed accepts not logged since the last line."""
        self.total = 0
        """Failed accepts seen."""

    def __call__(self, loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
        """Handle one report of the event loop."""
        if context.get("message") != ACCEPT_ERROR_MESSAGE:
            loop.default_exception_handler(context)
            return
        self.total += 1
        now = self._clock()
        if self._last is not None and now - self._last < self.interval_s:
            self.suppressed += 1
            return
        exc = context.get("exception")
        logger.error(
            "cannot accept connections (%s); %d more failed accepts since the last report; "
            "too many open connections or files: lower --max-connections or raise "
            "the descriptor limit (ulimit -n)",
            exc,
            self.suppressed,
        )
        self._last = now
        self.suppressed = 0


class RepeatedWarningFilter(logging.Filter):
    """Logging filter: each of ``messages`` passes at most once per interval.

    On ``uvicorn.error``, uvicorn warns once per refused request ("Exceeded concurrency
    limit.", "Invalid HTTP request received."); under a flood that is a log line per
    request. Other records pass unchanged.
    """

    def __init__(
        self,
        messages: frozenset[str] = UVICORN_PER_REQUEST_WARNINGS,
        interval_s: float = 60.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        super().__init__()
        self.messages = messages
        self.interval_s = interval_s
        self._clock = clock
        self._last: dict[str, float] = {}

    def filter(self, record: logging.LogRecord) -> bool:
        """Whether ``record`` is logged."""
        message = record.getMessage()
        if message not in self.messages:
            return True
        now = self._clock()
        last = self._last.get(message)
        if last is not None and now - last < self.interval_s:
            return False
        self._last[message] = now
        return True


def quiet_uvicorn_warnings() -> None:
    """Install one ``RepeatedWarningFilter`` on ``uvicorn.error`` (idempotent)."""
    target = logging.getLogger("uvicorn.error")
    if not any(isinstance(f, RepeatedWarningFilter) for f in target.filters):
        target.addFilter(RepeatedWarningFilter())


__all__ = [
    "ACCEPT_ERROR_MESSAGE",
    "UVICORN_PER_REQUEST_WARNINGS",
    "AcceptErrorLog",
    "HardenedH11Protocol",
    "RepeatedWarningFilter",
    "hardened_protocol",
    "quiet_uvicorn_warnings",
]
