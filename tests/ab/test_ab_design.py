"""The block order: balanced ABBA rounds, or seeded random rounds."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest

from radstream.ab import block_order, order_labels


def test_abba_alternates_rounds_forwards_and_backwards() -> None:
    slots = block_order(["a", "b"], 4)
    assert order_labels(slots) == list("abbaabba")
    assert [s.round for s in slots] == [0, 0, 1, 1, 2, 2, 3, 3]
    assert [s.position for s in slots] == list(range(8))


def test_abba_balances_mean_position_over_even_rounds() -> None:
    """Equal mean positions are what makes a linear drift cancel."""
    for arms in (["a", "b"], ["512", "1024", "1769", "3008"]):
        slots = block_order(arms, 6)
        means = {a: np.mean([s.position for s in slots if s.arm == a]) for a in arms}
        assert len(set(means.values())) == 1, means


def test_every_round_holds_every_arm_once() -> None:
    arms = ["x", "y", "z"]
    for scheme in ("abba", "random"):
        slots = block_order(arms, 5, scheme=scheme, seed=3)
        for r in range(5):
            assert sorted(s.arm for s in slots if s.round == r) == arms
        assert Counter(s.arm for s in slots) == dict.fromkeys(arms, 5)


def test_random_order_is_reproducible_from_the_seed_and_varies_with_it() -> None:
    one = order_labels(block_order(["a", "b"], 10, scheme="random", seed=1))
    again = order_labels(block_order(["a", "b"], 10, scheme="random", seed=1))
    other = order_labels(block_order(["a", "b"], 10, scheme="random", seed=2))
    assert one == again
    assert one != other


@pytest.mark.parametrize(
    ("arms", "blocks", "scheme"),
    [(["a"], 2, "abba"), (["a", "a"], 2, "abba"), (["a", "b"], 0, "abba"), (["a", "b"], 2, "zig")],
)
def test_bad_designs_are_refused(arms: list[str], blocks: int, scheme: str) -> None:
    with pytest.raises(ValueError):  # noqa: PT011 - several distinct messages
        block_order(arms, blocks, scheme=scheme)  # type: ignore[arg-type]
