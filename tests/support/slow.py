"""What makes a test ``slow``, and a guard that catches a fast test starting a process.

A test is slow when it starts a process (a worker pool, a CLI run, a model server), a server
(anything that listens on a socket, uvicorn in a thread included) or the AWS emulator, or
when it alone takes seconds of CPU (see :data:`SLOW_TESTS`).
``make test-fast`` runs the others (``pytest -m "not slow"``).

Tests are marked in three ways: ``pytestmark = pytest.mark.slow`` in a module that is mostly
slow, ``@pytest.mark.slow`` on a test, or by ``conftest.py`` at collection: every test that
uses a fixture named in :data:`SLOW_FIXTURES` (directly or through other fixtures), and the
tests listed in :data:`SLOW_TESTS`.

:func:`forbid_processes` then holds the rule: while an unmarked test is set up and run,
starting a subprocess, a ``multiprocessing`` process or a listening socket fails it with a
message saying to mark it. Set ``RADSTREAM_TEST_ALLOW_PROCESSES=1`` to switch the guard off.
"""

from __future__ import annotations

import multiprocessing.process
import os
import socket
import subprocess
from collections.abc import Generator, Iterator
from contextlib import contextmanager
from typing import Any

import pytest

# Fixtures that start a process, a server or the emulator (or run code that does).
SLOW_FIXTURES = frozenset(
    {
        "emulator",  # tests/aws/conftest.py: ministack
        "lambda_package",  # tests/aws/conftest.py: pip downloads and builds the Lambda zips
        "demo_lake",  # tests/lake/conftest.py: a real demo run, with worker processes
        "kinesis",  # tests/aws/test_kinesis_sink.py: a ministack of its own
        "chromium",  # tests/bench/test_bench_report_html.py: headless Chromium
    }
)

# Tests in modules that are mostly fast, marked here rather than in the module (by node id,
# parameters left off). A renamed test drops out of this list, and the guard below then
# fails it with a message saying to mark it.
SLOW_TESTS = frozenset(
    {
        # A real `python -c pass` child, to have the pid of a process that has exited.
        "tests/unit/test_executor.py::test_dead_worker_process_releases_its_lease_at_once",
        # No process, but cfn-lint's whole rule set on 16 template variants, 1-3 s each:
        # half of the fast run's time, for a check the template tests mostly make anyway.
        "tests/aws/test_aws_template.py::test_cfn_lint_reports_no_errors",
    }
)

ALLOW_ENV = "RADSTREAM_TEST_ALLOW_PROCESSES"


class UnmarkedSlowTest(AssertionError):
    """A test that is not marked ``slow`` started a process or a server."""


def is_slow(item: pytest.Item) -> bool:
    """Whether ``item`` carries the ``slow`` marker (its own, its class's or its module's)."""
    return item.get_closest_marker("slow") is not None


def mark_slow_by_fixture(items: list[pytest.Item]) -> None:
    """Mark ``slow`` every test in :data:`SLOW_TESTS` or using one of :data:`SLOW_FIXTURES`.

    ``fixturenames`` is the test's whole fixture closure, so a fixture that uses a slow one
    (``store`` on ``emulator``, say) makes its tests slow too.
    """
    for item in items:
        names = set(getattr(item, "fixturenames", ()))
        listed = item.nodeid.split("[", 1)[0] in SLOW_TESTS
        if (listed or names & SLOW_FIXTURES) and not is_slow(item):
            item.add_marker(pytest.mark.slow)


def _refuse(nodeid: str, what: str) -> UnmarkedSlowTest:
    return UnmarkedSlowTest(
        f"{nodeid} {what} but is not marked slow: add @pytest.mark.slow (or module-level "
        "`pytestmark = pytest.mark.slow`), so `make test-fast` leaves it out "
        f"(see tests/support/slow.py; {ALLOW_ENV}=1 switches this check off)"
    )


@contextmanager
def forbid_processes(item: pytest.Item) -> Iterator[list[UnmarkedSlowTest]]:
    """While active, starting a process or listening on a socket raises :class:`UnmarkedSlowTest`.

    Patches ``subprocess.Popen``, ``multiprocessing``'s ``BaseProcess.start`` and
    ``socket.socket.listen``: every way the tests start a process or a server goes
    through one of them (asyncio and uvicorn listen through ``socket.socket``). Yields the
    list of refusals, so the caller can fail the test with the first one even where the
    code under test caught the exception.
    """
    seen: list[UnmarkedSlowTest] = []
    if is_slow(item) or os.environ.get(ALLOW_ENV) == "1":
        yield seen
        return
    nodeid = item.nodeid

    def refuse(what: str) -> UnmarkedSlowTest:
        seen.append(_refuse(nodeid, what))
        return seen[-1]

    def popen(self: subprocess.Popen[Any], args: Any, *rest: Any, **kwargs: Any) -> None:
        # Popen.__del__ reads this; without it, a refused Popen warns as it is collected.
        self._child_created = False  # type: ignore[attr-defined]
        raise refuse(f"started a subprocess ({args!r:.80})")

    def start(self: multiprocessing.process.BaseProcess) -> None:
        raise refuse(f"started a process ({self.name})")

    def listen(self: socket.socket, *args: Any) -> None:
        raise refuse("listened on a socket (started a server)")

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(subprocess.Popen, "__init__", popen)
        patch.setattr(multiprocessing.process.BaseProcess, "start", start)
        patch.setattr(socket.socket, "listen", listen)
        yield seen


def guarded(item: pytest.Item) -> Generator[None, None, None]:
    """The body of a ``wrapper=True`` hook that runs a test phase under :func:`forbid_processes`.

    Use as ``return (yield from guarded(item))``: the phase's result or exception passes
    through, and a refusal the code under test caught fails the test all the same.
    """
    with forbid_processes(item) as refused:
        try:
            return (yield)
        finally:
            if refused:
                raise refused[0]
