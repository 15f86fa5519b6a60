"""The dashboard's web app (Starlette): the page, its static files, and one JSON endpoint.

Everything the page loads comes from this app (no CDN): the page, its script and style,
and uPlot, vendored under ``static/``. A Content-Security-Policy that allows only this
origin keeps it so. With a token, every request must carry it, as ``Authorization:
Bearer …`` or in the cookie that opening ``/?token=…`` once sets.
"""

from __future__ import annotations

import hmac
from collections.abc import Callable
from datetime import UTC, datetime
from importlib import resources
from pathlib import Path

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.middleware.base import BaseHTTPMiddleware, RequestResponseEndpoint
from starlette.requests import Request
from starlette.responses import (
    HTMLResponse,
    JSONResponse,
    PlainTextResponse,
    RedirectResponse,
    Response,
)
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from radstream.dashboard.engine import EngineWatch
from radstream.dashboard.figures import DEFAULT_RANGE, RANGES, QuerySource, collect
from radstream.errors import RadStreamError
from radstream.lake.duckdb_runner import LocalQueryRunner

COOKIE = "radstream_dashboard_token"
REFRESH_S = 5.0
"""How often the page asks for fresh figures, by default."""

CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; "
    "img-src 'self' data:; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
)


def page_html(refresh_s: float) -> str:
    """The page, with its refresh period filled in."""
    text = resources.files("radstream.dashboard").joinpath("static/index.html")
    return text.read_text(encoding="utf-8").replace("{{refresh_ms}}", str(int(refresh_s * 1000)))


class TokenAuth(BaseHTTPMiddleware):
    """Requires the token (Bearer header or cookie); ``/?token=…`` sets the cookie."""

    def __init__(self, app: Callable[..., object], token: str) -> None:
        super().__init__(app)  # type: ignore[arg-type]
        self._token = token.encode()

    def _matches(self, given: str | None) -> bool:
        return given is not None and hmac.compare_digest(given.encode(), self._token)

    async def dispatch(self, request: Request, call_next: RequestResponseEndpoint) -> Response:
        """Let a request with the token through; answer 401 to any other."""
        query_token = request.query_params.get("token")
        if request.url.path == "/" and self._matches(query_token):
            # Into a cookie, and off the address bar (and out of the history) at once.
            response = RedirectResponse("/", status_code=303)
            response.set_cookie(COOKIE, query_token or "", httponly=True, samesite="strict")
            return response
        header = request.headers.get("authorization", "")
        bearer = header[7:] if header.lower().startswith("bearer ") else None
        if self._matches(bearer) or self._matches(request.cookies.get(COOKIE)):
            return await call_next(request)
        return PlainTextResponse(
            "401: this dashboard needs its token: open /?token=… once, or send "
            "Authorization: Bearer …",
            status_code=401,
            headers={"WWW-Authenticate": "Bearer"},
        )


class SecurityHeaders(BaseHTTPMiddleware):
    """The page may load nothing from elsewhere, and nobody may frame it."""

    async def dispatch(self, request: Request, call_next: RequestResponseEndpoint) -> Response:
        """Add the headers to every response."""
        response = await call_next(request)
        response.headers["Content-Security-Policy"] = CSP
        response.headers["X-Content-Type-Options"] = "nosniff"
        response.headers["Referrer-Policy"] = "no-referrer"
        response.headers["Cache-Control"] = "no-store"
        return response


def local_source(lake_dir: Path) -> QuerySource:
    """The named queries on DuckDB over the Parquet lake in ``lake_dir``, a fresh runner at
    each refresh (it lists the lake's files as they are then)."""
    return lambda: LocalQueryRunner(lake_dir, threads=1)


def create_app(
    source: Path | QuerySource,
    *,
    engine: EngineWatch | None = None,
    parallel: int = 1,
    token: str | None = None,
    refresh_s: float = REFRESH_S,
    clock: Callable[[], datetime] = lambda: datetime.now(UTC),
) -> Starlette:
    """The dashboard over ``source``: a lake directory (locally), or what opens a runner of
    the named queries (a stack's Athena). ``engine`` reads the engine panel (None: no panel).
    ``parallel``: how many of a refresh's queries may run at once (only where the runner
    allows it: Athena does, the local DuckDB connection does not).
    """
    queries = local_source(source) if isinstance(source, Path) else source

    async def index(request: Request) -> Response:
        return HTMLResponse(page_html(refresh_s))

    def figures(request: Request) -> Response:
        # A plain function: Starlette runs it in its thread pool, off the event loop,
        # since the queries take a while.
        range_key = request.query_params.get("range", DEFAULT_RANGE)
        if range_key not in RANGES:
            return JSONResponse(
                {"error": f"range is one of {', '.join(RANGES)}", "code": "RANGE_INVALID"}, 400
            )
        variant = request.query_params.get("variant", "")
        try:
            panel = engine() if engine is not None else None
            data = collect(
                queries,
                range_key=range_key,
                variant=variant,
                now=clock(),
                engine=panel,
                parallel=parallel,
            )
        except RadStreamError as exc:
            return JSONResponse({"error": str(exc), "code": exc.code}, status_code=500)
        return JSONResponse(data)

    middleware = [Middleware(SecurityHeaders)]
    if token:
        middleware.append(Middleware(TokenAuth, token=token))
    static = StaticFiles(packages=[("radstream.dashboard", "static")])
    return Starlette(
        routes=[
            Route("/", index),
            Route("/api/dashboard", figures),
            Mount("/static", app=static, name="static"),
        ],
        middleware=middleware,
    )
