"""HTTP pieces of the model server: bearer auth, body reading, error answers, statuses."""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import zlib
from collections.abc import Awaitable, Callable, Iterator

from starlette.requests import Request
from starlette.responses import Response
from starlette.types import Receive, Scope, Send

from radstream.errors import ModelUnavailable, RadStreamError, TransientError
from radstream.kserve import (
    JSON_CONTENT_TYPE,
    RETRY_AFTER,
    ProtocolError,
    encode_error,
)
from radstream.serving.metrics import FailureReason
from radstream.serving.scheduler import QueueFull

ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

OPEN_PATHS = frozenset({"/v2/health/live", "/v2/health/ready"})
"""Paths answered without a token: orchestrators probe them unauthenticated."""


class BodyTooLarge(Exception):
    """The request body is over the server's limit (before or after decompression)."""

    def __init__(self, limit: int) -> None:
        super().__init__(f"the request body is over {limit} bytes")
        self.limit = limit


class BodyTimeout(Exception):
    """The client did not send the whole body within the body deadline."""

    def __init__(self, deadline_s: float) -> None:
        super().__init__(f"the request body did not arrive within {deadline_s:g} s")
        self.deadline_s = deadline_s


class BodyBudget:
    """Bytes of request bodies the server holds at once (read, or inflated), bounded.

    Each request takes what it reads from the budget and gives it all back when it is
    done (``hold``). A request that would take the total over ``limit`` fails with
    ModelUnavailable (503 with Retry-After): many large uploads at once then cost at most
    ``limit`` bytes of memory, however many connections carry them. Event loop only.
    """

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.held = 0

    def take(self, n: int) -> None:
        """Take ``n`` bytes; ModelUnavailable when the budget has not that much left."""
        if self.held + n > self.limit:
            raise ModelUnavailable(
                f"the server is receiving too many request bodies at once (over {self.limit} "
                "bytes held); retry after a moment"
            )
        self.held += n

    def give(self, n: int) -> None:
        """Give back ``n`` bytes taken earlier."""
        self.held = max(0, self.held - n)

    @contextlib.contextmanager
    def hold(self) -> Iterator[BodyHold]:
        """A per-request account that gives back everything it took on exit."""
        account = BodyHold(self)
        try:
            yield account
        finally:
            self.give(account.taken)


class BodyHold:
    """What one request has taken from a ``BodyBudget``."""

    def __init__(self, budget: BodyBudget) -> None:
        self._budget = budget
        self.taken = 0

    def take(self, n: int) -> None:
        """Take ``n`` more bytes for this request (ModelUnavailable past the budget)."""
        self._budget.take(n)
        self.taken += n


def bearer_token(header: bytes) -> bytes | None:
    """The token of an ``Authorization: Bearer <token>`` header value; None otherwise.

    The scheme is case-insensitive (RFC 9110 section 11.1), so ``bearer`` works too.
    """
    scheme, _, token = header.strip().partition(b" ")
    if scheme.lower() != b"bearer":
        return None
    token = token.strip()
    return token or None


class BearerAuth:
    """ASGI middleware: every path except the health probes needs ``Bearer <token>``."""

    def __init__(self, app: ASGIApp, token: str) -> None:
        self._app = app
        self._expected = token.encode()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["path"] not in OPEN_PATHS:
            given: bytes | None = None
            for key, value in scope["headers"]:
                if key == b"authorization":
                    given = bearer_token(value)
                    break
            # compare_digest on every path, so a missing token takes as long as a wrong one.
            matches = hmac.compare_digest(given or b"", self._expected)
            if given is None or not matches:
                response = error_response("missing or wrong bearer token", 401)
                response.headers["WWW-Authenticate"] = 'Bearer realm="radstream"'
                await response(scope, receive, send)
                return
        await self._app(scope, receive, send)


def error_response(
    message: str, status: int, *, retry_after: bool = False, close: bool = False
) -> Response:
    """A KServe v2 error answer; with ``retry_after`` it asks the client to retry in 1 s.

    With ``close`` the connection is closed after it (the rest of an unread body would
    otherwise keep it busy).
    """
    headers: dict[str, str] = {}
    if retry_after:
        headers[RETRY_AFTER] = "1"
    if close:
        headers["Connection"] = "close"
    return Response(
        encode_error(message), status, headers=headers or None, media_type=JSON_CONTENT_TYPE
    )


def status_for(error: RadStreamError) -> tuple[int, FailureReason]:
    """HTTP status and failure reason (the metric label) of an error."""
    if isinstance(error, QueueFull):
        return 503, "REJECTED"
    if isinstance(error, ProtocolError):
        return 400, "BAD_REQUEST"
    if isinstance(error, TransientError):
        return 503, "UNAVAILABLE"
    return 500, "BACKEND"


def inflate(body: bytes, encoding: str, limit: int) -> bytes:
    """Decompress a gzip or deflate ``body``; BodyTooLarge as soon as it passes ``limit``.

    Blocking and CPU-bound: the server runs it on a thread. Inflating stops at ``limit``
    + 1 bytes, so a small bomb never costs more than ``limit`` bytes of memory. A corrupt
    or truncated stream is a ProtocolError that says so.
    """
    inflater = zlib.decompressobj(wbits=31 if encoding == "gzip" else 15)
    try:
        data = inflater.decompress(body, limit + 1)
    except zlib.error as exc:
        raise ProtocolError(
            f"the {encoding} body is corrupt and cannot be decompressed ({exc})"
        ) from None
    if len(data) > limit or inflater.unconsumed_tail:
        raise BodyTooLarge(limit)
    if not inflater.eof:
        raise ProtocolError(f"the {encoding} body is truncated or corrupt (the stream has no end)")
    return data


async def read_body(
    request: Request, *, limit: int, deadline_s: float, hold: BodyHold | None = None
) -> bytes:
    """The whole request body, decompressed (gzip or deflate).

    BodyTooLarge past ``limit`` bytes (sent or inflated); BodyTimeout when the body has
    not fully arrived ``deadline_s`` after the handler started reading it, so a stalled
    upload cannot hold its memory indefinitely. Decompression runs on a thread. Every
    byte read or inflated is taken from ``hold`` (the server-wide body budget).
    """
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise BodyTooLarge(limit)
    encoding = request.headers.get("content-encoding", "identity").strip().lower()
    if encoding not in ("", "identity", "gzip", "deflate"):
        raise ProtocolError(f"unsupported Content-Encoding {encoding!r}; use gzip or deflate")
    chunks: list[bytes] = []
    total = 0
    try:
        async with asyncio.timeout(deadline_s):
            async for chunk in request.stream():
                total += len(chunk)
                if total > limit:
                    raise BodyTooLarge(limit)
                if hold is not None:
                    hold.take(len(chunk))
                chunks.append(chunk)
    except TimeoutError:
        raise BodyTimeout(deadline_s) from None
    body = b"".join(chunks)
    del chunks
    if encoding in ("", "identity"):
        return body
    if hold is not None:
        # The inflated copy is held as well, up to the limit, while it is made.
        hold.take(limit)
    return await asyncio.to_thread(inflate, body, encoding, limit)


__all__ = [
    "OPEN_PATHS",
    "ASGIApp",
    "BearerAuth",
    "BodyBudget",
    "BodyHold",
    "BodyTimeout",
    "BodyTooLarge",
    "bearer_token",
    "error_response",
    "inflate",
    "read_body",
    "status_for",
]
