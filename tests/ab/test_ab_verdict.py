"""Verdict rules: margin first, then direction, then inconclusive with a block estimate."""

from __future__ import annotations

import pytest

from radstream.ab.verdict import decide, more_blocks_needed, shortfall


def test_interval_inside_margin_is_same_even_when_it_excludes_one() -> None:
    d = decide(1.01, 1.03, better="lower", rounds=6)
    assert d.verdict == "same"
    assert d.more_blocks_per_arm is None


@pytest.mark.parametrize(
    ("low", "high", "better", "verdict"),
    [
        (1.10, 1.40, "lower", "a_better"),  # b slower / dearer
        (0.60, 0.90, "lower", "b_better"),
        (1.10, 1.40, "higher", "b_better"),  # b more throughput
        (0.60, 0.90, "higher", "a_better"),
    ],
)
def test_direction_decides_the_winner(low: float, high: float, better: str, verdict: str) -> None:
    assert decide(low, high, better=better, rounds=6).verdict == verdict  # type: ignore[arg-type]


def test_margin_is_a_parameter() -> None:
    assert decide(0.92, 1.08, better="lower", rounds=6).verdict == "inconclusive"
    assert decide(0.92, 1.08, better="lower", rounds=6, margin=0.10).verdict == "same"


def test_inconclusive_estimates_more_blocks() -> None:
    d = decide(0.90, 1.20, better="lower", rounds=6)
    assert d.verdict == "inconclusive"
    # centre +5%, half-width 15%: the easier target is a half-width of 5%, i.e. 9x the blocks.
    assert d.more_blocks_per_arm == 6 * 9 - 6
    assert "more blocks" in d.reason


def test_more_blocks_is_none_without_a_reachable_target() -> None:
    assert more_blocks_needed(1.0, 1.0, rounds=6, margin=0.05) is None
    assert more_blocks_needed(0.9, 1.1, rounds=6, margin=0.0) is None


def test_non_finite_interval_is_inconclusive() -> None:
    assert decide(float("nan"), 1.0, better="lower", rounds=6).verdict == "inconclusive"


def test_minimum_sample_rule() -> None:
    few_blocks = shortfall(rounds=2, min_rounds=4)
    assert few_blocks is not None
    assert few_blocks.verdict == "inconclusive"
    assert few_blocks.more_blocks_per_arm == 2
    assert "too few blocks" in few_blocks.reason
    few_studies = shortfall(rounds=4, min_rounds=4, studies=40, min_studies=100)
    assert few_studies is not None
    assert "too few studies" in few_studies.reason
    assert few_studies.more_blocks_per_arm == 6  # 10 studies per block, 60 short
    assert shortfall(rounds=4, min_rounds=4, studies=100, min_studies=100) is None
