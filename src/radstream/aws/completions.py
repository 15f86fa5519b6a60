"""Completion notifications from a deployed stack: outcome objects seen by LISTing S3.

The local engine stamps each outcome object with the moment it was created, and
:class:`~radstream.local.completions.CompletionWatcher` tails those stamps. A deployed stack
has no such log that a client can tail cheaply, so this watcher LISTs the results bucket's
``results/`` and ``failed/`` prefixes and stamps an outcome with the time of the LIST that
first saw it.

Latencies measured with it are therefore **upper bounds**: an outcome is reported late by at
most one ``min_interval_s`` plus one LIST round trip (plus however long the caller waits
between polls). S3's own ``LastModified`` is not used instead: on AWS it has a resolution of
one second, coarser than the bound above for any sensible interval, and it is stamped by
S3's clock, not this machine's, against which send times are measured.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from radstream.aws.s3_store import S3ObjectStore
from radstream.layout import FAILURE_OBJECTS, RESULT_OBJECTS, Bucket
from radstream.stages.completions import Completion, completion_of

# Where outcome objects land: results and failures, both in the results bucket.
_PREFIXES = (RESULT_OBJECTS.prefix, FAILURE_OBJECTS.prefix)


class S3CompletionWatcher:
    """Reports outcome objects that appear in the results bucket, once each.

    Objects already there when the watcher is created belong to earlier runs and are not
    reported unless rewritten: an outcome is known by key *and* ETag (each outcome names its
    execution, so a re-upload's outcome under the same key has a new ETag). The driver polls every few milliseconds, but S3 bills every LIST, so a poll
    LISTs only when ``min_interval_s`` has passed since the last LIST, and otherwise returns
    nothing. ``study_prefix`` narrows the LISTs to outcome keys of studies whose id starts
    with it (a benchmark's run tag), so that each LIST pages through this run's objects
    rather than the bucket's whole history.
    """

    def __init__(
        self,
        store: S3ObjectStore,
        *,
        min_interval_s: float = 0.25,
        clock: Callable[[], float] = time.time,
        study_prefix: str = "",
    ) -> None:
        self._store = store
        self._min_interval_s = min_interval_s
        self._clock = clock
        self._study_prefix = study_prefix
        self.store = store
        self._seen: dict[str, str] = {}  # outcome key -> ETag already reported (or old)
        for prefix in _PREFIXES:
            self._seen.update(self._list(prefix))
        self._last_list = clock()

    def poll(self) -> list[Completion]:
        """Outcomes first seen by this poll's LISTs; [] when it is too soon to LIST again."""
        now = self._clock()
        # A clock that stepped backwards must not silence the watcher until it catches up.
        if 0.0 <= now - self._last_list < self._min_interval_s:
            return []
        found: list[Completion] = []
        for prefix in _PREFIXES:
            keys = self._list(prefix)
            # Stamped after the LIST returns: the object existed by then, so the stamp is
            # never early, only late.
            seen_at = self._clock()
            for key, etag in keys.items():
                if self._seen.get(key) == etag:
                    continue
                self._seen[key] = etag
                completion = completion_of(key, seen_at)
                if completion is not None:
                    found.append(completion)
        self._last_list = now
        return found

    def _list(self, prefix: str) -> dict[str, str]:
        return self._store.etags(Bucket.RESULTS, f"{prefix}{self._study_prefix}")
