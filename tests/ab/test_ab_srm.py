"""Sample-ratio mismatch: chi-square of measured against planned counts, flagged at p < 0.001."""

from __future__ import annotations

import pytest
from scipy import stats

from radstream.ab import srm_check


def test_matching_counts_are_no_mismatch() -> None:
    r = srm_check({"a": 100, "b": 100}, {"a": 98, "b": 97})
    assert not r.mismatch
    assert r.p_value is not None
    assert r.p_value > 0.5


def test_a_lost_share_is_flagged() -> None:
    r = srm_check({"a": 500, "b": 500}, {"a": 500, "b": 400})
    assert r.mismatch
    assert r.p_value is not None
    assert r.p_value < 0.001
    assert "not treated alike" in r.reason


def test_uses_planned_shares_and_the_conventional_threshold() -> None:
    # Planned 2:1; measured exactly 2:1 is fine, and the statistic is Pearson's chi-square.
    assert not srm_check({"a": 200, "b": 100}, {"a": 200, "b": 100}).mismatch
    r = srm_check({"a": 100, "b": 100}, {"a": 120, "b": 80})
    expected = stats.chisquare([120, 80], [100, 100])
    assert r.chi2 == pytest.approx(expected.statistic)
    assert r.p_value == pytest.approx(expected.pvalue)
    assert r.threshold == 0.001
    assert r.p_value is not None
    assert r.p_value > 0.001  # p ≈ 0.005: notable, but not an SRM at the conventional level
    assert not r.mismatch


def test_nothing_measured_is_a_mismatch() -> None:
    r = srm_check({"a": 10, "b": 10}, {})
    assert r.mismatch
    assert r.p_value is None


def test_bad_plans_are_refused() -> None:
    with pytest.raises(ValueError, match="must plan"):
        srm_check({"a": 10, "b": 0}, {"a": 10})
    with pytest.raises(ValueError, match="not planned"):
        srm_check({"a": 10, "b": 10}, {"c": 1})
