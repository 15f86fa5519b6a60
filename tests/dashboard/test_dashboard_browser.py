"""The dashboard in headless Chromium: loads clean, draws the named queries' figures and the
engine's own counts, follows the lake as studies arrive, and filters by variant.

Each test serves the real app on 127.0.0.1 and drives a real browser (see
``dashboard_browser.py``); the figures the page drew are read back from the page and compared
with the named queries run directly on the same lake.
"""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
from dashboard_browser import Browser
from dashboard_support import ChromiumKit, DemoLake, serving

from radstream.dashboard.app import create_app
from radstream.dashboard.engine import LocalEngineWatch
from radstream.dashboard.figures import json_rows
from radstream.dashboard.objectives import OBJECTIVES, pick_row
from radstream.lake.duckdb_runner import LocalQueryRunner
from radstream.local.database import connect
from radstream.local.executor import Executor
from radstream.stages.ports import ObjectInfo
from support.demo import run_demo_lake

pytestmark = pytest.mark.slow  # a server, a browser, and demo runs with worker processes

LOADED = "window.radstreamDashboard && window.radstreamDashboard.updates >= 1"
SNAPSHOT = (
    "JSON.stringify({data: window.radstreamDashboard.data, "
    "plotted: window.radstreamDashboard.plotted, errors: window.radstreamDashboard.errors})"
)


def snapshot(browser: Browser) -> dict[str, Any]:
    """What the page last received, and what it drew from it."""
    value = browser.evaluate(SNAPSHOT)
    assert isinstance(value, str)
    loaded: dict[str, Any] = json.loads(value)
    return loaded


def epoch(iso: str) -> float:
    return datetime.fromisoformat(iso).timestamp()


def column(figure: dict[str, Any], name: str) -> list[Any]:
    i = figure["columns"].index(name)
    return [row[i] for row in figure["rows"]]


def only(figure: dict[str, Any], name: str, value: Any) -> dict[str, Any]:
    i = figure["columns"].index(name)
    return {**figure, "rows": [row for row in figure["rows"] if row[i] == value]}


def same(shown: Any, computed: Any) -> bool:
    """Equal, floats to 12 digits: a sum of floats may come out in another order."""
    if isinstance(shown, list) and isinstance(computed, list):
        return len(shown) == len(computed) and all(map(same, shown, computed))
    if isinstance(shown, float) or isinstance(computed, float):
        return bool(shown == pytest.approx(computed, rel=1e-12))
    return bool(shown == computed)


def assert_figures_are_the_queries(lake: Path, data: dict[str, Any]) -> None:
    """Every figure and tile the page received is its named query, run here, to the value."""
    with LocalQueryRunner(lake) as runner:
        for key, figure in data["figures"].items():
            result = runner.run_named(figure["query"], figure["params"])
            assert figure["columns"] == result.columns, key
            assert same(figure["rows"], json_rows(result)), (key, figure["rows"])
        objectives = {o.target.name: o for o in OBJECTIVES}
        for tile in data["objectives"]:
            objective = objectives[tile["name"]]
            assert tile["query"] == objective.query
            for window, shown in tile["windows"].items():
                record = pick_row(objective, runner.run_named(tile["query"], shown["params"]))
                assert same(shown["value"], record[objective.column]), (tile["name"], window)
                assert shown["executions"] == record[objective.count_column]


def assert_charts_are_the_figures(data: dict[str, Any], plotted: dict[str, Any]) -> None:
    """What each chart drew is its figure's rows (reshaped, never recomputed)."""
    figures = data["figures"]
    latency = only(figures["latency"], "outcome", "succeeded")
    assert plotted["latency"]["x"] == [epoch(m) for m in column(latency, "bucket")]
    for name in ("p50_ms", "p95_ms", "p99_ms"):
        assert plotted["latency"]["series"][name] == column(latency, name)
    throughput = figures["throughput"]
    assert plotted["throughput"]["x"] == [epoch(m) for m in column(throughput, "bucket")]
    for name in ("succeeded", "failed"):
        assert plotted["throughput"]["series"][name] == column(throughput, name)
    failures = figures["failures"]
    drawn = plotted["failures"]
    assert sorted(drawn["series"]) == sorted(set(column(failures, "error_code")))
    for bucket, code, count in failures["rows"]:
        assert drawn["series"][code][drawn["x"].index(epoch(bucket))] == count
    stages = figures["stages"]
    assert plotted["stages"]["x"] == column(stages, "stage")
    for name in ("p50_ms", "p95_ms", "p99_ms"):
        assert plotted["stages"]["series"][name] == column(stages, name)
    cost = figures["cost"]
    assert plotted["cost"]["x"] == [epoch(d) for d in column(cost, "bucket")]
    assert plotted["cost"]["series"]["cost_per_image_usd"] == column(cost, "cost_per_image_usd")
    batches = figures["batches"]
    assert plotted["batches"]["x"] == column(batches, "batch_size")
    assert plotted["batches"]["series"]["calls"] == column(batches, "calls")
    variants = only(figures["variant_latency"], "outcome", "succeeded")
    variants = {**variants, "rows": [r for r in variants["rows"] if r[1] is not None]}
    assert plotted["variants"]["x"] == column(variants, "variant")
    for name in ("p50_ms", "p95_ms"):
        assert plotted["variants"]["series"][name] == column(variants, name)


def assert_engine_is_the_executors(data: dict[str, Any], plotted: dict[str, Any], db: Path) -> None:
    """The engine panel holds, and its chart drew, the executor's own counts."""
    counts = Executor(connect(db)).counts()
    assert data["engine"]["counts"] == counts
    assert plotted["engine"]["x"] == list(counts)
    assert plotted["engine"]["series"]["executions"] == list(counts.values())
    assert plotted["engine"]["queue_depth"] == counts["pending"]


def test_the_page_draws_the_named_queries_and_filters_by_variant(
    chromium_kit: ChromiumKit, ab_lake: DemoLake
) -> None:
    db = ab_lake.data_dir / "engine.db"
    app = create_app(ab_lake.lake_dir, engine=LocalEngineWatch(db), refresh_s=1.0)
    with serving(app) as url, Browser(chromium_kit.binary, chromium_kit.flags) as browser:
        browser.open(url + "/")
        browser.wait_for(LOADED, "the dashboard's first refresh")
        seen = snapshot(browser)
        data, plotted = seen["data"], seen["plotted"]
        assert seen["errors"] == 0
        # The demo's figures are there, not an empty page that would compare equal.
        assert sum(column(data["figures"]["latency"], "n")) == 10
        assert column(data["figures"]["variant_success"], "variant") == ["A", "B"]
        assert data["figures"]["failures"]["rows"]
        assert_figures_are_the_queries(ab_lake.lake_dir, data)
        assert_charts_are_the_figures(data, plotted)
        assert_engine_is_the_executors(data, plotted, db)
        assert data["engine"]["counts"] == {
            "pending": 0,
            "running": 0,
            "succeeded": 7,
            "failed": 3,
        }
        # Drawn, not only held: uPlot's canvases and the bars' rectangles are in the DOM.
        for key in ("latency", "throughput", "failures", "cost"):
            assert browser.evaluate(f"document.querySelectorAll('#chart-{key} canvas').length")
        bars = browser.evaluate("document.querySelectorAll('#chart-stages rect').length")
        assert bars == 3 * len(data["figures"]["stages"]["rows"])
        tiles = browser.evaluate(
            "Array.from(document.querySelectorAll('.tile')).map(t => t.dataset.objective)"
        )
        assert tiles == ["p95_ms", "throughput_per_min", "cost_per_image_usd", "success_rate"]
        # Three of ten studies failed in the last hour: the success tile shows its burn.
        success = browser.evaluate(
            'document.querySelector(\'[data-objective=success_rate] tr[data-window="1h"] '
            ".burn').textContent"
        )
        assert success == "30.00×"

        browser.evaluate(
            "(() => { const s = document.getElementById('variant'); s.value = 'A'; "
            "s.dispatchEvent(new Event('change')); })()"
        )
        browser.wait_for(
            "window.radstreamDashboard.data.variant === 'A'", "the page to show variant A"
        )
        seen = snapshot(browser)
        assert sum(column(seen["data"]["figures"]["latency"], "n")) == 6
        assert_figures_are_the_queries(ab_lake.lake_dir, seen["data"])
        assert_charts_are_the_figures(seen["data"], seen["plotted"])

        # An upload the engine has not run yet (no engine runs here): the panel shows it
        # pending at the next refresh, as the executor counts it, and its age.
        executor = Executor(connect(db))
        executor.object_created(ObjectInfo("images", "incoming/waiting/a.json", "e1", 2, 0.0))
        assert executor.route() == 1
        browser.wait_for(
            "window.radstreamDashboard.data.engine.counts.pending === 1",
            "the engine panel to show the pending upload",
        )
        seen = snapshot(browser)
        assert_engine_is_the_executors(seen["data"], seen["plotted"], db)
        assert seen["data"]["engine"]["oldest_pending_age_s"] >= 0
        facts = browser.evaluate(
            "document.querySelector('#chart-engine .engine-facts').textContent"
        )
        assert "queue depth 1" in facts
        assert browser.problems() == []
    assert chromium_kit.console_errors(browser.log()) == []


def test_a_study_uploaded_after_the_page_opened_appears_after_a_refresh(
    chromium_kit: ChromiumKit, tmp_path: Path, standin_model: Path
) -> None:
    data_dir = tmp_path / "data"
    lake = run_demo_lake(data_dir, standin_model, studies=2, invalid=0)
    app = create_app(lake, token="s3cret-token", refresh_s=1.0)
    with serving(app) as url, Browser(chromium_kit.binary, chromium_kit.flags) as browser:
        # The token travels once in the address; the cookie it sets carries it from then on.
        browser.open(url + "/?token=s3cret-token")
        browser.wait_for(LOADED, "the dashboard's first refresh")
        assert browser.evaluate("location.search") == ""
        before = snapshot(browser)["data"]
        assert sum(column(before["figures"]["throughput"], "succeeded")) == 2

        run_demo_lake(data_dir, standin_model, studies=1, invalid=0)

        browser.wait_for(
            "(f => f.rows.reduce((n, r) => n + r[f.columns.indexOf('succeeded')], 0))"
            "(window.radstreamDashboard.data.figures.throughput) === 3",
            "the page to show the third study",
        )
        after = snapshot(browser)["data"]
        assert_figures_are_the_queries(lake, after)
        status = browser.evaluate("document.getElementById('status').textContent")
        assert "3 executions finished in range" in status
        assert browser.problems() == []
    assert chromium_kit.console_errors(browser.log()) == []


def test_the_browser_sees_a_thrown_error_and_an_outside_fetch(
    chromium_kit: ChromiumKit, tmp_path: Path
) -> None:
    """Negative control: without this, the clean-console checks above would prove nothing."""
    page = tmp_path / "boom.html"
    page.write_text(
        '<!DOCTYPE html><html lang="en"><head><meta charset="utf-8"><title>boom</title></head>'
        '<body><img src="https://example.invalid/x.png" alt="">'
        '<script>window.done = true; throw new Error("boom")</script></body></html>',
        encoding="utf-8",
    )
    with Browser(chromium_kit.binary, chromium_kit.flags) as browser:
        browser.open(page.as_uri())
        browser.wait_for("window.done === true", "the page's script to run")
        browser.wait_for_problems(2)
        problems = browser.problems()
    assert any("boom" in p for p in problems), problems
    assert any("example.invalid" in p for p in problems), problems
