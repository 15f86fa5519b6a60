"""A summary of what happened to uploads: counts by outcome, latency percentiles, throughput.

The outcomes themselves (:class:`~radstream.stages.completions.Outcome`) are read by each
engine: :func:`radstream.local.outcomes.collect_outcomes` locally,
:func:`radstream.aws.outcomes.wait_for_outcomes` on a stack.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

import numpy as np

from radstream.stages.completions import Outcome

PERCENTILES = (50.0, 90.0, 95.0, 99.0, 99.9)


def percentiles_ms(latencies_s: list[float]) -> dict[str, float | None]:
    """Exact percentiles (linear interpolation over all samples) and max, in ms."""
    keys = [f"p{str(p).removesuffix('.0').replace('.', '_')}_ms" for p in PERCENTILES]
    if not latencies_s:
        return dict.fromkeys([*keys, "max_ms"])
    values = np.asarray(latencies_s) * 1000.0
    out: dict[str, float | None] = {
        k: round(float(v), 1) for k, v in zip(keys, np.percentile(values, PERCENTILES), strict=True)
    }
    out["max_ms"] = round(float(values.max()), 1)
    return out


@dataclass(frozen=True)
class OutcomeSummary:
    """Counts by outcome, failures by code, latency percentiles and throughput."""

    studies: int
    succeeded: int
    failed: int
    lost: int
    failures_by_code: dict[str, int]
    latency_ms: dict[str, float | None]
    throughput_per_s: float | None


def summarise(outcomes: list[Outcome]) -> OutcomeSummary:
    """Aggregate outcomes.

    Latency and throughput are over successful studies: a failure is not work done, and a
    study that fails by design after a bounded wait (``IMAGE_MISSING``) would otherwise
    stretch the time window. Throughput = successes / (last finish - first upload).
    """
    done = [o for o in outcomes if o.status == "succeeded"]
    latencies = [o.latency_s for o in done if o.latency_s is not None]
    throughput = None
    created = [o.created_at for o in done if o.created_at is not None]
    finished = [o.finished_at for o in done if o.finished_at is not None]
    if len(done) >= 2 and created and finished and max(finished) > min(created):
        throughput = round(len(done) / (max(finished) - min(created)), 3)
    return OutcomeSummary(
        studies=len(outcomes),
        succeeded=sum(o.status == "succeeded" for o in outcomes),
        failed=sum(o.status == "failed" for o in outcomes),
        lost=sum(o.status == "lost" for o in outcomes),
        failures_by_code=dict(
            sorted(Counter(o.error_code for o in outcomes if o.error_code).items())
        ),
        latency_ms=percentiles_ms(latencies),
        throughput_per_s=throughput,
    )
