"""A worker process: loads the model once, then claims and runs executions."""

from __future__ import annotations

import os
import random
import signal
import sqlite3
import time
from multiprocessing.connection import Connection
from multiprocessing.synchronize import Event

from radstream.backoff import Backoff
from radstream.errors import DatabaseUnavailable
from radstream.lake.parquet_sink import ParquetSink
from radstream.local.database import connect
from radstream.local.engine import LocalEngine
from radstream.local.executor import Executor
from radstream.local.reports import MeteredSink, ReportSender
from radstream.local.runner import ExecutionRunner
from radstream.logs import LogFormat, configure, get_logger, log_context
from radstream.model.loading import load_model_client
from radstream.settings import Settings

logger = get_logger(__name__)

# How often an idle worker looks for leases held by dead processes.
_REAP_EVERY_S = 0.5
# Waits of a worker whose database cannot be written (disk full): a fault of the disk,
# not of the worker, so it waits and retries instead of dying.
_DB_BACKOFF = Backoff(base_s=0.5, max_s=10.0)


def worker_main(
    settings_json: str,
    worker_id: str,
    stop: Event,
    until_idle: bool,
    parent_pid: int,
    log_setup: tuple[str, LogFormat] | None = None,
    reports: Connection | None = None,
) -> None:
    """Entry point of a worker process (spawned by :class:`~radstream.local.pool.WorkerPool`).

    ``log_setup`` is the parent's ``(level, format)``: a spawned process starts with no
    logging configured, so it repeats the parent's :func:`radstream.logs.configure`.
    ``reports``, when the parent serves metrics, is this worker's end of a pipe that takes
    its :class:`~radstream.local.reports.WorkerReport` messages.
    """
    if log_setup is not None:
        configure(level=log_setup[0], fmt=log_setup[1])
    sender = ReportSender(reports)
    try:
        with log_context(worker_id=worker_id):
            _work(settings_json, worker_id, stop, until_idle, parent_pid, sender)
    finally:
        sender.close()


def _work(
    settings_json: str,
    worker_id: str,
    stop: Event,
    until_idle: bool,
    parent_pid: int,
    sender: ReportSender,
) -> None:
    # The pool's parent decides when to stop; a Ctrl-C in the terminal or a service
    # manager's SIGTERM reaches every process of the group, and must not kill a worker
    # halfway through a stage or lose its telemetry buffer.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    settings = Settings.model_validate_json(settings_json)
    model = load_model_client(settings)
    with LocalEngine.open(settings) as engine:
        # The lease keeper's own connection: a connection serves one thread at a time.
        heartbeat_conn = connect(settings.db_path, fsync=settings.engine.fsync)
        heartbeat = Executor(
            heartbeat_conn,
            lease_s=settings.engine.lease_s,
            max_takeovers=settings.engine.max_takeovers,
        )
        sink = MeteredSink(
            ParquetSink(
                settings.lake_dir,
                writer_id=worker_id,
                flush_rows=settings.telemetry.flush_rows,
                flush_s=settings.telemetry.flush_s,
            )
        )
        runner = ExecutionRunner(
            store=engine.store,
            executor=engine.executor,
            model=model,
            sink=sink,
            settings=settings,
            worker_id=worker_id,
            heartbeat=heartbeat,
        )
        engine.executor.register_worker(worker_id, os.getpid())
        logger.info("worker ready")
        try:
            _loop(
                engine,
                runner,
                sink,
                worker_id,
                stop,
                until_idle,
                settings.engine.poll_s,
                parent_pid,
                sender,
            )
        except Exception:
            # The pool replaces the worker and a peer takes its execution over; the
            # traceback is kept here, since nothing else will show it.
            logger.exception("worker stopped by an unexpected error")
            raise
        finally:
            sink.close()
            sender.send(sink)  # the rows the last flush wrote (or dropped)
            heartbeat_conn.close()
            try:
                engine.executor.unregister_worker(worker_id)
            except sqlite3.Error as exc:
                logger.warning("could not unregister the worker: %s", exc)


def _loop(
    engine: LocalEngine,
    runner: ExecutionRunner,
    sink: MeteredSink,
    worker_id: str,
    stop: Event,
    until_idle: bool,
    poll_s: float,
    parent_pid: int,
    sender: ReportSender,
) -> None:
    last_reap = 0.0
    troubles = 0
    # A worker whose parent died (SIGKILL) has nobody to stop it: it exits by itself.
    while not stop.is_set() and os.getppid() == parent_pid:
        try:
            busy = _step(engine, runner, sink, worker_id, until_idle, last_reap)
            sender.send(sink)
        except (sqlite3.Error, DatabaseUnavailable) as exc:
            # The database cannot be written (disk full, read-only): wait for it. A lease
            # this worker held runs out meanwhile and a peer may take it over; the owner
            # being alive, that does not count as a death.
            troubles += 1
            delay = _DB_BACKOFF.delay(troubles, random.random)
            logger.warning("engine database unavailable (%s); retrying in %.1f s", exc, delay)
            stop.wait(delay)
            continue
        troubles = 0
        if busy is None:
            return
        last_reap = busy[1]
        if not busy[0]:
            stop.wait(poll_s)


def _step(
    engine: LocalEngine,
    runner: ExecutionRunner,
    sink: MeteredSink,
    worker_id: str,
    until_idle: bool,
    last_reap: float,
) -> tuple[bool, float] | None:
    """One turn of the loop: ``(ran an execution, last reap time)``, or None when idle
    and asked to stop then."""
    now = time.monotonic()
    if now - last_reap >= _REAP_EVERY_S:
        # Also while busy: a dead peer's executions should not wait for its lease.
        last_reap = now
        engine.executor.reap_dead_workers()
    claim = engine.executor.claim(worker_id)
    if claim is not None:
        runner.run(claim)
        return True, last_reap
    sink.maybe_flush()
    if until_idle and engine.executor.idle():
        return None
    return False, last_reap
