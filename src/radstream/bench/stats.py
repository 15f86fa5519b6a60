"""Statistics of a driven run: latency from intended send time, lateness, steady throughput."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from radstream.bench.outcomes import percentiles_ms
from radstream.bench.report import LateSends, OutcomeCounts, ThroughputWindow, TimelinePoint
from radstream.loadgen.driver import LATE_AFTER_S, DriveResult, Sent

STABILITY_WINDOWS = 4
STABILITY_TOLERANCE = 0.10


def latency_ms(run: DriveResult, sent: list[Sent]) -> tuple[list[float], int]:
    """End-to-end latency of each study, from when it was *due* to its outcome.

    A study with no outcome by the end of the run is not dropped (that would hide exactly
    the tail): it counts with its time so far, a lower bound. Returns the latencies and how
    many of them are such lower bounds.
    """
    end = max([run.started_at, *(t + run.started_at for t, _, _ in run.timeline)])
    values, censored = [], 0
    for s in sent:
        completion = run.completions.get(s.sidecar_key)
        if completion is None:
            censored += 1
            values.append((end - s.intended) * 1000.0)
        else:
            values.append((completion.at - s.intended) * 1000.0)
    return values, censored


def latency_summary(values_ms: list[float]) -> dict[str, float | None]:
    """p50, p90, p95, p99, p99.9 and max, exact over all samples (linear interpolation)."""
    raw = percentiles_ms([v / 1000.0 for v in values_ms])
    return {
        "p50_ms": raw["p50_ms"],
        "p90_ms": raw["p90_ms"],
        "p95_ms": raw["p95_ms"],
        "p99_ms": raw["p99_ms"],
        "p999_ms": raw["p99_9_ms"],
        "max_ms": raw["max_ms"],
    }


def late_sends(sent: list[Sent]) -> LateSends:
    """How many sends went out more than 5 ms after they were due, and by how much."""
    late = [s.lateness_s * 1000.0 for s in sent if s.lateness_s > LATE_AFTER_S]
    return LateSends(
        count=len(late),
        max_ms=round(max(late), 1) if late else 0.0,
        mean_ms=round(float(np.mean(late)), 1) if late else 0.0,
    )


@dataclass(frozen=True)
class Throughput:
    """Completions per minute over the steady window, and whether it held steady."""

    per_min: float | None
    window_s: float | None
    stable: bool
    windows: list[ThroughputWindow]


def steady_throughput(run: DriveResult, measured: list[Sent]) -> Throughput:
    """Rate over the steady window: from the later of the first measured study's due time
    and the last warm-up outcome, to the last measured outcome.

    Warm-up studies are excluded, and so is the time the pipeline spent on them. For stability the completions are cut into equal-count
    windows, each timed from the previous window's last completion to its own (so a
    constant rate gives equal windows, with no quantisation at window edges); the run is
    ``stable`` when the last three windows' rates are within 10% of their mean.
    """
    # Work done is results: a pipeline that fails fast must not look fast.
    done = sorted(
        c.at for s in measured if (c := run.completions.get(s.sidecar_key)) and c.kind == "result"
    )
    if len(done) < 2:
        return Throughput(None, None, False, [])
    warm_done = [
        run.completions[s.sidecar_key].at
        for s in run.sent
        if s.warmup and s.sidecar_key in run.completions
    ]
    start = max([min(s.intended for s in measured), *warm_done])
    done = [t for t in done if t > start]
    if len(done) < 2:
        return Throughput(None, None, False, [])
    span = done[-1] - start
    if span <= 0:
        return Throughput(None, None, False, [])
    ends = [
        done[round(len(done) * (i + 1) / STABILITY_WINDOWS) - 1] for i in range(STABILITY_WINDOWS)
    ]
    counts = np.diff(
        [0, *[round(len(done) * (i + 1) / STABILITY_WINDOWS) for i in range(STABILITY_WINDOWS)]]
    )
    windows = []
    previous = start
    for end, count in zip(ends, counts, strict=True):
        width = end - previous
        rate = 60.0 * count / width if width > 0 else 0.0
        windows.append(ThroughputWindow(t_s=round(end - start, 3), per_min=round(rate, 2)))
        previous = end
    tail = np.asarray([w.per_min for w in windows[-3:]])
    stable = bool(
        tail.mean() > 0 and (tail.max() - tail.min()) / tail.mean() <= STABILITY_TOLERANCE
    )
    return Throughput(round(60.0 * len(done) / span, 2), round(span, 3), stable, windows)


def outcome_counts(
    run: DriveResult, measured: list[Sent], *, planned_valid: int, planned_invalid: int
) -> OutcomeCounts:
    """Success rate over valid studies; injected invalid studies reported on their own.

    Denominators are the studies *planned*, so a study the run never got to send (a closed
    loop that timed out) counts as lost rather than vanishing.
    """
    valid = [s for s in measured if s.expected_code is None]
    invalid = [s for s in measured if s.expected_code is not None]
    kinds = {s.sidecar_key: run.completions.get(s.sidecar_key) for s in measured}
    succeeded = sum(1 for s in valid if (c := kinds[s.sidecar_key]) and c.kind == "result")
    failed = sum(1 for s in valid if (c := kinds[s.sidecar_key]) and c.kind == "failure")
    rejected = sum(1 for s in invalid if (c := kinds[s.sidecar_key]) and c.kind == "failure")
    return OutcomeCounts(
        valid=planned_valid,
        not_sent=planned_valid + planned_invalid - len(measured),
        succeeded=succeeded,
        failed=failed,
        lost=planned_valid - succeeded - failed,
        success_rate=succeeded / planned_valid if planned_valid else None,
        invalid_injected=planned_invalid,
        invalid_rejected=rejected,
        invalid_accepted_or_lost=planned_invalid - rejected,
    )


def timeline_series(run: DriveResult) -> list[TimelinePoint]:
    """Cumulative sends and completions over time, and the queue depth between them."""
    return [
        TimelinePoint(t_s=round(t, 3), sent=sent, completed=done, in_flight=max(0, sent - done))
        for t, sent, done in run.timeline
    ]
