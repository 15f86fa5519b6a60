"""The A/B HTML report: every section, projections labelled, escaped, and clean in Chromium.

The runs are the runner's with canned bench reports (see ab_fake_bench.py). The Chromium
tests reuse the bench report tests' helpers and skip, saying why, without a Chromium.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from ab_fake_bench import FakeBench

import radstream.ab.run as ab_run
from bench.test_bench_report_html import check_html, chromium, console_errors, run_chromium
from radstream.ab.report import render_ab_report, render_ab_report_html
from radstream.ab.run import ExperimentConfig, ExperimentRun, run_experiment
from radstream.ab.scenarios import scenarios
from radstream.bench.runner import BenchConfig
from radstream.settings import Settings

__all__ = ["chromium"]  # the imported fixture, used by the Chromium tests below

SECTIONS = ("arms", "verdicts", "forest", "latency", "blocks", "srm", "method", "manifest")
XSS = "<script>alert(1)</script>"


def make_run(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    arms: dict[str, dict[str, str]] | None = None,
    scenario: str | None = None,
) -> ExperimentRun:
    monkeypatch.setattr(ab_run, "run_bench", FakeBench())
    chosen = scenarios()[scenario] if scenario else None
    cfg = ExperimentConfig(
        experiment=scenario or "custom",
        arms=chosen.arms if chosen else (arms or {}),
        bench=BenchConfig(studies=30, concurrency=2, warmup=1),
        blocks=5,
        scenario=chosen,
    )
    return run_experiment(Settings(data_dir=tmp_path / "exp"), cfg)


def real_run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> ExperimentRun:
    return make_run(
        tmp_path, monkeypatch, {"one": {"engine.workers": "1"}, "two": {"engine.workers": "2"}}
    )


def test_report_has_every_section_and_three_charts(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    run = real_run(tmp_path, monkeypatch)
    page = tmp_path / "out" / "ab.html"
    render_ab_report(run, page)
    text = page.read_text("utf-8")
    for section in SECTIONS:
        assert f'<section id="{section}">' in text, section
    assert text.count("<svg ") == 3  # forest plot, latency CDFs, block order
    assert 'aria-label="Forest plot of the ratio intervals"' in text
    assert text.count('class="badge ') == len(run.result.metrics)
    assert "b_better" in text
    assert run.result.method[:40] in text
    # A real run is not labelled as a projection.
    assert "PROJECTED" not in text and 'id="projections"' not in text
    assert check_html(text) == []


def test_projected_report_labels_projections_and_shows_the_sweep(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    run = make_run(tmp_path, monkeypatch, scenario="lambda-memory")
    text = render_ab_report_html(run)
    assert "PROJECTED" in text
    assert '<section id="projections">' in text
    projected_rows = sum(m.projected for m in run.result.metrics)
    assert text.count('<span class="tag">projected</span>') == projected_rows > 0
    assert "configuration-memory.html" in text  # the cited source
    assert "Memory sweep (projected)" in text
    for size in ("512 MB", "1024 MB", "1769 MB", "3008 MB"):
        assert size in text
    assert check_html(text) == []


def test_report_is_self_contained_escaped_and_deterministic(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    run = make_run(tmp_path, monkeypatch, {XSS: {}, "b": {"engine.workers": "2"}})
    text = render_ab_report_html(run)
    assert XSS not in text
    assert "&lt;script&gt;" in text
    assert "<script" not in text
    assert "http://" not in text.replace("http://www.w3.org", "")
    assert "Content-Security-Policy" in text
    assert render_ab_report_html(run) == text


@pytest.mark.slow  # starts a browser
def test_report_loads_in_chromium_without_console_errors(
    chromium: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    page = tmp_path / "ab.html"
    render_ab_report(make_run(tmp_path, monkeypatch, scenario="storage-class"), page)
    dom, log = run_chromium(chromium, page, "--dump-dom")
    assert "RadStream A/B report" in dom, log[-2000:]
    assert "<svg" in dom
    assert console_errors(log) == []
