"""Reconciliation: uploads that can never trigger, or never did trigger, an execution.

The sidecar is the trigger, so an image whose sidecar never arrives starts nothing. And a
put whose process was killed between writing the object and recording its event leaves a
sidecar with no execution. Neither is lost: this report finds both, and ``requeue``
records the missing event so that the sidecar is processed.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from radstream.layout import INCOMING, SIDECAR_SUFFIX, Bucket
from radstream.local.executor import Executor, execution_id
from radstream.stages.ports import ObjectStore


@dataclass(frozen=True)
class Stray:
    """An upload that started no execution."""

    key: str
    age_s: float


@dataclass(frozen=True)
class Reconciliation:
    """Images without a sidecar, and sidecars without an execution."""

    orphan_images: list[Stray]
    unrouted_sidecars: list[Stray]


def reconcile(
    store: ObjectStore,
    executor: Executor,
    *,
    older_than_s: float = 60.0,
    now: float | None = None,
) -> Reconciliation:
    """Find strays under ``incoming/`` older than ``older_than_s`` seconds."""
    keys = store.list(Bucket.IMAGES, INCOMING)
    current = time.time() if now is None else now
    sidecars = [k for k in keys if k.lower().endswith(SIDECAR_SUFFIX)]
    stems = {k.rsplit(".", 1)[0] for k in sidecars}
    orphans, unrouted = [], []
    for key in keys:
        head = store.head(Bucket.IMAGES, key)
        if head is None or current - head.modified < older_than_s:
            continue
        age = round(current - head.modified, 1)
        if key in sidecars:
            if not executor.latest([execution_id(Bucket.IMAGES, key, head.etag)]):
                unrouted.append(Stray(key=key, age_s=age))
        elif key.rsplit(".", 1)[0] not in stems:
            orphans.append(Stray(key=key, age_s=age))
    return Reconciliation(orphan_images=orphans, unrouted_sidecars=unrouted)


def requeue(store: ObjectStore, executor: Executor, strays: list[Stray]) -> int:
    """Record the missing "object created" event of each unrouted sidecar."""
    count = 0
    for stray in strays:
        head = store.head(Bucket.IMAGES, stray.key)
        if head is not None:
            executor.object_created(head)
            count += 1
    return count
