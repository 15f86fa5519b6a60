"""Simulated A/B runs for the tests: lognormal latencies in blocks, with drift between blocks.

The model is a shared machine: every block has its own slowdown factor (a random
``exp(N(0, drift_sd))`` plus a linear trend over the run), which scales that block's
latencies and cost and divides its throughput. Arm ``b`` may be ``slow`` times slower.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from radstream.ab import BlockData, block_order


def simulate(
    rng: np.random.Generator,
    *,
    rounds: int = 6,
    studies: int = 20,
    slow: float = 1.0,
    drift_sd: float = 0.05,
    trend: float = 0.06,
    sigma: float = 0.35,
    median_ms: float = 1500.0,
    arms: Sequence[str] = ("a", "b"),
    slow_arms: Sequence[str] = ("b",),
    success_p: float = 0.995,
) -> list[BlockData]:
    """One simulated run, blocks in ABBA order."""
    slots = block_order(arms, rounds)
    drift = np.exp(rng.normal(0.0, drift_sd, len(slots)) + np.linspace(0.0, trend, len(slots)))
    blocks = []
    for slot, factor in zip(slots, drift, strict=True):
        f = float(factor) * (slow if slot.arm in slow_arms else 1.0)
        latencies = median_ms * f * rng.lognormal(0.0, sigma, studies)
        succeeded = int(rng.binomial(studies, success_p))
        blocks.append(
            BlockData(
                position=slot.position,
                round=slot.round,
                arm=slot.arm,
                latencies_ms=[float(v) for v in latencies],
                throughput_per_min=40.0 / f * float(np.exp(rng.normal(0.0, 0.02))),
                cost_per_image_usd=1e-4 * f * float(np.exp(rng.normal(0.0, 0.02))),
                planned=studies,
                measured=studies,
                valid=studies,
                succeeded=succeeded,
            )
        )
    return blocks
