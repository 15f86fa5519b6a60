"""Design of an A/B run: which arm runs in which block, in what order.

The run is cut into *rounds*; every round holds one block of every arm, so drift on a shared
machine (another job starting, a thermal throttle, a cache warming) falls on all arms alike
and the analysis can compare arms round by round (see :mod:`radstream.ab.bootstrap`).

Two schemes:

- ``"abba"``: rounds alternate the arms' order forwards and backwards (AB, BA, AB, BA …;
  with three arms ABC, CBA, …). Over an even number of rounds every arm has the same mean
  position, so a linear drift cancels exactly.
- ``"random"``: each round is a random permutation, from ``seed``. Random order protects
  against periodic drift that happens to line up with ABBA (for example a cron job every
  other block), at the price of balancing a linear drift only on average.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np

Scheme = Literal["abba", "random"]


@dataclass(frozen=True)
class Slot:
    """One block of the run: its place in the run, its round, and the arm it runs."""

    position: int
    round: int
    arm: str


def block_order(
    arms: Sequence[str], blocks_per_arm: int, *, scheme: Scheme = "abba", seed: int = 0
) -> list[Slot]:
    """The blocks of a run in the order they run: ``blocks_per_arm`` rounds of every arm.

    Raises ``ValueError`` for fewer than two arms, a repeated arm, or no blocks.
    """
    names = list(arms)
    if len(names) < 2:
        raise ValueError(f"an experiment needs at least two arms, got {names}")
    if len(set(names)) != len(names):
        raise ValueError(f"arm names must be distinct, got {names}")
    if blocks_per_arm < 1:
        raise ValueError(f"blocks_per_arm must be at least 1, got {blocks_per_arm}")
    if scheme not in ("abba", "random"):
        raise ValueError(f"scheme must be 'abba' or 'random', got {scheme!r}")
    rng = np.random.default_rng(seed)
    slots: list[Slot] = []
    for r in range(blocks_per_arm):
        if scheme == "abba":
            in_round = names if r % 2 == 0 else names[::-1]
        else:
            in_round = [names[i] for i in rng.permutation(len(names))]
        for arm in in_round:
            slots.append(Slot(position=len(slots), round=r, arm=arm))
    return slots


def order_labels(slots: Sequence[Slot]) -> list[str]:
    """The arm of each block in run order (the ``order`` field of the JSON)."""
    return [s.arm for s in sorted(slots, key=lambda s: s.position)]
