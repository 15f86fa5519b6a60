"""What happened to each upload to the local engine, read from its public surfaces.

Success is decided by the result object existing, failure by the failure object, never by
execution status alone. An upload with neither is ``lost``.
"""

from __future__ import annotations

import json

from radstream.layout import Bucket
from radstream.local.executor import Executor, execution_id
from radstream.stages.completions import Outcome, OutcomeStatus
from radstream.stages.ports import ObjectInfo, ObjectStore


def collect_outcomes(
    executor: Executor, store: ObjectStore, uploads: list[ObjectInfo]
) -> list[Outcome]:
    """One :class:`Outcome` per uploaded sidecar, checked against the stored objects."""
    rows = executor.latest([execution_id(u.bucket, u.key, u.etag) for u in uploads])
    outcomes = []
    for info in uploads:
        row = rows.get(execution_id(info.bucket, info.key, info.etag))
        status: OutcomeStatus = "lost"
        code = None
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
                outcome_key=row["outcome_key"] if status != "lost" and row is not None else None,
            )
        )
    return outcomes


def _read_json(store: ObjectStore, key: str) -> dict[str, object] | None:
    try:
        value = json.loads(store.get(Bucket.RESULTS, key))
    except Exception:  # a missing or unreadable outcome object means "not delivered"
        return None
    return value if isinstance(value, dict) else None
