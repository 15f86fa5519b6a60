"""Drive uploads on a schedule (open loop) or at a fixed concurrency (closed loop).

The driver records, for each study, when it was *due* and when it was actually sent. An
open-loop schedule never waits for the system; a closed loop sends the next study when one
finishes, so its "due" time is that completion.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from radstream.loadgen.study import Study
from radstream.stages.completions import Completion, CompletionSource

# A send more than this after its due time counts as late.
LATE_AFTER_S = 0.005
_IDLE_POLL_S = 0.002


@dataclass(frozen=True)
class Sent:
    """One upload: when it was due and when it went out."""

    sidecar_key: str
    intended: float
    actual: float
    expected_code: str | None
    warmup: bool

    @property
    def lateness_s(self) -> float:
        """How long after its due time the upload was sent."""
        return max(0.0, self.actual - self.intended)


@dataclass
class DriveResult:
    """Everything a run observed."""

    started_at: float
    sent: list[Sent] = field(default_factory=list)
    completions: dict[str, Completion] = field(default_factory=dict)
    timeline: list[tuple[float, int, int]] = field(default_factory=list)
    """(seconds since start, sent so far, completed so far), sampled while running."""
    timed_out: bool = False


Progress = Callable[[int, int], None]


class LoadDriver:
    """Sends studies through ``send`` (which returns the sidecar key) and tracks outcomes."""

    def __init__(
        self,
        send: Callable[[Study], str],
        completions: CompletionSource | None,
        *,
        progress: Progress | None = None,
        sample_every_s: float = 0.25,
    ) -> None:
        self._send = send
        self._completions = completions
        self._progress = progress or (lambda _done, _total: None)
        self._sample_every_s = sample_every_s

    def open_loop(
        self,
        studies: Sequence[Study],
        offsets: Sequence[float],
        *,
        warmup: int = 0,
        timeout_s: float = 600.0,
        wait: bool = True,
    ) -> DriveResult:
        """Send study i at ``start + offsets[i]``, whatever the system is doing."""
        if len(offsets) < len(studies):
            raise ValueError(f"{len(studies)} studies but only {len(offsets)} send times")
        result = DriveResult(started_at=time.time() + 0.2)
        for index, study in enumerate(studies):
            due = result.started_at + offsets[index]
            while (remaining := due - time.time()) > 0:
                self._observe(result, len(studies))
                time.sleep(min(remaining, _IDLE_POLL_S * 5))
            self._do_send(result, study, due, warmup=index < warmup)
            self._observe(result, len(studies))
        if wait:
            self._drain(result, len(studies), timeout_s)
        return result

    def closed_loop(
        self,
        studies: Sequence[Study],
        concurrency: int,
        *,
        warmup: int = 0,
        timeout_s: float = 600.0,
    ) -> DriveResult:
        """Keep ``concurrency`` studies in flight; each completion releases the next send."""
        if self._completions is None:
            raise ValueError("a closed loop needs completion notifications")
        result = DriveResult(started_at=time.time())
        queue = list(studies)
        deadline = time.monotonic() + timeout_s
        # In a closed loop a study is due when it is sent: there is no schedule to fall
        # behind, and the few ms between a completion and the next send are not latency.
        for _ in range(min(concurrency, len(queue))):
            self._do_send(result, queue.pop(0), None, warmup=len(result.sent) < warmup)
        while queue and time.monotonic() < deadline:
            for _completion in self._observe(result, len(studies)):
                if queue:
                    self._do_send(result, queue.pop(0), None, warmup=len(result.sent) < warmup)
            time.sleep(_IDLE_POLL_S)
        self._drain(result, len(studies), max(0.0, deadline - time.monotonic()))
        return result

    def _do_send(
        self, result: DriveResult, study: Study, due: float | None, *, warmup: bool
    ) -> None:
        actual = time.time()
        key = self._send(study)
        result.sent.append(
            Sent(key, actual if due is None else due, actual, study.expected_code, warmup)
        )

    def _observe(self, result: DriveResult, total: int) -> list[Completion]:
        new = []
        if self._completions is not None:
            for completion in self._completions.poll():
                if completion.sidecar_key not in result.completions:
                    result.completions[completion.sidecar_key] = completion
                    new.append(completion)
        now = time.time() - result.started_at
        if not result.timeline or now - result.timeline[-1][0] >= self._sample_every_s:
            result.timeline.append((now, len(result.sent), len(result.completions)))
        self._progress(len(result.completions) if self._completions else len(result.sent), total)
        return new

    def _drain(self, result: DriveResult, total: int, timeout_s: float) -> None:
        if self._completions is None:
            return
        deadline = time.monotonic() + timeout_s
        sent = {s.sidecar_key for s in result.sent}
        while not sent <= result.completions.keys():
            if time.monotonic() > deadline:
                result.timed_out = True
                break
            self._observe(result, total)
            time.sleep(_IDLE_POLL_S)
        result.timeline.append(
            (time.time() - result.started_at, len(result.sent), len(result.completions))
        )
