"""Fixtures of the dashboard tests: a demo lake with two A/B variants, and the Chromium of
the bench report tests."""

from __future__ import annotations

from pathlib import Path

import pytest
from dashboard_support import ChromiumKit, DemoLake, bench_html_tests

from support.demo import run_demo_lake


@pytest.fixture(scope="session")
def chromium_kit() -> ChromiumKit:
    bench = bench_html_tests()
    found = bench.find_chromium()
    if found is None:
        pytest.skip(
            "Chromium not found (no `chromium` on PATH, no /usr/bin/chromium); "
            "run scripts/install-chromium.sh or set CHROMIUM=/path/to/chromium"
        )
    return ChromiumKit(found, tuple(bench.CHROMIUM_FLAGS), bench.console_errors)


@pytest.fixture(scope="session")
def ab_lake(tmp_path_factory: pytest.TempPathFactory, standin_model: Path) -> DemoLake:
    """Two real demo runs into one lake, one per A/B variant (invalid studies in both)."""
    data_dir = tmp_path_factory.mktemp("dashboard-demo")
    run_demo_lake(data_dir, standin_model, studies=6, invalid=2, variant="A")
    lake = run_demo_lake(data_dir, standin_model, studies=4, invalid=1, variant="B")
    return DemoLake(data_dir, lake)
