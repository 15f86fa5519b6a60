"""A stand-in for ``run_bench`` in the runner's fast tests: canned reports, calls recorded.

The reports are the bench report tests' realistic sample, with latencies scaled per arm by
the engine's worker count (two workers: 0.5x), so a real difference exists to be found.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from bench.test_bench_report_html import sample_dict
from radstream.bench.report import BenchReport
from radstream.bench.runner import BenchConfig
from radstream.settings import Settings


@dataclass
class Call:
    """One block as the fake bench saw it."""

    variant: str | None
    workers: int
    seed: int
    data_dir: str
    endpoint: str | None
    storage_class: str


@dataclass
class FakeBench:
    """Callable like ``run_bench``; ``fail_at`` raises at that call (0-based)."""

    n: int = 30
    fail_at: int | None = None
    calls: list[Call] = field(default_factory=list)

    def __call__(
        self, settings: Settings, cfg: BenchConfig, progress: Any = None, stack: Any = None
    ) -> BenchReport:
        self.calls.append(
            Call(
                settings.telemetry.variant,
                settings.engine.workers,
                cfg.seed,
                str(settings.data_dir),
                settings.model.endpoint,
                settings.cost.storage_class,
            )
        )
        if self.fail_at is not None and len(self.calls) - 1 == self.fail_at:
            raise OSError("disk full")
        data = sample_dict(seed=len(self.calls), n=self.n)
        scale = 1.0 / settings.engine.workers
        rng = np.random.default_rng(len(self.calls))
        data["series"]["latencies_ms"] = [
            float(v) * scale for v in rng.lognormal(np.log(200.0), 0.2, self.n)
        ]
        data["throughput_per_min"] = (
            100.0 * settings.engine.workers * float(np.exp(rng.normal(0.0, 0.02)))
        )
        return BenchReport.model_validate(data)
