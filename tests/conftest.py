"""Shared fixtures: one stand-in model per session, settings for a temporary data dir.

Also the ``slow`` rule (see ``tests/support/slow.py``): tests that use a process-starting
fixture are marked ``slow`` at collection, and a test that is not marked ``slow`` fails if it
starts a process or a server, so ``make test-fast`` (``pytest -m "not slow"``) stays fast.
Helpers shared by the test modules live in ``tests/support/`` (clocks, waits, ports, tiny
models, fake model clients and sinks, demo lakes, the emulator).
"""

from __future__ import annotations

from collections.abc import Callable, Generator
from pathlib import Path
from typing import Any

import pytest

from radstream.model import ensure_standin
from radstream.settings import Settings
from support.slow import guarded, mark_slow_by_fixture


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Mark ``slow`` every test that uses a fixture starting a process, server or emulator."""
    mark_slow_by_fixture(items)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_setup(item: pytest.Item) -> Generator[None, None, None]:
    """Fixture setup of a test not marked ``slow`` may not start a process or a server."""
    return (yield from guarded(item))


@pytest.hookimpl(wrapper=True)
def pytest_runtest_call(item: pytest.Item) -> Generator[None, None, None]:
    """A test not marked ``slow`` may not start a process or a server."""
    return (yield from guarded(item))


@pytest.fixture(scope="session")
def standin_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The stand-in DenseNet121, built once for the whole test session."""
    return ensure_standin(tmp_path_factory.mktemp("models"))


@pytest.fixture
def make_settings(tmp_path: Path, standin_model: Path) -> Callable[..., Settings]:
    """Settings for a fresh data dir, tuned so that waits and leases are short."""

    def make(telemetry: dict[str, Any] | None = None, **engine: Any) -> Settings:
        return Settings(
            data_dir=tmp_path / "data",
            model={"path": standin_model},
            engine={
                "workers": 2,
                "lease_s": 3.0,
                "image_wait_s": 1.0,
                "retry_base_s": 0.05,
                "retry_max_s": 0.3,
                **engine,
            },
            telemetry={"flush_s": 0.2, **(telemetry or {})},
        )

    return make
