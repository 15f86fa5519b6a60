"""One exponential backoff with full jitter, shared by every retrier in RadStream.

The local executor, the Step Functions retriers rendered into ASL, the KServe client and
the Kinesis producer all wait with this one rule, so the two engines cannot disagree:

    ceiling(k) = min(max_s, base_s * rate ** (k - 1))      for retry number k (1-based)
    delay(k)   = ceiling(k) * u,   u uniform in [0, 1)      ("full jitter")

Full jitter is what AWS Step Functions does with ``"JitterStrategy": "FULL"`` (a random
wait between 0 and the computed interval), and what AWS's architecture blog recommends for
many clients that failed together. Its mean wait is half the ceiling, so a retry budget
measured in time (an endpoint outage) is spent on *expected* waits, not on ceilings; see
:meth:`Backoff.attempts_within`.

Randomness and the clock are injected (``rng``), so tests can pin them.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass

Random = Callable[[], float]
"""A source of uniform numbers in [0, 1): ``random.random`` or a seeded ``Random().random``."""

# The exponent is capped: self-bounded waits retry without an attempt limit, and
# rate ** 1024 would overflow long after the delay stopped growing anyway.
_MAX_EXPONENT = 64


@dataclass(frozen=True)
class Backoff:
    """Exponential backoff with full jitter (see the module docstring for the rule)."""

    base_s: float = 0.2
    max_s: float = 5.0
    rate: float = 2.0

    def __post_init__(self) -> None:
        if not self.base_s >= 0 or not self.max_s >= 0 or not self.rate >= 1:
            raise ValueError(f"backoff needs base_s >= 0, max_s >= 0 and rate >= 1, got {self!r}")

    def ceiling(self, retry: int) -> float:
        """The longest wait before retry number ``retry`` (1-based)."""
        exponent = min(max(retry, 1) - 1, _MAX_EXPONENT)
        return min(self.max_s, self.base_s * self.rate**exponent)

    def delay(self, retry: int, rng: Random = random.random) -> float:
        """A wait before retry number ``retry``: uniform in ``[0, ceiling(retry))``."""
        return self.ceiling(retry) * rng()

    def expected_delay(self, retry: int) -> float:
        """The mean wait before retry number ``retry`` (half the ceiling, under full jitter)."""
        return self.ceiling(retry) / 2.0

    def attempts_within(self, budget_s: float) -> int:
        """How many retries fit into ``budget_s`` seconds of waiting, on average.

        Used where retries can only be counted, not timed (Step Functions' ``MaxAttempts``):
        the count whose expected total wait first reaches the budget, so an outage budget
        lasts about as long on AWS as it does locally. At least one retry.
        """
        if budget_s <= 0:
            return 1
        total, retries = 0.0, 0
        while total < budget_s:
            retries += 1
            step = self.expected_delay(retries)
            if step <= 0:  # a zero base never accumulates: one retry is all that is meant
                return max(retries, 1)
            total += step
        return retries

    def worst_case_s(self, retries: int) -> float:
        """The longest total wait of ``retries`` retries (every draw at its ceiling)."""
        return sum(self.ceiling(k) for k in range(1, retries + 1))
