"""Shared fixtures: one stand-in model per session, settings for a temporary data dir."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from radstream.model import ensure_standin
from radstream.settings import Settings


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
