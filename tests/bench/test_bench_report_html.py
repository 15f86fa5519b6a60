"""The bench HTML report: every section, offline-safe, escaped, tolerant, and clean in Chromium.

The Chromium tests load the page in headless Chromium and fail on any browser console
message; they skip (saying why) when no Chromium is installed. ``scripts/install-chromium.sh``
installs it where it can.
"""

from __future__ import annotations

import math
import os
import re
import shutil
import subprocess
import tempfile
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from radstream.bench.console import summary_rows
from radstream.bench.report import BenchReport
from radstream.bench.report_html import NOT_MEASURED, render_report, render_report_html
from radstream.pipeline.definition import INFER, PIPELINE, PREPARE, STORE, VALIDATE

SECTION_IDS = ("slo", "latency", "stages", "flow", "cost", "manifest", "method")
HEADINGS = (
    "RadStream benchmark report",
    "Service-level objectives",
    "End-to-end latency",
    "Where the time goes: pipeline stages",
    "Throughput and queue over time",
    "Cost",
    "Run manifest",
    "Method",
)
XSS = "<script>alert(1)</script>"


STAGES = PIPELINE.names  # validate, prepare, infer, store: what the pipeline produces


def sample_dict(seed: int = 7, n: int = 200) -> dict[str, Any]:
    """A realistic bench report as JSON: ``n`` studies, the pipeline's stages, a minute of
    timeline."""
    rng = np.random.default_rng(seed)
    latencies = rng.lognormal(mean=math.log(180.0), sigma=0.35, size=n)
    latencies[:3] = [900.0, 1400.0, 2600.0]  # a slow tail, as real runs have
    typical_ms = {VALIDATE: 1.5, PREPARE: 35.0, INFER: 95.0, STORE: 5.0}
    stage_ms = {name: rng.lognormal(math.log(typical_ms[name]), 0.3, n).tolist() for name in STAGES}
    stage_ms["queue_wait"] = rng.exponential(20.0, n).tolist()
    pct = {q: float(np.percentile(latencies, q)) for q in (50, 90, 95, 99, 99.9)}
    timeline = []
    for i in range(61):
        sent = min(n, round(i * n / 55))
        completed = max(0, min(sent, round((i - 1) * n / 55)))
        timeline.append(
            {"t_s": float(i), "sent": sent, "completed": completed, "in_flight": sent - completed}
        )
    cost_items = [
        {
            "name": "Lambda compute",
            "quantity": 1520.5,
            "unit": "GB-s",
            "unit_price_usd": 0.0000166667,
            "usd": 0.02534,
            "note": "arm64, 3 GB",
        },
        {
            "name": "S3 PUT requests",
            "quantity": 400,
            "unit": "request",
            "unit_price_usd": 0.000005,
            "usd": 0.002,
            "note": "",
        },
        {
            "name": "Step Functions transitions",
            "quantity": 1000,
            "unit": "transition",
            "unit_price_usd": 0.000025,
            "usd": 0.025,
            "note": "standard workflow",
        },
    ]
    return {
        "n": n,
        "n_without_outcome": 0,
        "p50_ms": pct[50],
        "p90_ms": pct[90],
        "p95_ms": pct[95],
        "p99_ms": pct[99],
        "p999_ms": pct[99.9],
        "max_ms": float(latencies.max()),
        "late_sends": {"count": 3, "max_ms": 14.2, "mean_ms": 6.1},
        "queue_wait_ms": float(np.percentile(stage_ms["queue_wait"], 95)),
        "throughput_per_min": 217.5,
        "stable": True,
        "success_rate": 0.995,
        "invalid_injected": 10,
        "cost_per_image_usd": 0.0000412,
        "cost_items": cost_items,
        "cost": {
            "items": cost_items,
            "total_usd": 0.05234,
            "per_image_usd": 0.0000412,
            "pricing_as_of": "2025-01-15",
            "assumptions": [
                "List prices for us-east-1 in USD as of 2025-01-15; free tiers ignored.",
                "Every execution is priced; per_image_usd divides by successful images only.",
            ],
        },
        "stages": {
            name: {
                "p50_ms": float(np.percentile(v, 50)),
                "p95_ms": float(np.percentile(v, 95)),
                "n": n,
            }
            for name, v in stage_ms.items()
        },
        "slo": {
            "p95_ms": {
                "value": pct[95],
                "limit": 2000.0,
                "op": "<",
                "pass": True,
                "description": "95 % of studies finish within this time",
            },
            "p99_ms": {
                "value": pct[99],
                "limit": 5000.0,
                "op": "<",
                "pass": True,
                "description": "99 % of studies finish within this time",
            },
            "success_rate": {
                "value": 0.995,
                "limit": 0.99,
                "op": ">=",
                "pass": True,
                "description": "valid studies that produce a result",
            },
            "throughput_per_min": {
                "value": 217.5,
                "limit": 120.0,
                "op": ">=",
                "pass": True,
                "description": "sustained images per minute",
            },
        },
        "outcomes": {
            "valid": n,
            "not_sent": 0,
            "succeeded": n - 1,
            "failed": 1,
            "lost": 0,
            "success_rate": 0.995,
            "invalid_injected": 10,
            "invalid_rejected": 10,
            "invalid_accepted_or_lost": 0,
        },
        "efficiency": 0.87,
        "saturated": True,
        "baseline": {"images_per_s": 4.17, "ms_per_image": 240.0},
        "timed_out": False,
        "manifest": {
            "started_at": "2025-02-01T10:00:00+00:00",
            "command": "radstream bench --studies 200 --rate 4 --poisson --report out/report.html",
            "config_hash": "3f9a0c1d2e4b5a69",
            "config": {"studies": n, "rate": 4.0, "poisson": True, "workers": 4},
            "radstream": "0.1.0",
            "python": "3.11.9",
            "packages": {"onnxruntime": "1.18.1", "numpy": "1.26.4"},
            "machine": {"cpu": "AMD EPYC 7R13", "cores": 16, "memory_gib": 128, "os": "Linux"},
            "model": {"name": "densenet121-standin", "version": "1", "sha256": "77aa01bc"},
        },
        "load": {
            "mode": "open",
            "rate": 4.0,
            "poisson": True,
            "concurrency": None,
            "shape": None,
            "format": "jpeg",
            "warmup": 4,
        },
        "series": {
            "latencies_ms": latencies.tolist(),
            "stage_ms": stage_ms,
            "timeline": timeline,
            "throughput_windows": [
                {"t_s": float(t), "per_min": 200.0 + 30.0 * math.sin(t / 9)}
                for t in range(5, 61, 5)
            ],
        },
    }


def sample_report(seed: int = 7, n: int = 200) -> BenchReport:
    """:func:`sample_dict` as the model the report takes."""
    return BenchReport.model_validate(sample_dict(seed, n))


def minimal_report() -> BenchReport:
    """A run that measured almost nothing: 12 studies, a median, no series, no objectives."""
    empty = sample_dict()
    for key in ("p90_ms", "p95_ms", "p99_ms", "p999_ms", "max_ms", "queue_wait_ms"):
        empty[key] = None
    empty.update(
        n=12,
        p50_ms=150.0,
        throughput_per_min=None,
        success_rate=None,
        cost_per_image_usd=None,
        cost_items=[],
        stages={},
        slo={},
        efficiency=None,
        saturated=None,
        baseline=None,
        series={"latencies_ms": [], "stage_ms": {}, "timeline": [], "throughput_windows": []},
    )
    empty["cost"].update(items=[], total_usd=0.0, per_image_usd=None, assumptions=[])
    return BenchReport.model_validate(empty)


class _TagChecker(HTMLParser):
    """Open/close balance (void and self-closed elements aside) and duplicate ids."""

    VOID = frozenset(
        {
            "area",
            "base",
            "br",
            "col",
            "embed",
            "hr",
            "img",
            "input",
            "link",
            "meta",
            "source",
            "track",
            "wbr",
        }
    )

    def __init__(self) -> None:
        super().__init__()
        self.stack: list[str] = []
        self.problems: list[str] = []
        self.ids: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.ids += [v for k, v in attrs if k == "id" and v is not None]
        if tag not in self.VOID:
            self.stack.append(tag)

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.ids += [v for k, v in attrs if k == "id" and v is not None]

    def handle_endtag(self, tag: str) -> None:
        if not self.stack or self.stack[-1] != tag:
            self.problems.append(f"</{tag}> closes <{self.stack[-1] if self.stack else None}>")
            return
        self.stack.pop()


def check_html(text: str) -> list[str]:
    checker = _TagChecker()
    checker.feed(text)
    checker.close()
    problems = list(checker.problems)
    if checker.stack:
        problems.append(f"unclosed: {checker.stack}")
    dupes = sorted({i for i in checker.ids if checker.ids.count(i) > 1})
    if dupes:
        problems.append(f"duplicate ids: {dupes[:10]}")
    return problems


# --------------------------------------------------------------------------- content


def stage_rows(text: str) -> list[str]:
    """The stage names in the page's stage table, top to bottom."""
    table = text.split('<section id="stages">')[1].split("</section>")[0]
    return re.findall(r"<tr>\s*<td>([^<]*)</td>", table)


def test_report_contains_every_section(tmp_path: Path) -> None:
    path = tmp_path / "out" / "report.html"
    render_report(sample_report(), path)
    text = path.read_text(encoding="utf-8")

    assert text.startswith("<!DOCTYPE html>")
    for section in SECTION_IDS:
        assert f'<section id="{section}">' in text, section
    for heading in HEADINGS:
        assert heading in text, heading
    # Verdict, SLO rows, percentiles, stages incl. queue wait, cost and manifest values.
    assert '<section class="verdict pass"' in text
    assert ">PASS<" in text
    assert "p95_ms" in text and "&lt; 2,000 ms" in text
    assert "99.50 %" in text  # success rate
    assert stage_rows(text) == [*STAGES, "queue wait"]
    assert "Lambda compute" in text and "$0.0523" in text  # total 0.05234
    assert "2025-01-15" in text and "divides by successful images only" in text
    assert "3f9a0c1d2e4b5a69" in text and "machine.cpu" in text and "model.sha256" in text
    assert "95 % of studies finish within this time" in text  # SLO description
    assert "… rejected, as they should be" in text and "poisson" in text
    assert "intended" in text and "warm-up" in text and "Late sends" in text
    # Four charts, inline SVG, each with a readable label.
    assert text.count("<svg ") == 4
    for label in ("Latency CDF", "Per-stage", "Throughput over time", "Queue depth"):
        assert f'aria-label="{label}' in text, label
    # Everything was measured; only concurrency is blank (it is an open-loop run).
    assert text.count('<span class="na">') == 1
    assert f'<td>Concurrency</td><td><span class="na">{NOT_MEASURED}</span>' in text


def test_report_is_self_contained(tmp_path: Path) -> None:
    text = render_report_html(sample_report())
    lowered = text.lower()
    for needle in ('src="http', "src='http", 'href="http', "href='http", "@import", "url(http"):
        assert needle not in lowered, needle
    assert "<script" not in lowered
    assert "<link" not in lowered
    assert "<?xml" not in text and "<!DOCTYPE svg" not in text  # SVG is inlined, not a document
    assert "default-src 'none'" in text  # the CSP that keeps it that way


def test_report_html_is_well_formed() -> None:
    assert check_html(render_report_html(sample_report())) == []


def test_rendering_is_deterministic() -> None:
    assert render_report_html(sample_report()) == render_report_html(sample_report())


def test_text_is_escaped() -> None:
    data = sample_dict()
    data["manifest"]["command"] = XSS
    data["manifest"]["config"][XSS] = XSS  # keys too
    data["cost_items"][0]["name"] = "<b>bold</b> & co"
    data["slo"]['<img src=x onerror="alert(1)">'] = {
        "value": 1.0,
        "limit": 2.0,
        "op": "<",
        "pass": True,
    }
    data["series"]["stage_ms"]["<evil>$x$"] = [1.0, 2.0, 3.0]

    text = render_report_html(BenchReport.model_validate(data))

    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in text
    assert XSS not in text and "<script" not in text.lower()
    assert "&lt;b&gt;bold&lt;/b&gt; &amp; co" in text
    assert "<img" not in text
    assert "<evil>" not in text  # also inside the SVG chart
    assert check_html(text) == []


def test_stages_follow_the_summary_then_the_series_and_queue_wait_comes_last() -> None:
    data = sample_dict()
    # A failure-path stage the summary lacks but the series has, after queue wait in the dict.
    data["series"]["stage_ms"][PIPELINE.failure_stage] = [2.0, 3.0]
    text = render_report_html(BenchReport.model_validate(data))
    assert stage_rows(text) == [*STAGES, PIPELINE.failure_stage, "queue wait"]


# --------------------------------------------------------------------------- verdicts


def test_failed_objective_gives_fail_verdict() -> None:
    data = sample_dict()
    data["slo"]["p95_ms"].update(value=2500.0, limit=2000.0, **{"pass": False})
    text = render_report_html(BenchReport.model_validate(data))
    assert '<section class="verdict fail"' in text
    assert "1 of 4 service-level objectives missed: p95_ms." in text
    assert '<span class="badge fail">FAIL</span>' in text


def test_unmeasured_objective_fails_and_says_not_measured() -> None:
    data = sample_dict()
    data["slo"]["p99_ms"] = {"value": None, "limit": 5000.0, "op": "<", "pass": False}
    text = render_report_html(BenchReport.model_validate(data))
    assert '<section class="verdict fail"' in text and "missed: p99_ms." in text
    slo_table = text.split('<section id="slo">')[1].split("</section>")[0]
    assert NOT_MEASURED in slo_table


# --------------------------------------------------------------------------- missing data


def test_missing_measurements_render_not_measured(tmp_path: Path) -> None:
    path = tmp_path / "minimal.html"
    render_report(minimal_report(), path)
    text = path.read_text(encoding="utf-8")

    for section in SECTION_IDS:
        assert f'<section id="{section}">' in text, section
    assert "NO VERDICT" in text
    assert "150 ms" in text
    for what in (
        "Objectives",
        "Latency distribution",
        "Per-stage distributions",
        "Throughput over time",
        "Queue depth over time",
        "Cost items",
    ):
        assert f"{what}: {NOT_MEASURED}" in text, what
    assert "<svg" not in text
    assert text.count(NOT_MEASURED) > 20
    assert check_html(text) == []


def test_none_and_non_finite_values_render_not_measured() -> None:
    data = sample_dict()
    data.update(
        cost_per_image_usd=None,
        efficiency=None,
        p999_ms=float("nan"),
        max_ms=float("inf"),
    )
    data["series"]["timeline"] = []
    data["series"]["stage_ms"][PREPARE] = [float("inf"), float("nan")]
    data["manifest"]["config"].update(concurrency=None, slo=[], baseline=False)
    text = render_report_html(BenchReport.model_validate(data))

    assert (
        '<th scope="row">config.concurrency</th><td class="mono"><span class="na">not set' in text
    )
    assert '<th scope="row">config.slo</th><td class="mono"><span class="na">not set' in text
    assert '<th scope="row">config.baseline</th><td class="mono">false<' in text

    assert '<td>p99.9</td><td class="num"><span class="na">not measured</span>' in text
    assert '<td>max</td><td class="num"><span class="na">not measured</span>' in text
    assert "Queue depth over time: not measured" in text
    assert "Latency CDF" in text
    assert check_html(text) == []


def test_long_series_are_thinned() -> None:
    data = sample_dict(n=200)
    rng = np.random.default_rng(1)
    data["series"]["latencies_ms"] = rng.lognormal(5, 0.5, 100_000).tolist()
    data["series"]["timeline"] = [
        {"t_s": i / 10, "sent": i, "completed": i, "in_flight": i % 7} for i in range(50_000)
    ]
    text = render_report_html(BenchReport.model_validate(data))
    assert len(text) < 2_000_000


# --------------------------------------------------------------------------- Chromium

CHROMIUM_FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--enable-logging=stderr",
    "--v=0",
)


def find_chromium() -> str | None:
    """The Chromium binary: $CHROMIUM, then PATH, then /usr/bin/chromium."""
    for candidate in (os.environ.get("CHROMIUM"), "chromium", "chromium-browser"):
        if candidate and (found := shutil.which(candidate)):
            return found
    return "/usr/bin/chromium" if os.access("/usr/bin/chromium", os.X_OK) else None


def run_chromium(chromium: str, page: Path, *args: str) -> tuple[str, str]:
    """Load ``page`` in headless Chromium with a fresh profile; (dumped DOM, stderr log)."""
    with tempfile.TemporaryDirectory(prefix="radstream-chromium-") as profile:
        try:
            done = subprocess.run(
                [chromium, *CHROMIUM_FLAGS, f"--user-data-dir={profile}", *args, page.as_uri()],
                capture_output=True,
                text=True,
                timeout=120,
                check=False,
            )
        except subprocess.TimeoutExpired as exc:
            pytest.fail(f"chromium did not finish loading {page} in {exc.timeout} s")
    return done.stdout, done.stderr


def console_errors(stderr: str) -> list[str]:
    """Lines of a Chromium ``--enable-logging=stderr`` log that report a page problem.

    Chromium logs every page console message (script errors, ``console.error``, blocked
    loads) as an ``INFO:CONSOLE`` line, whatever its level, so all of them count: the report
    has no scripts and fetches nothing, so it should produce none. Uncaught exceptions are
    matched on their own too, in case a Chromium logs them differently.
    """
    return [
        line
        for line in stderr.splitlines()
        if "CONSOLE" in line or "Uncaught" in line or "Content Security Policy" in line
    ]


@pytest.fixture(scope="module")
def chromium() -> str:
    found = find_chromium()
    if found is None:
        pytest.skip(
            "Chromium not found (no `chromium` on PATH, no /usr/bin/chromium); "
            "run scripts/install-chromium.sh or set CHROMIUM=/path/to/chromium"
        )
    return found


@pytest.mark.slow  # starts a browser
def test_report_loads_in_chromium_without_console_errors(chromium: str, tmp_path: Path) -> None:
    page = tmp_path / "report.html"
    render_report(sample_report(), page)
    dom, log = run_chromium(chromium, page, "--dump-dom")
    assert "RadStream benchmark report" in dom, log[-2000:]
    assert "<svg" in dom
    assert console_errors(log) == []


@pytest.mark.slow  # starts a browser
def test_minimal_report_loads_in_chromium_without_console_errors(
    chromium: str, tmp_path: Path
) -> None:
    page = tmp_path / "minimal.html"
    render_report(minimal_report(), page)
    dom, log = run_chromium(chromium, page, "--dump-dom")
    assert "NO VERDICT" in dom, log[-2000:]
    assert console_errors(log) == []


@pytest.mark.slow  # starts a browser
def test_console_error_detection_negative_control(chromium: str, tmp_path: Path) -> None:
    """The detector must see a thrown error; otherwise the tests above prove nothing."""
    page = tmp_path / "boom.html"
    page.write_text(
        '<!DOCTYPE html><html lang="en"><head><meta charset="utf-8"><title>boom</title></head>'
        '<body><p>boom</p><script>throw new Error("boom")</script></body></html>',
        encoding="utf-8",
    )
    dom, log = run_chromium(chromium, page, "--dump-dom")
    assert "<p>boom</p>" in dom, log[-2000:]  # the page did load
    errors = console_errors(log)
    assert errors, f"thrown error not detected in chromium log:\n{log[-3000:]}"
    assert any(re.search(r"Uncaught.*boom", line) for line in errors), errors


@pytest.mark.slow  # starts a browser
def test_outside_fetch_is_blocked_and_detected(chromium: str, tmp_path: Path) -> None:
    """A later edit that pulls in an outside resource is blocked by the page's CSP and seen."""
    page = tmp_path / "fetching.html"
    text = render_report_html(sample_report())
    page.write_text(
        text.replace("</main>", '<img src="https://example.invalid/x.png" alt=""></main>'),
        encoding="utf-8",
    )
    _, log = run_chromium(chromium, page, "--dump-dom")
    errors = console_errors(log)
    assert any("example.invalid" in line for line in errors), log[-3000:]


# --------------------------------------------------------------------------- terminal


def test_terminal_summary_lists_stages_and_verdicts() -> None:
    data = sample_dict()
    data["slo"]["p95_ms"].update(value=2500.0, limit=2000.0, **{"pass": False})
    rows = dict(summary_rows(BenchReport.model_validate(data)))
    assert rows["studies measured (valid)"] == "200"
    assert [label.strip() for label in rows if label.endswith("p50 / p95")] == [
        f"{stage} p50 / p95" for stage in (*STAGES, "queue_wait")
    ]
    assert rows["SLO p95_ms < 2000.0"].endswith("[red]FAIL[/red]")
    assert rows["SLO success_rate >= 0.99"].endswith("[green]pass[/green]")
    assert rows["efficiency (vs in-memory limit)"] == "0.87"


def test_json_object_is_the_report_without_series_or_empty_notes() -> None:
    data = sample_dict()
    public = BenchReport.model_validate(data).json_object()
    assert "series" not in public
    assert "telemetry_note" not in public and "efficiency_note" not in public
    assert public["baseline"] == data["baseline"]
    assert public["slo"]["p95_ms"]["pass"] is True  # the JSON key, not the attribute name
    assert {k: v for k, v in data.items() if k != "series"} == public
    noted = BenchReport.model_validate(data | {"telemetry_note": "late", "baseline": None})
    assert noted.json_object()["telemetry_note"] == "late"
    assert "baseline" not in noted.json_object()
