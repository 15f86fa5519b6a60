"""A real ``radstream serve --metrics-port`` in a subprocess, and its /metrics read back.

Used by the engine metrics test and the Grafana dashboard test: the engine's process, its
workers and its HTTP server all run for real; the test uploads through the folder store.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx
import numpy as np
from prometheus_client.parser import text_string_to_metric_families

from radstream.loadgen.bad_inputs import BAD_KINDS, make_bad_study
from radstream.loadgen.study import Study, make_study
from radstream.settings import Settings
from support.waiting import free_port, wait_until


@dataclass(frozen=True)
class Scrape:
    """One /metrics response, parsed: every sample by name, with its labels."""

    text: str
    samples: dict[str, list[tuple[dict[str, str], float]]]

    def value(self, name: str, **labels: str) -> float:
        """The one sample of ``name`` with exactly ``labels`` (0 if there is none)."""
        found = [v for got, v in self.samples.get(name, []) if got == labels]
        assert len(found) <= 1, (name, labels, found)
        return found[0] if found else 0.0

    def by_label(self, name: str, label: str) -> dict[str, float]:
        """``{label value: sample value}`` of ``name``."""
        return {got[label]: v for got, v in self.samples.get(name, [])}


def scrape(url: str) -> Scrape:
    """GET ``url`` and parse it with Prometheus' own text parser."""
    response = httpx.get(url, timeout=30)
    response.raise_for_status()
    samples: dict[str, list[tuple[dict[str, str], float]]] = {}
    for family in text_string_to_metric_families(response.text):
        for sample in family.samples:
            samples.setdefault(sample.name, []).append((dict(sample.labels), sample.value))
    return Scrape(response.text, samples)


def try_scrape(url: str) -> Scrape | None:
    """:func:`scrape`, or None while nothing answers yet."""
    try:
        return scrape(url)
    except httpx.HTTPError:
        return None


@dataclass(frozen=True)
class ServedEngine:
    """A running ``radstream serve`` and the address of its /metrics."""

    process: subprocess.Popen[bytes]
    url: str


@contextmanager
def serving_engine(settings: Settings, cwd: Path) -> Iterator[ServedEngine]:
    """Run ``radstream serve --metrics-port P`` on ``settings``' data dir until the block ends.

    Yields once every worker is ready (``radstream_workers_alive``); on the way out, stops it
    with SIGTERM and fails if it does not exit 0.
    """
    port = free_port()
    env = {
        **os.environ,
        "RADSTREAM_DATA_DIR": str(settings.data_dir),
        "RADSTREAM_MODEL__PATH": str(settings.model.path),
        "RADSTREAM_ENGINE__WORKERS": str(settings.engine.workers),
        "RADSTREAM_ENGINE__IMAGE_WAIT_S": str(settings.engine.image_wait_s),
        "RADSTREAM_ENGINE__RETRY_BASE_S": str(settings.engine.retry_base_s),
        "RADSTREAM_ENGINE__RETRY_MAX_S": str(settings.engine.retry_max_s),
        "RADSTREAM_TELEMETRY__FLUSH_S": str(settings.telemetry.flush_s),
    }
    process = subprocess.Popen(
        [sys.executable, "-m", "radstream.cli", "serve", "--metrics-port", str(port)],
        env=env,
        cwd=cwd,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}/metrics"
    output = ""
    try:

        def ready() -> bool:
            assert process.poll() is None, "serve exited while starting"
            got = try_scrape(url)
            return got is not None and got.value("radstream_workers_alive") == (
                settings.engine.workers
            )

        wait_until(ready, "serve's workers and /metrics", timeout_s=180, interval_s=0.2)
        yield ServedEngine(process, url)
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
        output = process.communicate(timeout=120)[0].decode(errors="replace")
    assert process.returncode == 0, output


def mixed_studies(valid: int, kinds: list[str], seed: int = 11) -> list[Study]:
    """``valid`` good studies (PNG, JPEG, DICOM in turn) and one bad study of each kind."""
    rng = np.random.default_rng(seed)
    formats = ("png", "jpeg", "dicom")
    studies = [
        make_study(f"m-{i:02d}", formats[i % len(formats)], rng, width=640, height=720)
        for i in range(valid)
    ]
    for i, kind in enumerate(kinds):
        assert kind in BAD_KINDS
        studies.append(make_bad_study(kind, f"bad-{i:02d}", rng))
    return studies
