"""Helpers of the dashboard tests: the bench tests' Chromium kit, demo lakes, a live server."""

from __future__ import annotations

import importlib.util
import socket
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType

import uvicorn
from starlette.applications import Starlette

from support.waiting import wait_until

BENCH_HTML_TESTS = Path(__file__).parents[1] / "bench" / "test_bench_report_html.py"


def bench_html_tests() -> ModuleType:
    """The bench report's browser tests, for their Chromium finder, flags and log reader."""
    spec = importlib.util.spec_from_file_location("bench_html_chromium", BENCH_HTML_TESTS)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@dataclass(frozen=True)
class ChromiumKit:
    """A Chromium binary, the bench tests' flags, and their console-problem filter."""

    binary: str
    flags: tuple[str, ...]
    console_errors: Callable[[str], list[str]]


@dataclass(frozen=True)
class DemoLake:
    """A data directory a demo ran in, and its lake."""

    data_dir: Path
    lake_dir: Path


@contextmanager
def serving(app: Starlette) -> Iterator[str]:
    """``app`` on a real uvicorn on 127.0.0.1 (a free port), in a thread; yields its URL."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="off"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    try:
        wait_until(lambda: server.started, "the dashboard server to start")
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=30)
        sock.close()
