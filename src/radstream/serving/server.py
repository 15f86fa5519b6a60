"""Running the KServe v2 model server: ``serve`` (blocking) and ``running_server`` (a thread).

The server is built from parts, one module per job: ``config`` (``ServeConfig``),
``app`` (the Starlette routes, ``ServingApp``), ``scheduler`` (the bounded queue and the
dynamic batcher), ``pool`` (lending, replacing and autoscaling instances), ``instances``
(the worker processes, each running ``worker``), ``metrics`` (Prometheus) and ``http``
(auth, bodies, error answers). The wire format is ``radstream.kserve``'s.

One uvicorn event loop runs the app; requests go into the scheduler's bounded queue and
come back as logits from a worker process, so the event loop never blocks on inference.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import signal
import socket
import threading
import time
from collections.abc import Callable, Iterator
from types import FrameType

import uvicorn

from radstream.errors import ConfigInvalid, ModelUnavailable, RadStreamError
from radstream.serving.app import ServingApp
from radstream.serving.config import ACCEPT_BACKLOG, ServeConfig
from radstream.serving.connections import (
    AcceptErrorLog,
    hardened_protocol,
    quiet_uvicorn_warnings,
)
from radstream.serving.scheduler import QueueFull

MAX_REQUEST_HEAD_BYTES = 16 * 1024
"""h11's incomplete-event limit: a request head still incomplete after this many bytes
is refused (400)."""

_Handler = Callable[[int, FrameType | None], object] | int | signal.Handlers | None


def bind_socket(host: str, port: int) -> socket.socket:
    """A listening TCP socket on (host, port); port 0 picks a free one (ConfigInvalid if not)."""
    try:
        family, kind, proto, _, address = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0]
        sock = socket.socket(family, kind, proto)
    except OSError as exc:
        raise ConfigInvalid(f"serve: cannot resolve host {host!r} ({exc})") from exc
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(address)
        sock.listen(ACCEPT_BACKLOG)
    except OSError as exc:
        sock.close()
        raise ConfigInvalid(
            f"serve: cannot listen on {host}:{port} ({exc.strerror or exc}); is another "
            "server running there? Pick another --port."
        ) from exc
    sock.set_inheritable(True)
    return sock


def base_url(sock: socket.socket) -> str:
    """``http://host:port`` of a bound socket (IPv6 hosts in brackets)."""
    host, port = sock.getsockname()[:2]
    shown = f"[{host}]" if ":" in host else host
    return f"http://{shown}:{port}"


class HardenedServer(uvicorn.Server):
    """uvicorn's server that logs failed accepts, and uvicorn's per-request warnings,
    once per interval."""

    accept_errors: AcceptErrorLog

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        """Install the accept-error handler on the running loop, then start serving."""
        self.accept_errors = AcceptErrorLog()
        asyncio.get_running_loop().set_exception_handler(self.accept_errors)
        quiet_uvicorn_warnings()
        await super().startup(sockets)


def uvicorn_server(app: ServingApp) -> uvicorn.Server:
    """A quiet uvicorn server for ``app`` with the connection limits of its config.

    No access log, lifespan on, 10 s to drain. Connections: ``keep_alive_s`` idle between
    requests, ``header_timeout_s`` to send a request head (400 when still incomplete after
    ``MAX_REQUEST_HEAD_BYTES``),
    ``connection_limit`` open at once (idle ones are evicted first; when every one is
    busy, 503). The body deadline is the app's (``body_timeout_s``, 408).
    """
    serve_config = app.config
    limit = serve_config.connection_limit
    config = uvicorn.Config(
        app,
        log_level="warning",
        access_log=False,
        lifespan="on",
        interface="asgi3",
        loop="asyncio",
        http=hardened_protocol(
            header_timeout_s=serve_config.header_timeout_s, max_connections=limit
        ),
        # uvicorn answers 503 when the connections reach this: the cap plus the one asking.
        limit_concurrency=limit + 1,
        backlog=ACCEPT_BACKLOG,
        timeout_keep_alive=max(1, math.ceil(serve_config.keep_alive_s)),
        h11_max_incomplete_event_size=MAX_REQUEST_HEAD_BYTES,
        timeout_graceful_shutdown=10,
        server_header=False,
    )
    return HardenedServer(config)


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
    sock = bind_socket(config.host, config.port)
    server = uvicorn_server(app)

    def stop(_error: RadStreamError) -> None:
        server.should_exit = True

    app.on_fatal = stop
    # uvicorn handles SIGINT/SIGTERM itself, then re-raises the signal to the handler it
    # found; a no-op handler here makes that a normal return instead of an interrupt.
    previous: dict[signal.Signals, _Handler] = {}
    if threading.current_thread() is threading.main_thread():
        for sig in (signal.SIGINT, signal.SIGTERM):
            previous[sig] = signal.signal(sig, lambda _signum, _frame: None)
    try:
        if announce is not None:
            announce(base_url(sock))
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
    sock = bind_socket(config.host, config.port)
    server = uvicorn_server(app)
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
        yield base_url(sock)
    finally:
        server.should_exit = True
        thread.join(timeout=60)
        sock.close()


__all__ = [
    "MAX_REQUEST_HEAD_BYTES",
    "HardenedServer",
    "QueueFull",
    "ServeConfig",
    "ServingApp",
    "base_url",
    "bind_socket",
    "running_server",
    "serve",
    "uvicorn_server",
]
