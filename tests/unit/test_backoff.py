"""The one backoff rule: full jitter, the same on both engines."""

from __future__ import annotations

import random

import pytest

from radstream.backoff import Backoff


def test_full_jitter_spans_zero_to_the_ceiling() -> None:
    backoff = Backoff(base_s=1.0, max_s=8.0)
    rng = random.Random(7)
    draws = [backoff.delay(3, rng.random) for _ in range(2000)]
    assert min(draws) < 0.1 * 4.0  # full jitter reaches near zero, equal jitter would not
    assert max(draws) <= 4.0
    assert sum(draws) / len(draws) == pytest.approx(backoff.expected_delay(3), rel=0.05)


def test_ceiling_caps_and_never_overflows() -> None:
    backoff = Backoff(base_s=0.2, max_s=5.0)
    assert [backoff.ceiling(k) for k in (1, 2, 3)] == pytest.approx([0.2, 0.4, 0.8])
    assert backoff.ceiling(100_000) == 5.0


def test_outage_budget_counts_expected_waits() -> None:
    # Expected waits 0.5, 1, 2, 4, 5, 5, ... : 120 s of waiting needs 27 retries.
    backoff = Backoff(base_s=1.0, max_s=10.0)
    retries = backoff.attempts_within(120.0)
    expected = sum(backoff.expected_delay(k) for k in range(1, retries + 1))
    assert expected >= 120.0 > expected - backoff.expected_delay(retries)
    assert backoff.worst_case_s(retries) == pytest.approx(2 * expected)


def test_rejects_nonsense() -> None:
    with pytest.raises(ValueError, match="rate"):
        Backoff(rate=0.5)
