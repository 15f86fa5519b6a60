"""What worker processes tell the parent for its Prometheus metrics: stage timings, telemetry rows.

Execution counts come from the engine database (see :mod:`radstream.local.metrics`), so they
need no message. Stage durations and the telemetry sink's counters live in the workers, so
each worker sends a small :class:`WorkerReport` (a delta since its last one) down a one-way
pipe of its own after every execution and telemetry flush; a thread of the parent
(:class:`ReportHub`) adds them up.

A pipe per worker, not one shared queue: a worker killed mid-send can then only damage its
own pipe, which the hub drops, and never blocks its peers. Reports are small (one
execution's stages), so each is a single write the kernel does at once; the hub reads
continuously, so a worker never waits on a full pipe.
"""

from __future__ import annotations

import bisect
import threading
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from multiprocessing.connection import Connection, wait

from radstream.lake.parquet_sink import ParquetSink
from radstream.logs import get_logger
from radstream.pipeline.definition import PIPELINE
from radstream.schema.telemetry import TelemetryRecord

logger = get_logger(__name__)

STAGE_BUCKETS_S: tuple[float, ...] = (
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
    30.0,
    60.0,
)
"""Upper bounds of the stage duration histogram's buckets, in seconds (``+Inf`` follows)."""

STAGES: tuple[str, ...] = tuple(stage.name for stage in PIPELINE.all_stages)
"""The stages the pipeline declares, failure stage included."""

# Observations per report at most: a report stays one small pipe write however many stages
# an execution ran (retries included); the rest go in the next report.
_MAX_OBSERVATIONS = 64


@dataclass(frozen=True)
class WorkerReport:
    """What one worker observed since its previous report."""

    stage_seconds: tuple[tuple[str, float], ...] = ()
    """``(stage, duration in seconds)`` of each stage attempt whose telemetry it emitted."""
    rows_flushed: int = 0
    """Telemetry rows written to the lake."""
    rows_dropped: int = 0
    """Telemetry rows dropped (the lake stayed unwritable longer than the buffer lasts)."""

    def __bool__(self) -> bool:
        return bool(self.stage_seconds or self.rows_flushed or self.rows_dropped)


class MeteredSink:
    """A worker's :class:`ParquetSink`, noting each emitted record's stage and duration.

    :meth:`take_report` hands out what changed since the previous call.
    """

    def __init__(self, sink: ParquetSink) -> None:
        self._sink = sink
        self._observed: list[tuple[str, float]] = []
        self._flushed_sent = 0
        self._dropped_sent = 0

    def emit(self, records: Iterable[TelemetryRecord]) -> None:
        """Note the records' stage durations, then pass them on to the sink."""
        batch = list(records)
        self._observed.extend((r.stage, r.duration_ms / 1000.0) for r in batch)
        self._sink.emit(batch)

    def flush(self) -> None:
        """Write buffered records out."""
        self._sink.flush()

    def maybe_flush(self) -> None:
        """Flush if the sink's count or time threshold is reached."""
        self._sink.maybe_flush()

    def close(self) -> None:
        """Flush what is left and close the sink."""
        self._sink.close()

    def take_report(self) -> WorkerReport:
        """What changed since the previous report (empty, and false, if nothing did)."""
        observed = tuple(self._observed[:_MAX_OBSERVATIONS])
        del self._observed[:_MAX_OBSERVATIONS]
        flushed, dropped = self._sink.rows_written, self._sink.dropped
        report = WorkerReport(
            stage_seconds=observed,
            rows_flushed=flushed - self._flushed_sent,
            rows_dropped=dropped - self._dropped_sent,
        )
        self._flushed_sent, self._dropped_sent = flushed, dropped
        return report

    @property
    def behind(self) -> bool:
        """Whether observations are left over for the next report."""
        return bool(self._observed)


class ReportSender:
    """The worker's end of its report pipe; a parent that went away ends the reporting."""

    def __init__(self, conn: Connection | None) -> None:
        self._conn = conn

    def send(self, sink: MeteredSink) -> None:
        """Send everything ``sink`` has to report (nothing when there is no pipe)."""
        if self._conn is None:
            return
        while True:
            report = sink.take_report()
            if not report:
                return
            try:
                self._conn.send(report)
            except OSError as exc:  # the parent is gone: nobody to report to
                logger.warning("metrics reports stopped: %s", exc)
                self._conn = None
                return

    def close(self) -> None:
        """Close the pipe (the parent then sees its end)."""
        if self._conn is not None:
            self._conn.close()
            self._conn = None


@dataclass
class StageHistogram:
    """Cumulative-ready counts of one stage's durations."""

    buckets: list[int] = field(default_factory=lambda: [0] * (len(STAGE_BUCKETS_S) + 1))
    """Observations per bucket (not cumulative); the last one is ``+Inf``."""
    count: int = 0
    sum_s: float = 0.0

    def observe(self, seconds: float) -> None:
        """Add one duration."""
        self.buckets[bisect.bisect_left(STAGE_BUCKETS_S, seconds)] += 1
        self.count += 1
        self.sum_s += seconds

    def cumulative(self) -> list[tuple[str, float]]:
        """``(le, count)`` pairs as Prometheus wants them, ``+Inf`` last."""
        pairs: list[tuple[str, float]] = []
        running = 0
        for bound, n in zip((*map(str, STAGE_BUCKETS_S), "+Inf"), self.buckets, strict=True):
            running += n
            pairs.append((bound, float(running)))
        return pairs


@dataclass(frozen=True)
class TelemetryTotals:
    """A consistent copy of the hub's sums, for one scrape."""

    stages: dict[str, StageHistogram]
    rows_flushed: int
    rows_dropped: int


class ReportHub:
    """The parent's side: reads every worker's pipe on a thread and adds the reports up."""

    def __init__(self, stages: Sequence[str] = STAGES) -> None:
        """``stages`` have a histogram from the start (empty), so each series exists."""
        self._lock = threading.Lock()
        self._conns: list[Connection] = []
        self._stages = {name: StageHistogram() for name in stages}
        self._flushed = 0
        self._dropped = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="radstream-reports", daemon=True)
        self._thread.start()

    def attach(self, conn: Connection) -> None:
        """Read reports from ``conn`` (a new worker's pipe) from now on."""
        with self._lock:
            self._conns.append(conn)

    def add(self, report: WorkerReport) -> None:
        """Add one report to the sums."""
        with self._lock:
            for stage, seconds in report.stage_seconds:
                self._stages.setdefault(stage, StageHistogram()).observe(seconds)
            self._flushed += report.rows_flushed
            self._dropped += report.rows_dropped

    def totals(self) -> TelemetryTotals:
        """The sums so far."""
        with self._lock:
            copies = {
                name: StageHistogram(list(h.buckets), h.count, h.sum_s)
                for name, h in self._stages.items()
            }
            return TelemetryTotals(copies, self._flushed, self._dropped)

    def drain(self, timeout_s: float = 0.0) -> None:
        """Read every report waiting now (waiting up to ``timeout_s`` for the first)."""
        with self._lock:
            conns = list(self._conns)
        if not conns:
            self._stop.wait(timeout_s)
            return
        for conn in wait(conns, timeout_s):
            if not isinstance(conn, Connection):
                continue
            try:
                report = conn.recv()
            except (EOFError, OSError):  # the worker exited (or died): its pipe is done
                self._forget(conn)
                continue
            except Exception:  # a worker killed mid-write left garbage: drop its pipe
                logger.warning("dropped an unreadable metrics report pipe", exc_info=True)
                self._forget(conn)
                continue
            if isinstance(report, WorkerReport):
                self.add(report)

    def _forget(self, conn: Connection) -> None:
        with self._lock:
            if conn in self._conns:
                self._conns.remove(conn)
        conn.close()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self.drain(0.2)
            except Exception:
                # Never stop reading: a worker whose pipe fills up would block on its send.
                logger.exception("reading the workers' metrics reports failed")
                self._stop.wait(0.2)

    def close(self) -> None:
        """Read what is left, stop the thread and close the pipes."""
        self._stop.set()
        self._thread.join()
        while True:
            with self._lock:
                conns = list(self._conns)
            if not conns or not wait(conns, 0):
                break
            self.drain()
        for conn in conns:
            self._forget(conn)


__all__ = [
    "STAGE_BUCKETS_S",
    "MeteredSink",
    "ReportHub",
    "ReportSender",
    "StageHistogram",
    "TelemetryTotals",
    "WorkerReport",
]
