"""Load shapes: when each study is *due*, as offsets in seconds from the start.

An open-loop schedule is fixed before the run starts. The driver sends each study at its
offset. If the system falls behind, the schedule does not move: the latency of a late study
still counts from when it was due. Otherwise an overloaded system looks fast. This is the
"coordinated omission" mistake.

Shapes:

* ``constant``: ``rate`` per second;
* ``poisson``: exponential gaps with mean ``1/rate``;
* ``step:5/10,20/10``: 5/s for 10 s, then 20/s for 10 s. The last rate holds after that;
* ``burst:20/5``: 20 studies at once, every 5 s;
* ``ramp:2-30/60``: the rate rises linearly from 2/s to 30/s over 60 s, then holds;
* a trace: a CSV file with one send offset (seconds) per line, or a column ``offset_s``.
"""

from __future__ import annotations

import csv
import math
from pathlib import Path

import numpy as np

from radstream.errors import ConfigInvalid


class ShapeInvalid(ConfigInvalid):
    """A load shape or trace that cannot be read."""

    code = "LOAD_SHAPE_INVALID"
    hint = "Use step:R/S,R/S…, burst:N/S, ramp:R0-R1/S, or a CSV of send offsets in seconds."


def constant(rate: float, n: int) -> list[float]:
    """``n`` evenly spaced sends at ``rate`` per second."""
    _positive(rate, "rate")
    return [i / rate for i in range(n)]


def poisson(rate: float, n: int, rng: np.random.Generator) -> list[float]:
    """``n`` sends of a Poisson process with mean ``rate`` per second (first at 0)."""
    _positive(rate, "rate")
    gaps = rng.exponential(1.0 / rate, n)
    gaps[0] = 0.0
    return [float(x) for x in np.cumsum(gaps)]


def parse_shape(spec: str, n: int) -> list[float]:
    """Offsets for ``n`` sends following ``step:…``, ``burst:…`` or ``ramp:…``."""
    kind, _, args = spec.partition(":")
    try:
        if kind == "step":
            return _step([_pair(part) for part in args.split(",")], n)
        if kind == "burst":
            size, every = _pair(args)
            return [float(i // int(size)) * every for i in range(n)]
        if kind == "ramp":
            rates, _, over = args.partition("/")
            start, _, end = rates.partition("-")
            return _ramp(float(start), float(end), float(over), n)
    except (ValueError, ZeroDivisionError) as exc:
        raise ShapeInvalid(f"cannot read load shape {spec!r}: {exc}") from None
    raise ShapeInvalid(f"unknown load shape {spec!r}")


def read_trace(path: Path, n: int | None = None) -> list[float]:
    """Send offsets from a CSV: one number per row, or a column named ``offset_s``."""
    try:
        with path.open(newline="") as fh:
            rows = [r for r in csv.reader(fh) if r and r[0].strip()]
    except OSError as exc:
        raise ShapeInvalid(f"cannot read trace {path}: {exc}") from None
    if rows and "offset_s" in rows[0]:
        column = rows[0].index("offset_s")
        rows = [[r[column]] for r in rows[1:]]
    try:
        offsets = sorted(float(r[0]) for r in rows)
    except ValueError as exc:
        raise ShapeInvalid(f"trace {path}: {exc}") from None
    if not offsets or offsets[0] < 0:
        raise ShapeInvalid(f"trace {path} is empty or has negative offsets")
    return offsets[:n] if n is not None else offsets


def _pair(text: str) -> tuple[float, float]:
    left, sep, right = text.partition("/")
    if not sep:
        raise ValueError(f"expected A/B, got {text!r}")
    return float(left), float(right)


def _positive(value: float, name: str) -> None:
    if not value > 0 or math.isinf(value):
        raise ShapeInvalid(f"{name} must be a positive number, got {value}")


def _step(phases: list[tuple[float, float]], n: int) -> list[float]:
    offsets: list[float] = []
    t = 0.0
    for index, (rate, seconds) in enumerate(phases):
        _positive(rate, "step rate")
        last = index == len(phases) - 1
        end = math.inf if last else t + seconds
        while len(offsets) < n and t < end:
            offsets.append(t)
            t += 1.0 / rate
        t = max(t, end) if not last else t
    return offsets


def _ramp(start: float, end: float, over: float, n: int) -> list[float]:
    # Send i goes out when the integral of the rate reaches i, so a ramp that starts (or
    # ends) at 0/s is handled exactly instead of stepping by 1/rate.
    _positive(over, "ramp duration")
    if start < 0 or end < 0 or max(start, end) <= 0:
        raise ShapeInvalid("ramp rates must be >= 0 and not both 0")
    slope = (end - start) / over
    during = (start + end) / 2 * over  # sends due within the ramp
    offsets = []
    for i in range(n):
        if i <= during:
            if slope == 0:
                t = i / start
            else:
                # start*t + slope*t^2/2 = i
                t = (-start + math.sqrt(start * start + 2 * slope * i)) / slope
        elif end > 0:
            t = over + (i - during) / end
        else:
            raise ShapeInvalid(f"ramp to 0/s ends after {int(during) + 1} sends; {n} are needed")
        offsets.append(t)
    return offsets
