"""Headless Chromium driven over the DevTools protocol, through a pipe (no port, no library).

``--dump-dom`` (what the bench report tests use) loads a page once and exits; the dashboard
refreshes itself, and a test must read the page again after the lake changed. So here the
browser stays up: ``--remote-debugging-pipe`` reads commands on fd 3 and writes replies and
events on fd 4, each a JSON text ending in a NUL byte. The browser's own flags and its log
(for :func:`console_errors`) are the bench tests', reused.
"""

from __future__ import annotations

import contextlib
import json
import os
import select
import subprocess
import tempfile
import time
from pathlib import Path
from types import TracebackType
from typing import Any

import pytest

from support.waiting import wait_until


class Browser:
    """One headless Chromium with one page; collects the page's console problems."""

    def __init__(self, chromium: str, flags: tuple[str, ...]) -> None:
        self._profile = tempfile.TemporaryDirectory(prefix="radstream-dashboard-chromium-")
        to_browser_r, self._to_browser = os.pipe()
        self._from_browser, from_browser_w = os.pipe()
        self._log = Path(self._profile.name) / "chromium.log"

        def plumb() -> None:  # in the child: the protocol wants exactly fds 3 and 4
            os.dup2(to_browser_r, 3)
            os.dup2(from_browser_w, 4)

        with self._log.open("w") as log:
            self._proc = subprocess.Popen(
                [
                    chromium,
                    *flags,
                    "--remote-debugging-pipe",
                    "--window-size=1400,1800",
                    f"--user-data-dir={self._profile.name}/profile",
                    "about:blank",
                ],
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=log,
                preexec_fn=plumb,  # dup2 only, between fork and exec
                close_fds=False,
            )
        os.close(to_browser_r)
        os.close(from_browser_w)
        self._buffer = b""
        self._next_id = 0
        self.events: list[dict[str, Any]] = []
        target = self.call("Target.createTarget", url="about:blank")["targetId"]
        self._session = self.call("Target.attachToTarget", targetId=target, flatten=True)[
            "sessionId"
        ]
        for domain in ("Runtime", "Log", "Page"):
            self.call(f"{domain}.enable", session=True)

    # ------------------------------------------------------------------ protocol

    def _read_message(self, timeout_s: float) -> dict[str, Any]:
        deadline = time.monotonic() + timeout_s
        while b"\0" not in self._buffer:
            left = deadline - time.monotonic()
            ready, _, _ = select.select([self._from_browser], [], [], max(0.0, left))
            if not ready:
                pytest.fail(f"chromium sent nothing for {timeout_s} s; log:\n{self.log()[-2000:]}")
            chunk = os.read(self._from_browser, 1 << 16)
            if not chunk:
                pytest.fail(f"chromium closed its pipe; log:\n{self.log()[-2000:]}")
            self._buffer += chunk
        raw, self._buffer = self._buffer.split(b"\0", 1)
        message: dict[str, Any] = json.loads(raw)
        return message

    def call(self, method: str, *, session: bool = False, **params: Any) -> dict[str, Any]:
        """Send one command and wait for its reply (keeping the events that come first)."""
        self._next_id += 1
        message: dict[str, Any] = {"id": self._next_id, "method": method, "params": params}
        if session:
            message["sessionId"] = self._session
        os.write(self._to_browser, json.dumps(message).encode() + b"\0")
        while True:
            reply = self._read_message(timeout_s=60)
            if reply.get("id") == self._next_id:
                if "error" in reply:
                    pytest.fail(f"{method} failed: {reply['error']}")
                result: dict[str, Any] = reply.get("result", {})
                return result
            self.events.append(reply)

    def evaluate(self, expression: str) -> Any:
        """The value of a JavaScript expression in the page (JSON-able)."""
        result = self.call(
            "Runtime.evaluate", session=True, expression=expression, returnByValue=True
        )
        if "exceptionDetails" in result:
            pytest.fail(f"{expression!r} threw: {result['exceptionDetails']}")
        return result["result"].get("value")

    # ------------------------------------------------------------------ page

    def open(self, url: str) -> None:
        """Navigate the page to ``url``."""
        self.call("Page.navigate", session=True, url=url)

    def wait_for(self, expression: str, what: str, timeout_s: float = 60.0) -> None:
        """Poll until a JavaScript expression is true in the page."""
        wait_until(
            lambda: bool(self.evaluate(expression)), what, timeout_s=timeout_s, interval_s=0.1
        )

    def wait_for_problems(self, count: int, timeout_s: float = 30.0) -> None:
        """Wait until at least ``count`` problems were reported (events come when they come)."""

        def enough() -> bool:
            self.evaluate("0")  # a round trip: collects the events sent before its reply
            return len(self.problems()) >= count

        wait_until(enough, f"{count} console problems", timeout_s=timeout_s, interval_s=0.1)

    def problems(self) -> list[str]:
        """Console messages, uncaught exceptions and log entries (CSP, failed loads) so far."""
        found: list[str] = []
        for event in self.events:
            method, params = event.get("method"), event.get("params", {})
            if method == "Runtime.consoleAPICalled":
                found.append(f"console.{params.get('type')}: {params.get('args')}")
            elif method == "Runtime.exceptionThrown":
                found.append(f"exception: {params.get('exceptionDetails')}")
            elif method == "Log.entryAdded":
                entry = params.get("entry", {})
                found.append(f"log {entry.get('level')}: {entry.get('text')} {entry.get('url')}")
        return found

    def log(self) -> str:
        """Chromium's stderr log so far."""
        return self._log.read_text(errors="replace") if self._log.exists() else ""

    # ------------------------------------------------------------------ lifetime

    def close(self) -> None:
        """Stop the browser and remove its profile."""
        # The browser may close its pipe before it answers: closing it is all that counts.
        with contextlib.suppress(BaseException):
            self.call("Browser.close")
        try:
            self._proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self._proc.kill()
            self._proc.wait()
        os.close(self._to_browser)
        os.close(self._from_browser)
        self._profile.cleanup()

    def __enter__(self) -> Browser:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()
