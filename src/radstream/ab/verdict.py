"""From an interval to a verdict: ``b_better``, ``a_better``, ``same`` or ``inconclusive``.

The rules, in order (Chromium Pinpoint's three answers, with benchstat's minimum sample):

1. Too few blocks or studies for the interval to mean anything: ``inconclusive``, saying
   what is missing and how many more blocks per arm the rule needs.
2. The interval of the ratio b / a lies inside ``1 ± margin`` (default ±5%): ``same``. This
   comes before rule 3 on purpose: a difference that is real but smaller than the margin
   (say 1–3%) is, for an operator, no difference.
3. The interval excludes 1: the arm the metric's direction prefers wins (lower latency and
   cost, higher throughput and success rate).
4. Otherwise ``inconclusive``, with a rough estimate of the blocks per arm that would settle
   it: the interval's half-width shrinks like 1/√blocks, and it must shrink until it either
   clears 1 or fits inside the margin, whichever needs less, if the estimate held still.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from radstream.ab.model import Better, Verdict

DEFAULT_MARGIN = 0.05


@dataclass(frozen=True)
class Decision:
    """A verdict, the reason in words, and (when inconclusive) blocks per arm to add."""

    verdict: Verdict
    reason: str
    more_blocks_per_arm: int | None = None


def shortfall(
    *, rounds: int, min_rounds: int, studies: int | None = None, min_studies: int | None = None
) -> Decision | None:
    """The minimum-sample rule: an ``inconclusive`` decision if data are short, else None."""
    if rounds < min_rounds:
        return Decision(
            "inconclusive",
            f"too few blocks: {rounds} per arm, need at least {min_rounds}",
            min_rounds - rounds,
        )
    if studies is not None and min_studies is not None and studies < min_studies:
        per_block = max(1, studies // max(1, rounds))
        more = math.ceil((min_studies - studies) / per_block)
        return Decision(
            "inconclusive",
            f"too few studies: {studies} per arm, need at least {min_studies}",
            more,
        )
    return None


def more_blocks_needed(
    ratio_low: float, ratio_high: float, *, rounds: int, margin: float
) -> int | None:
    """Blocks per arm to add before an inconclusive interval would likely settle.

    None when no number of blocks would (a zero-width target).
    """
    centre = (ratio_low + ratio_high) / 2 - 1.0
    half = (ratio_high - ratio_low) / 2
    # Settling either way: clear "no difference" (half < |centre|) or fit the margin
    # (|centre| + half <= margin). The easier target is the larger allowed half-width.
    target = max(abs(centre), margin - abs(centre))
    if target <= 0 or half <= 0:
        return None
    needed = math.ceil(rounds * (half / target) ** 2)
    return max(1, needed - rounds)


def decide(
    ratio_low: float,
    ratio_high: float,
    *,
    better: Better,
    margin: float = DEFAULT_MARGIN,
    rounds: int,
    level: float = 0.95,
) -> Decision:
    """The verdict for a ratio interval (rules 2–4 above; apply :func:`shortfall` first)."""
    if not (math.isfinite(ratio_low) and math.isfinite(ratio_high)):
        return Decision("inconclusive", "no interval (a value of arm a is zero or missing)")
    pct = f"{level:.1%}".replace(".0%", "%")
    if 1.0 - margin <= ratio_low and ratio_high <= 1.0 + margin:
        return Decision(
            "same",
            f"b/a is within ±{margin:.0%} ({ratio_low:.3f}–{ratio_high:.3f}, {pct} interval)",
        )
    if ratio_low > 1.0 or ratio_high < 1.0:
        b_higher = ratio_low > 1.0
        b_wins = b_higher == (better == "higher")
        word = "higher" if b_higher else "lower"
        return Decision(
            "b_better" if b_wins else "a_better",
            f"b is {word} ({ratio_low:.3f}–{ratio_high:.3f} × a, {pct} interval excludes 1); "
            f"{better} is better",
        )
    more = more_blocks_needed(ratio_low, ratio_high, rounds=rounds, margin=margin)
    noun = "block" if more == 1 else "blocks"
    hint = f"; about {more} more {noun} per arm may settle it" if more is not None else ""
    return Decision(
        "inconclusive",
        f"interval {ratio_low:.3f}–{ratio_high:.3f} contains 1 and leaves ±{margin:.0%}{hint}",
        more,
    )
