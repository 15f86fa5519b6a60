"""Lease renewal beside a running stage: a takeover means the worker is really gone.

A stage can run longer than a lease (a large image, a slow endpoint). Renewing only
between stages would then let a peer take the execution over from a live worker and run
the same stage again, and count that as a worker death. The :class:`LeaseKeeper` renews
the lease from a thread, on its own database connection, every third of a lease while the
worker holds it; the decoders and the model release the GIL, so the thread keeps running
during their work. Only a worker that is dead, or frozen as a whole, loses its lease.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Callable
from types import TracebackType

from radstream.logs import get_logger

logger = get_logger(__name__)


class LeaseKeeper:
    """Call ``renew`` every ``interval_s`` from a thread until stopped or the lease is lost.

    ``renew`` returns False when the lease was lost (another worker owns the execution):
    :attr:`lost` then turns True and the thread ends. A database that cannot be written
    (disk full) is logged and retried at the next tick; the lease may then run out.
    """

    def __init__(self, renew: Callable[[], bool], interval_s: float) -> None:
        self._renew = renew
        self._interval_s = interval_s
        self._stop = threading.Event()
        self._lost = threading.Event()
        self._thread = threading.Thread(target=self._run, name="lease-keeper", daemon=True)

    @property
    def lost(self) -> bool:
        """True once a renewal found the lease owned by someone else."""
        return self._lost.is_set()

    def _run(self) -> None:
        while not self._stop.wait(self._interval_s):
            try:
                if not self._renew():
                    self._lost.set()
                    return
            except sqlite3.Error as exc:
                logger.warning("could not renew the lease: %s", exc)

    def __enter__(self) -> LeaseKeeper:
        self._thread.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._stop.set()
        self._thread.join()
