"""Reconciliation: uploads that can never trigger an execution.

The sidecar is the trigger, so an image whose sidecar never arrives starts nothing. It is
not lost: this report finds it, so that an operator can re-send the sidecar or delete it.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from radstream.stages.ports import ObjectStore

_INCOMING = "incoming/"


@dataclass(frozen=True)
class OrphanImage:
    """An uploaded image with no sidecar beside it."""

    key: str
    age_s: float


def orphan_images(
    store: ObjectStore, *, older_than_s: float = 60.0, now: float | None = None
) -> list[OrphanImage]:
    """Images under ``incoming/`` older than ``older_than_s`` whose ``{stem}.json`` is absent."""
    keys = store.list("images", _INCOMING)
    sidecars = {k.rsplit(".", 1)[0] for k in keys if k.lower().endswith(".json")}
    current = time.time() if now is None else now
    orphans = []
    for key in keys:
        if key.lower().endswith(".json") or key.rsplit(".", 1)[0] in sidecars:
            continue
        head = store.head("images", key)
        if head is not None and current - head.modified >= older_than_s:
            orphans.append(OrphanImage(key=key, age_s=round(current - head.modified, 1)))
    return orphans
