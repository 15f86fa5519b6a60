"""A circuit breaker for the model endpoint: fail fast while it is down, recover by itself.

While the endpoint keeps failing, every further request would wait for its own timeouts
and retries before failing anyway; the breaker turns those into an immediate
``ModelUnavailable`` (transient, so the executor retries the study later with backoff).

States:

* **closed**: calls pass; consecutive failures are counted and a success resets the count.
  ``failure_threshold`` failures in a row open the circuit.
* **open**: ``before_call`` raises ``ModelUnavailable`` without touching the network, until
  ``reset_after_s`` have passed since the circuit opened.
* **half-open**: one trial call is let through. Its success closes the circuit; its failure
  opens it again for another ``reset_after_s``. Other calls meanwhile fail fast. A trial
  whose outcome is never recorded (its caller died) is replaced by a new trial after
  another ``reset_after_s``, so the breaker cannot stay stuck half-open.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Literal

from radstream.errors import ModelUnavailable

CircuitState = Literal["closed", "open", "half-open"]


class CircuitBreaker:
    """Consecutive-failure circuit breaker; safe to share between threads."""

    def __init__(
        self,
        failure_threshold: int = 5,
        reset_after_s: float = 10.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        """``failure_threshold`` failures in a row open the circuit for ``reset_after_s``."""
        if isinstance(failure_threshold, bool) or failure_threshold < 1:
            raise ValueError(f"failure_threshold must be >= 1, got {failure_threshold!r}")
        if not reset_after_s > 0:
            raise ValueError(f"reset_after_s must be > 0, got {reset_after_s!r}")
        self._threshold = int(failure_threshold)
        self._reset_after_s = float(reset_after_s)
        self._clock = clock
        self._lock = threading.Lock()
        self._state: CircuitState = "closed"
        self._failures = 0  # consecutive failures while closed
        self._opened_failures = 0  # the count that opened the circuit, for the message
        self._opened_at = 0.0
        self._trial_started_at = 0.0

    @property
    def failure_threshold(self) -> int:
        """Failures in a row that open the circuit."""
        return self._threshold

    @property
    def reset_after_s(self) -> float:
        """Seconds the circuit stays open before one trial call is let through."""
        return self._reset_after_s

    @property
    def state(self) -> CircuitState:
        """``closed``, ``open`` or ``half-open``, as of the last call (no clock reading)."""
        with self._lock:
            return self._state

    @property
    def consecutive_failures(self) -> int:
        """Failures recorded in a row since the last success."""
        with self._lock:
            return self._failures

    def before_call(self) -> None:
        """Let a call through, or raise ``ModelUnavailable`` at once while the circuit is open.

        After ``reset_after_s`` in the open state, the first caller becomes the half-open
        trial; the caller must then report its outcome with ``record_success`` or
        ``record_failure``.
        """
        with self._lock:
            if self._state == "closed":
                return
            now = self._clock()
            if self._state == "open":
                waited = now - self._opened_at
                if waited >= self._reset_after_s:
                    self._state = "half-open"
                    self._trial_started_at = now
                    return
                raise self._open_error(self._reset_after_s - waited)
            # half-open: one trial at a time; replace a trial that never reported back.
            if now - self._trial_started_at >= self._reset_after_s:
                self._trial_started_at = now
                return
            raise self._open_error(self._reset_after_s - (now - self._trial_started_at))

    def record_success(self) -> None:
        """The endpoint answered: close the circuit and forget earlier failures."""
        with self._lock:
            self._state = "closed"
            self._failures = 0

    def record_failure(self) -> None:
        """The endpoint failed (unreachable, timed out, 5xx): count it, open if due."""
        with self._lock:
            self._failures += 1
            if self._state == "half-open" or (
                self._state == "closed" and self._failures >= self._threshold
            ):
                self._state = "open"
                self._opened_at = self._clock()
                self._opened_failures = self._failures
            elif self._state == "open":
                # A call that was let through before the circuit opened failed late.
                self._opened_failures = self._failures

    def reset(self) -> None:
        """Close the circuit and clear the failure count (for tests and operators)."""
        self.record_success()

    def _open_error(self, remaining_s: float) -> ModelUnavailable:
        remaining = max(0.0, remaining_s)
        return ModelUnavailable(
            f"circuit open: the model endpoint failed {self._opened_failures} times in a row; "
            f"retrying after {remaining:.1f} s",
            circuit="open",
            consecutive_failures=self._opened_failures,
            retry_after_s=round(remaining, 3),
        )

    def __repr__(self) -> str:
        return (
            f"CircuitBreaker(state={self.state!r}, failures={self.consecutive_failures}, "
            f"threshold={self._threshold}, reset_after_s={self._reset_after_s})"
        )
