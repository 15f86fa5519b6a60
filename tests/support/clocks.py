"""A clock the test moves by hand, for code that takes ``clock`` and ``sleep`` callables."""

from __future__ import annotations


class FakeClock:
    """Time that moves only when the test says so, or when the code under test sleeps on it.

    Pass the instance itself (or :meth:`clock`) where a ``clock: Callable[[], float]`` is
    taken, and :meth:`sleep` where a ``sleep: Callable[[float], None]`` is; every sleep is
    recorded in :attr:`sleeps` and moves :attr:`now` forward by its length.
    """

    def __init__(self, start: float = 1_000.0) -> None:
        self.now = start
        self.sleeps: list[float] = []

    def __call__(self) -> float:
        """The current fake time (so the instance is itself a clock callable)."""
        return self.now

    def clock(self) -> float:
        """The current fake time, for APIs that are handed a bound method."""
        return self.now

    def advance(self, seconds: float) -> float:
        """Move time forward by ``seconds`` (not recorded as a sleep); returns the new time."""
        if seconds < 0:
            raise ValueError(f"time does not go backwards ({seconds} s)")
        self.now += seconds
        return self.now

    def sleep(self, seconds: float) -> None:
        """Record a sleep and let that much fake time pass, at once."""
        self.sleeps.append(seconds)
        self.advance(seconds)
