"""The memory sweep's three picks, as Lambda Power Tuning gives them."""

from __future__ import annotations

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
