"""Prometheus metrics of the embedded engine: ``radstream serve|run --metrics-port P``.

Every figure is read at scrape time from where it is already kept, so no second count can
drift from the first:

- executions started, succeeded, failed (by code), running and pending, and the age of the
  oldest pending one: the engine database (``executions``), the durable state every worker
  writes. They count every execution the data directory has ever run, by any process, so
  they survive a worker crash and a restart of ``serve``, and equal the outcome objects;
- stage durations and telemetry rows flushed or dropped: the workers' reports
  (:mod:`radstream.local.reports`), added up by this process since it started;
- workers alive and restarted: the pool of this process.

The names follow Prometheus' conventions (``radstream_`` prefix, ``_total`` counters,
``_seconds`` units); the model server's metrics are in :mod:`radstream.serving.metrics`.
"""

from __future__ import annotations

import sqlite3
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from prometheus_client import start_http_server
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector, CollectorRegistry

from radstream.errors import ConfigInvalid
from radstream.local.database import connect
from radstream.local.executor import Executor
from radstream.local.reports import ReportHub

UNKNOWN_CODE = "UNKNOWN"
"""The ``code`` label of a failed execution that recorded no error code (none should)."""


class PoolView(Protocol):
    """What the metrics read from the worker pool (:class:`~radstream.local.pool.WorkerPool`)."""

    @property
    def worker_ids(self) -> list[str]:
        """The ids of the current workers, one per slot."""
        ...

    @property
    def restarts(self) -> int:
        """Workers that died and were replaced."""
        ...


@dataclass(frozen=True)
class ExecutionFigures:
    """The database's part of one scrape."""

    started: int
    succeeded: int
    failed_by_code: dict[str, int]
    running: int
    pending: int
    oldest_pending_age_s: float
    workers_alive: int


_BY_STATE = "SELECT state, error_code, COUNT(*) FROM executions GROUP BY state, error_code"


def read_figures(conn: sqlite3.Connection, worker_ids: list[str], now: float) -> ExecutionFigures:
    """Executions by state, the oldest pending one's age at ``now`` and the live workers
    among ``worker_ids``, in one read transaction (a consistent snapshot)."""
    conn.execute("BEGIN")
    try:
        rows = conn.execute(_BY_STATE).fetchall()
        oldest = Executor(conn).oldest_pending_created_at()
        alive = Executor(conn).live_workers(worker_ids) if worker_ids else 0
    finally:
        conn.execute("COMMIT")
    by_state: dict[str, int] = {}
    failed: dict[str, int] = {}
    for state, code, count in rows:
        by_state[state] = by_state.get(state, 0) + int(count)
        if state == "failed":
            label = code or UNKNOWN_CODE
            failed[label] = failed.get(label, 0) + int(count)
    return ExecutionFigures(
        started=sum(by_state.values()),
        succeeded=by_state.get("succeeded", 0),
        failed_by_code=dict(sorted(failed.items())),
        running=by_state.get("running", 0),
        pending=by_state.get("pending", 0),
        oldest_pending_age_s=max(0.0, now - oldest) if oldest is not None else 0.0,
        workers_alive=alive,
    )


class EngineMetrics(Collector):
    """Prometheus view of a running engine: its database, its workers' reports, its pool."""

    def __init__(
        self,
        db_path: Path,
        reports: ReportHub,
        pool: PoolView | None = None,
        *,
        clock: Callable[[], float] = time.time,
    ) -> None:
        """``pool`` may be set later (:meth:`watch`): the server starts before the workers."""
        # Its own connection: scrapes run on the HTTP server's threads, one at a time.
        self._conn = connect(db_path)
        self._lock = threading.Lock()
        self._reports = reports
        self._pool = pool
        self._clock = clock

    def watch(self, pool: PoolView) -> None:
        """Report the workers of ``pool``."""
        self._pool = pool

    def close(self) -> None:
        """Close the database connection."""
        with self._lock:
            self._conn.close()

    def collect(self) -> Iterable[Metric]:
        """Every metric, read at scrape time."""
        pool = self._pool
        worker_ids = list(pool.worker_ids) if pool is not None else []
        with self._lock:
            figures = read_figures(self._conn, worker_ids, self._clock())
        totals = self._reports.totals()

        def counter(name: str, doc: str, value: float) -> Metric:
            family = CounterMetricFamily(name, doc)
            family.add_metric([], value)
            return family

        def gauge(name: str, doc: str, value: float) -> Metric:
            family = GaugeMetricFamily(name, doc)
            family.add_metric([], value)
            return family

        yield counter(
            "radstream_executions_started",
            "Executions started (one per upload, re-runs included), ever, in this data directory",
            figures.started,
        )
        yield counter(
            "radstream_executions_succeeded",
            "Executions that ended with a result object",
            figures.succeeded,
        )
        failed = CounterMetricFamily(
            "radstream_executions_failed",
            "Executions that ended with a failure object, by error code",
            labels=["code"],
        )
        for code, count in figures.failed_by_code.items():
            failed.add_metric([code], count)
        yield failed
        yield gauge(
            "radstream_executions_running", "Executions a worker is running now", figures.running
        )
        yield gauge(
            "radstream_queue_depth",
            "Executions waiting for a worker (retries waiting for their backoff included)",
            figures.pending,
        )
        yield gauge(
            "radstream_oldest_pending_age_seconds",
            "Age of the oldest waiting execution, from its upload (0 when none waits)",
            figures.oldest_pending_age_s,
        )
        stages = HistogramMetricFamily(
            "radstream_stage_duration_seconds",
            "Duration of each stage attempt (retries and errors included), since this process "
            "started",
            labels=["stage"],
        )
        for stage, histogram in totals.stages.items():
            stages.add_metric([stage], histogram.cumulative(), histogram.sum_s)
        yield stages
        yield gauge(
            "radstream_workers_configured",
            "Worker processes this engine runs",
            len(worker_ids),
        )
        yield gauge(
            "radstream_workers_alive",
            "Worker processes ready (model loaded) and alive",
            figures.workers_alive,
        )
        yield counter(
            "radstream_worker_restarts",
            "Worker processes that died and were replaced, since this process started",
            pool.restarts if pool is not None else 0,
        )
        yield counter(
            "radstream_telemetry_rows_flushed",
            "Telemetry rows written to the lake, since this process started",
            totals.rows_flushed,
        )
        yield counter(
            "radstream_telemetry_rows_dropped",
            "Telemetry rows dropped because the lake stayed unwritable, since this process started",
            totals.rows_dropped,
        )


@dataclass(frozen=True)
class MetricsEndpoint:
    """A running ``/metrics`` server and what feeds it."""

    url: str
    """``http://HOST:PORT/metrics``."""
    metrics: EngineMetrics
    reports: ReportHub


@contextmanager
def serving_metrics(db_path: Path, host: str, port: int) -> Iterator[MetricsEndpoint]:
    """Serve the engine's ``/metrics`` on ``host:port`` (0: any free port) while in the block.

    Raises :class:`ConfigInvalid` if the address cannot be listened on. Give the pool
    ``endpoint.reports`` and call ``endpoint.metrics.watch(pool)`` once it exists.
    """
    reports = ReportHub()
    metrics = EngineMetrics(db_path, reports)
    registry = CollectorRegistry(auto_describe=False)
    registry.register(metrics)
    try:
        server, thread = start_http_server(port, addr=host, registry=registry)
    except OSError as exc:
        metrics.close()
        reports.close()
        raise ConfigInvalid(
            f"metrics: cannot listen on {host}:{port} ({exc.strerror or exc}); is another "
            "server running there? Pick another --metrics-port."
        ) from exc
    shown = f"[{host}]" if ":" in host else host
    try:
        yield MetricsEndpoint(
            url=f"http://{shown}:{server.server_port}/metrics", metrics=metrics, reports=reports
        )
    finally:
        server.shutdown()
        server.server_close()
        thread.join()
        reports.close()
        metrics.close()


__all__ = [
    "UNKNOWN_CODE",
    "EngineMetrics",
    "ExecutionFigures",
    "MetricsEndpoint",
    "PoolView",
    "read_figures",
    "serving_metrics",
]
