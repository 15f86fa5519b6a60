"""What happened to each upload, read from the pipeline's public surfaces.

Success is decided by the result object existing, failure by the failure object, never by
execution status alone. An upload with neither is ``lost``.
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass

import numpy as np

from radstream.local.executor import Executor, execution_id
from radstream.stages.ports import ObjectInfo, ObjectStore
from radstream.stages.store import RESULTS_BUCKET

PERCENTILES = (50.0, 90.0, 95.0, 99.0, 99.9)


@dataclass(frozen=True)
class Outcome:
    """The terminal outcome of one upload."""

    sidecar_key: str
    status: str  # "succeeded", "failed" or "lost"
    error_code: str | None
    created_at: float | None
    finished_at: float | None

    @property
    def latency_s(self) -> float | None:
        """Upload (sidecar created) to outcome recorded, in seconds."""
        if self.created_at is None or self.finished_at is None:
            return None
        return self.finished_at - self.created_at


def collect_outcomes(
    executor: Executor, store: ObjectStore, uploads: list[ObjectInfo]
) -> list[Outcome]:
    """One :class:`Outcome` per uploaded sidecar, checked against the stored objects."""
    rows = executor.latest([execution_id(u.bucket, u.key, u.etag) for u in uploads])
    outcomes = []
    for info in uploads:
        row = rows.get(execution_id(info.bucket, info.key, info.etag))
        status, code = "lost", None
        if row is not None and row["state"] in ("succeeded", "failed") and row["outcome_key"]:
            body = _read_json(store, row["outcome_key"])
            if body is not None and row["state"] == "succeeded" and "probabilities" in body:
                status = "succeeded"
            elif body is not None and row["state"] == "failed":
                error = body.get("error")
                if isinstance(error, dict):
                    status, code = "failed", str(error.get("code"))
        outcomes.append(
            Outcome(
                sidecar_key=info.key,
                status=status,
                error_code=code,
                created_at=row["created_at"] if row is not None else None,
                finished_at=row["finished_at"] if row is not None else None,
            )
        )
    return outcomes


def _read_json(store: ObjectStore, key: str) -> dict[str, object] | None:
    try:
        value = json.loads(store.get(RESULTS_BUCKET, key))
    except Exception:  # a missing or unreadable outcome object means "not delivered"
        return None
    return value if isinstance(value, dict) else None


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
