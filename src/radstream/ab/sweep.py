"""A Lambda memory sweep summarised as AWS Lambda Power Tuning shows it.

The curve is cost per image against p95 latency, one point per memory size. Three picks:

- **cheapest meeting the SLO**: the lowest cost per image among sizes whose p95 is within the
  SLO (5 s by default, bench's p95 target); none if no size meets it;
- **fastest**: the lowest p95 (ties go to the cheaper);
- **balanced**: Power Tuning's "balanced" strategy, the lowest
  ``w × cost / max cost + (1 − w) × p95 / max p95`` with ``w = 0.5``.
"""

from __future__ import annotations

from collections.abc import Sequence

from radstream.ab.model import SweepPoint, SweepSummary

DEFAULT_SLO_P95_MS = 5000.0
BALANCED_WEIGHT = 0.5


def summarise_sweep(
    points: Sequence[SweepPoint],
    *,
    slo_p95_ms: float = DEFAULT_SLO_P95_MS,
    weight: float = BALANCED_WEIGHT,
) -> SweepSummary:
    """The three picks over the points of a sweep (memory sizes must be distinct)."""
    if not points:
        raise ValueError("a sweep needs at least one memory size")
    sizes = [p.memory_mb for p in points]
    if len(set(sizes)) != len(sizes):
        raise ValueError(f"memory sizes must be distinct, got {sizes}")
    if not 0.0 <= weight <= 1.0:
        raise ValueError(f"weight must be in [0, 1], got {weight}")
    ordered = sorted(points, key=lambda p: p.memory_mb)
    meeting = [p for p in ordered if p.p95_ms <= slo_p95_ms]
    cheapest = min(meeting, key=lambda p: (p.cost_per_image_usd, p.p95_ms)) if meeting else None
    fastest = min(ordered, key=lambda p: (p.p95_ms, p.cost_per_image_usd))
    max_cost = max(p.cost_per_image_usd for p in ordered) or 1.0
    max_p95 = max(p.p95_ms for p in ordered) or 1.0

    def score(p: SweepPoint) -> tuple[float, float]:
        value = weight * p.cost_per_image_usd / max_cost + (1 - weight) * p.p95_ms / max_p95
        return value, p.cost_per_image_usd

    balanced = min(ordered, key=score)
    reason = (
        f"cheapest within p95 <= {slo_p95_ms:g} ms: "
        + (f"{cheapest.memory_mb} MB" if cheapest else "none meets the SLO")
        + f"; fastest: {fastest.memory_mb} MB; balanced (weight {weight:g}): {balanced.memory_mb} MB"
    )
    return SweepSummary(
        points=ordered,
        slo_p95_ms=slo_p95_ms,
        cheapest_meeting_slo=cheapest.memory_mb if cheapest else None,
        fastest=fastest.memory_mb,
        balanced=balanced.memory_mb,
        balanced_weight=weight,
        reason=reason,
    )
