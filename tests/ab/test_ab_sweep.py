"""The memory sweep's three picks, as Lambda Power Tuning gives them."""

from __future__ import annotations

import math

import numpy as np
import pytest

from radstream.ab import SweepPoint, summarise_sweep

POINTS = [
    SweepPoint(memory_mb=512, p95_ms=9000.0, cost_per_image_usd=0.00010),
    SweepPoint(memory_mb=1024, p95_ms=4800.0, cost_per_image_usd=0.00011),
    SweepPoint(memory_mb=1769, p95_ms=2900.0, cost_per_image_usd=0.00012),
    SweepPoint(memory_mb=3008, p95_ms=2800.0, cost_per_image_usd=0.00020),
]


def test_picks() -> None:
    s = summarise_sweep(POINTS)
    assert s.cheapest_meeting_slo == 1024  # 512 is cheaper but misses p95 <= 5 s
    assert s.fastest == 3008
    # balanced scores: 512 .75, 1024 .542, 1769 .461, 3008 .656
    assert s.balanced == 1769
    assert s.slo_p95_ms == 5000.0
    assert "1024 MB" in s.reason


def test_no_size_meets_the_slo() -> None:
    s = summarise_sweep(POINTS, slo_p95_ms=1000.0)
    assert s.cheapest_meeting_slo is None
    assert "none meets" in s.reason


def test_weight_moves_the_balanced_pick() -> None:
    assert summarise_sweep(POINTS, weight=1.0).balanced == 512
    assert summarise_sweep(POINTS, weight=0.0).balanced == 3008


def test_points_come_back_in_memory_order_and_bad_sweeps_are_refused() -> None:
    s = summarise_sweep(list(reversed(POINTS)))
    assert [p.memory_mb for p in s.points] == [512, 1024, 1769, 3008]
    with pytest.raises(ValueError, match="distinct"):
        summarise_sweep([POINTS[0], POINTS[0]])
    with pytest.raises(ValueError, match="at least one"):
        summarise_sweep([])
    with pytest.raises(ValueError, match="weight"):
        summarise_sweep(POINTS, weight=2.0)


def test_project_memory_stretches_cpu_and_bills_the_stretched_time() -> None:
    from radstream.ab import StageTiming, project_memory
    from radstream.pricing import load_pricing

    pricing = load_pricing()
    per_gb_s = pricing.lambda_.x86_64_per_gb_second.usd
    per_request = pricing.lambda_.requests_per_million.usd / 1e6
    # Two stages per study: 0.2 s CPU of 0.3 s, and 0.1 s CPU of 0.1 s.
    stages = [StageTiming(cpu_s=0.2, wall_s=0.3), StageTiming(cpu_s=0.1, wall_s=0.1)]
    studies = [stages] * 20
    latencies = [1000.0 + 10.0 * i for i in range(20)]
    full = project_memory(studies, latencies, 1769, pricing)
    assert full.projected
    assert full.p95_ms == pytest.approx(float(np.quantile(latencies, 0.95)))
    # 1769 MB: 0.4 s billed per image at 1769/1024 GB, two requests.
    assert full.cost_per_image_usd == pytest.approx(0.4 * 1769 / 1024 * per_gb_s + 2 * per_request)
    half = project_memory(studies, latencies, 1769 // 2, pricing, other_cost_per_image_usd=1e-5)
    # Half a vCPU (884 MB, just under): each study's 0.3 s of CPU takes ~0.6 s.
    stretch_ms = 300.0 * (1769 / 884 - 1)
    assert half.p95_ms == pytest.approx(full.p95_ms + stretch_ms)
    # Billed per stage, rounded up to the next 1 ms: 0.1 + 0.2 × 1769/884 s, and 0.1 × 1769/884 s.
    billed = math.ceil(1000 * (0.1 + 0.2 * 1769 / 884)) / 1000
    billed += math.ceil(1000 * (0.1 * 1769 / 884)) / 1000
    assert billed == pytest.approx(0.702)
    assert half.cost_per_image_usd == pytest.approx(
        billed * 884 / 1024 * per_gb_s + 2 * per_request + 1e-5
    )
    with pytest.raises(ValueError, match="one list"):
        project_memory(studies, latencies[:3], 512, pricing)
    with pytest.raises(ValueError, match="succeeded"):
        project_memory(studies, latencies, 512, pricing, succeeded=0)


def test_project_memory_feeds_the_sweep() -> None:
    from radstream.ab import StageTiming, project_memory
    from radstream.pricing import load_pricing

    pricing = load_pricing()
    studies = [[StageTiming(cpu_s=1.5, wall_s=1.6)]] * 20
    latencies = [2500.0] * 20
    points = [project_memory(studies, latencies, m, pricing) for m in (512, 1024, 1769, 3008)]
    s = summarise_sweep(points)
    assert s.fastest == 1769  # 3008 MB is no faster for a single thread, and dearer
    assert s.cheapest_meeting_slo == 1024  # 512 MB: 1.5 s CPU takes 5.2 s, over the SLO
