"""HTTP pieces of the model server: bearer auth, body reading, error answers, statuses."""

from __future__ import annotations

import hmac
import zlib
from collections.abc import Awaitable, Callable

from starlette.requests import Request
from starlette.responses import Response
from starlette.types import Receive, Scope, Send

from radstream.errors import RadStreamError, TransientError
from radstream.kserve import (
    JSON_CONTENT_TYPE,
    MAX_BODY_BYTES,
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
    """The request body is over ``MAX_BODY_BYTES`` (before or after decompression)."""


class BearerAuth:
    """ASGI middleware: every path except the health probes needs ``Bearer <token>``."""

    def __init__(self, app: ASGIApp, token: str) -> None:
        self._app = app
        self._expected = f"Bearer {token}".encode()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["path"] not in OPEN_PATHS:
            given = b""
            for key, value in scope["headers"]:
                if key == b"authorization":
                    given = value
                    break
            if not hmac.compare_digest(given, self._expected):
                response = error_response("missing or wrong bearer token", 401)
                response.headers["WWW-Authenticate"] = 'Bearer realm="radstream"'
                await response(scope, receive, send)
                return
        await self._app(scope, receive, send)


def error_response(message: str, status: int, *, retry_after: bool = False) -> Response:
    """A KServe v2 error answer; with ``retry_after`` it asks the client to retry in 1 s."""
    headers = {RETRY_AFTER: "1"} if retry_after else None
    return Response(encode_error(message), status, headers=headers, media_type=JSON_CONTENT_TYPE)


def status_for(error: RadStreamError) -> tuple[int, FailureReason]:
    """HTTP status and failure reason (the metric label) of an error."""
    if isinstance(error, QueueFull):
        return 503, "REJECTED"
    if isinstance(error, ProtocolError):
        return 400, "BAD_REQUEST"
    if isinstance(error, TransientError):
        return 503, "UNAVAILABLE"
    return 500, "BACKEND"


async def read_body(request: Request) -> bytes:
    """The whole request body, decompressed (gzip or deflate); BodyTooLarge past the limit."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > MAX_BODY_BYTES:
        raise BodyTooLarge
    chunks: list[bytes] = []
    total = 0
    async for chunk in request.stream():
        total += len(chunk)
        if total > MAX_BODY_BYTES:
            raise BodyTooLarge
        chunks.append(chunk)
    body = b"".join(chunks)
    encoding = request.headers.get("content-encoding", "identity").strip().lower()
    if encoding in ("", "identity"):
        return body
    if encoding not in ("gzip", "deflate"):
        raise ProtocolError(f"unsupported Content-Encoding {encoding!r}; use gzip or deflate")
    inflater = zlib.decompressobj(wbits=31 if encoding == "gzip" else 15)
    try:
        data = inflater.decompress(body, MAX_BODY_BYTES + 1)
    except zlib.error as exc:
        raise ProtocolError(f"the {encoding} body cannot be decompressed ({exc})") from None
    if len(data) > MAX_BODY_BYTES or inflater.unconsumed_tail:
        raise BodyTooLarge
    return data


__all__ = [
    "OPEN_PATHS",
    "ASGIApp",
    "BearerAuth",
    "BodyTooLarge",
    "error_response",
    "read_body",
    "status_for",
]
