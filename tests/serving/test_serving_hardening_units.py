"""Pieces of the server's hardening that need no server: token sources, accept-error log,
bearer parsing, bounded inflation."""

from __future__ import annotations

import asyncio
import gzip
import logging
import zlib
from pathlib import Path
from typing import Any

import pytest
import typer

from radstream.cli.model import LEGACY_TOKEN_ENV, TOKEN_ENV, serve_token
from radstream.errors import ModelUnavailable
from radstream.kserve import ProtocolError
from radstream.serving.config import body_limit
from radstream.serving.connections import (
    ACCEPT_ERROR_MESSAGE,
    AcceptErrorLog,
    RepeatedWarningFilter,
)
from radstream.serving.http import BodyBudget, BodyTooLarge, bearer_token, inflate


def test_serve_token_comes_from_a_file_the_option_or_the_environment(tmp_path: Path) -> None:
    secret = tmp_path / "token"
    secret.write_text("s3cret\n")
    assert serve_token(None, secret, {}) == "s3cret"
    assert serve_token("cli", None, {TOKEN_ENV: "env"}) == "cli"
    assert serve_token(None, None, {TOKEN_ENV: " env "}) == "env"
    assert serve_token(None, None, {LEGACY_TOKEN_ENV: "old"}) == "old"
    assert serve_token(None, None, {TOKEN_ENV: "new", LEGACY_TOKEN_ENV: "old"}) == "new"
    assert serve_token(None, None, {}) is None
    with pytest.raises(typer.BadParameter, match="not both"):
        serve_token("cli", secret, {})
    empty = tmp_path / "empty"
    empty.write_text("\n")
    with pytest.raises(typer.BadParameter, match="empty"):
        serve_token(None, empty, {})
    with pytest.raises(typer.BadParameter, match="cannot read"):
        serve_token(None, tmp_path / "missing", {})


def test_bearer_scheme_is_case_insensitive() -> None:
    assert bearer_token(b"Bearer abc") == b"abc"
    assert bearer_token(b"bearer abc") == b"abc"
    assert bearer_token(b"BeArEr   abc ") == b"abc"
    assert bearer_token(b"Basic abc") is None
    assert bearer_token(b"Bearer") is None
    assert bearer_token(b"abc") is None


def test_accept_errors_are_logged_once_per_interval(caplog: pytest.LogCaptureFixture) -> None:
    now = [0.0]
    handler = AcceptErrorLog(interval_s=60.0, clock=lambda: now[0])
    loop = asyncio.new_event_loop()
    other: list[dict[str, Any]] = []
    loop.default_exception_handler = other.append  # type: ignore[method-assign]
    context = {"message": ACCEPT_ERROR_MESSAGE, "exception": OSError(24, "Too many open files")}
    try:
        with caplog.at_level(logging.ERROR, logger="radstream.serving.connections"):
            for _ in range(100):  # asyncio retries once a second: 100 s of a shortage
                handler(loop, context)
                now[0] += 1.0
            handler(loop, {"message": "something else"})
    finally:
        loop.close()
    lines = [r for r in caplog.records if "cannot accept" in r.getMessage()]
    assert len(lines) == 2  # at 0 s and at 60 s
    assert "59 more failed accepts" in lines[1].getMessage()
    assert all(r.exc_info is None for r in lines)
    assert handler.total == 100
    assert other == [{"message": "something else"}]


def test_uvicorn_per_request_warnings_pass_once_per_interval() -> None:
    now = [0.0]
    quiet = RepeatedWarningFilter(interval_s=60.0, clock=lambda: now[0])

    def record(message: str) -> logging.LogRecord:
        return logging.LogRecord("uvicorn.error", logging.WARNING, "", 0, message, None, None)

    passed = []
    for _ in range(120):
        passed.append(quiet.filter(record("Exceeded concurrency limit.")))
        now[0] += 1.0
    assert passed.count(True) == 2
    assert quiet.filter(record("Invalid HTTP request received."))
    assert all(quiet.filter(record("Started server process")) for _ in range(3))


def test_inflate_stops_at_the_limit_and_names_corruption() -> None:
    data = b"x" * 10_000
    assert inflate(gzip.compress(data), "gzip", 10_000) == data
    assert inflate(zlib.compress(data), "deflate", 10_000) == data
    with pytest.raises(BodyTooLarge):
        inflate(gzip.compress(b"0" * (50 << 20)), "gzip", 1 << 20)
    with pytest.raises(ProtocolError, match="corrupt"):
        inflate(b"\x1f\x8b" + b"\x00" * 30, "gzip", 1 << 20)
    with pytest.raises(ProtocolError, match="truncated"):
        inflate(gzip.compress(data)[:-10], "gzip", 1 << 20)


def test_the_body_limit_fits_a_full_json_batch() -> None:
    per_image = 224 * 224
    limit = body_limit(8, per_image)
    assert 8 * per_image * 21 < limit < 32 << 20
    assert body_limit(10_000, per_image) == 256 * 1024 * 1024


def test_the_body_budget_bounds_bodies_held_at_once() -> None:
    budget = BodyBudget(100)
    with budget.hold() as first:
        first.take(60)
        with budget.hold() as second:
            second.take(40)
            assert budget.held == 100
            with pytest.raises(ModelUnavailable, match="too many request bodies"):
                second.take(1)
        assert budget.held == 60
    assert budget.held == 0
    with pytest.raises(ModelUnavailable), budget.hold() as third:
        third.take(101)
    assert budget.held == 0
