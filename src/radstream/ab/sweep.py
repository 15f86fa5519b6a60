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
from dataclasses import dataclass

import numpy as np

from radstream.ab.model import SweepPoint, SweepSummary
from radstream.ab.projection import lambda_cost_usd, project_stage_s
from radstream.pricing import Pricing

DEFAULT_SLO_P95_MS = 5000.0
BALANCED_WEIGHT = 0.5


@dataclass(frozen=True)
class StageTiming:
    """One Lambda stage invocation as measured here: its CPU time and its whole duration."""

    cpu_s: float
    wall_s: float


def project_memory(
    studies: Sequence[Sequence[StageTiming]],
    latencies_ms: Sequence[float],
    memory_mb: int,
    pricing: Pricing,
    *,
    succeeded: int | None = None,
    other_cost_per_image_usd: float = 0.0,
    full_vcpu_mb: float = 1769.0,
) -> SweepPoint:
    """The projected sweep point of one memory size, from measured per-study stage timings.

    ``studies[i]`` lists study ``i``'s Lambda stage invocations and ``latencies_ms[i]`` its
    measured end-to-end latency. Each invocation is stretched by the CPU share
    (:func:`~radstream.ab.projection.project_stage_s`); the study's latency grows by the sum
    of those stretches, and the Lambda bill is that of the stretched durations at
    ``memory_mb``, per succeeded image (default: every study), plus what the rest of the
    pipeline costs per image (memory does not change it).
    """
    if len(studies) != len(latencies_ms) or not studies:
        raise ValueError("one list of stage timings per latency, and at least one study")
    durations: list[float] = []
    projected: list[float] = []
    for stages, latency in zip(studies, latencies_ms, strict=True):
        stretched = [
            project_stage_s(t.cpu_s, memory_mb, wall_s=t.wall_s, full_vcpu_mb=full_vcpu_mb)
            for t in stages
        ]
        durations += stretched
        extra_s = sum(new - t.wall_s for new, t in zip(stretched, stages, strict=True))
        projected.append(latency + 1000.0 * extra_s)
    images = len(studies) if succeeded is None else succeeded
    if images <= 0:
        raise ValueError("cost per image needs at least one succeeded image")
    cost = lambda_cost_usd(durations, memory_mb, pricing) / images + other_cost_per_image_usd
    return SweepPoint(
        memory_mb=memory_mb,
        p95_ms=float(np.quantile(projected, 0.95)),
        cost_per_image_usd=cost,
        projected=True,
    )


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
