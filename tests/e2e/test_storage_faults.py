"""Storage faults under `radstream serve`: a read-only results folder, a full disk, a read-only
lake. Every study must end with exactly one outcome, none ``EXECUTION_ABANDONED``, and
`serve` must keep running through the outage.

The faults are real file-system faults, not injected exceptions: the tests run as root, and
root ignores permission bits (``chmod 555`` does not stop it), so a read-only folder is a
read-only bind mount (``mount --bind`` then ``remount,ro``) and a full disk is a small tmpfs
filled with a filler file. A machine where the test cannot mount (not root, no
CAP_SYS_ADMIN, a container without mount rights) skips these tests, saying why.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pytest

from radstream.lake.parquet_sink import read_lake
from radstream.loadgen.bad_inputs import make_bad_study
from radstream.loadgen.study import Study
from radstream.loadgen.synthetic import make_study
from radstream.loadgen.uploader import upload_generated
from radstream.local.engine import LocalEngine
from radstream.settings import Settings
from support.waiting import wait_until

# Starts `radstream serve` (see tests/support/slow.py).
pytestmark = pytest.mark.slow

OUTAGE_S = 20.0
"""How long the fault lasts: the 20 s of the issue's probe."""


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(list(args), capture_output=True, text=True, check=False)


def _can_mount(tmp_path: Path) -> str | None:
    """None if this process can bind-mount read-only and mount a tmpfs, else why not."""
    probe = tmp_path / "mount-probe"
    probe.mkdir()
    bind = _run("mount", "--bind", str(probe), str(probe))
    if bind.returncode != 0:
        return f"cannot bind-mount here: {bind.stderr.strip()}"
    _run("umount", str(probe))
    return None


@contextmanager
def read_only(folder: Path) -> Iterator[None]:
    """Make ``folder`` read-only for the processes of this machine (root included)."""
    for args in (
        ("mount", "--bind", str(folder), str(folder)),
        ("mount", "-o", "remount,bind,ro", str(folder)),
    ):
        done = _run(*args)
        assert done.returncode == 0, done.stderr
    try:
        yield
    finally:
        _run("umount", "-l", str(folder))


@contextmanager
def small_disk(folder: Path, size: str = "16m") -> Iterator[None]:
    """Mount a tmpfs of ``size`` on ``folder`` (empty until the test writes to it)."""
    folder.mkdir(parents=True, exist_ok=True)
    done = _run("mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(folder))
    assert done.returncode == 0, done.stderr
    try:
        yield
    finally:
        _run("umount", "-l", str(folder))


def _fill(folder: Path) -> Path:
    """Fill the file system of ``folder`` to the last byte; returns the filler to remove."""
    filler = folder / "filler"
    fd = os.open(filler, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        for chunk in (1 << 20, 4096, 1):  # megabytes, then the last pages, then bytes
            try:
                while True:
                    os.write(fd, b"\0" * chunk)
            except OSError:
                pass
    finally:
        os.close(fd)
    return filler


@pytest.fixture
def mountable(tmp_path: Path) -> None:
    reason = _can_mount(tmp_path)
    if reason is not None:
        pytest.skip(reason)


@contextmanager
def serving(settings: Settings, cwd: Path) -> Iterator[subprocess.Popen[bytes]]:
    """`radstream serve` with two workers; asserts it exits 0 on SIGTERM afterwards."""
    env = {
        **os.environ,
        "RADSTREAM_DATA_DIR": str(settings.data_dir),
        "RADSTREAM_MODEL__PATH": str(settings.model.path),
        "RADSTREAM_ENGINE__WORKERS": "2",
        "RADSTREAM_ENGINE__LEASE_S": "3",
        "RADSTREAM_ENGINE__RETRY_BASE_S": "0.1",
        "RADSTREAM_ENGINE__RETRY_MAX_S": "1",
        "RADSTREAM_TELEMETRY__FLUSH_S": "0.2",
    }
    log = cwd / "serve.log"
    with open(log, "wb") as sink:
        server = subprocess.Popen(
            [sys.executable, "-m", "radstream.cli", "serve"],
            env=env,
            cwd=cwd,
            stdout=sink,
            stderr=subprocess.STDOUT,
        )
    try:
        yield server
    except BaseException:
        # Say what serve was doing when the test gave up.
        print(log.read_text(errors="replace")[-6000:])
        raise
    finally:
        if server.poll() is None:
            server.send_signal(signal.SIGTERM)
        server.wait(timeout=90)
    output = log.read_text(errors="replace")
    assert server.returncode == 0, output[-4000:]
    assert "Traceback" not in output, output[-4000:]


def _studies(prefix: str, count: int) -> list[Study]:
    rng = np.random.default_rng(11)
    studies = [
        make_study(f"{prefix}-{i:02d}", "png", rng, width=900, height=1100) for i in range(count)
    ]
    return [*studies, make_bad_study("sidecar_missing_field", f"{prefix}-bad", rng)]


def _live_workers(engine: LocalEngine) -> int:
    row = engine.conn.execute("SELECT COUNT(*) FROM workers WHERE stopped_at IS NULL").fetchone()
    return int(row[0])


def _finished(engine: LocalEngine, total: int) -> Callable[[], bool]:
    def done() -> bool:
        counts = engine.executor.counts()
        return counts["succeeded"] + counts["failed"] == total

    return done


def _check_outcomes(engine: LocalEngine, studies: list[Study]) -> None:
    """Exactly one outcome object per study; no failure but the bad study's own code."""
    counts = engine.executor.counts()
    assert counts["pending"] == counts["running"] == 0
    objects = engine.store.list("results", "results/") + engine.store.list("results", "failed/")
    folders = Counter(key.split("/")[1] for key in objects)
    assert folders == Counter({s.study_id: 1 for s in studies})
    codes = Counter(
        json.loads(engine.store.get("results", key))["error"]["code"]
        for key in engine.store.list("results", "failed/")
    )
    assert codes == Counter({"SIDECAR_MISSING_FIELD": 1}), codes
    rows = engine.conn.execute("SELECT error_code FROM executions").fetchall()
    assert "EXECUTION_ABANDONED" not in {r[0] for r in rows}


def _outage(engine: LocalEngine, server: subprocess.Popen[bytes], later: list[Study]) -> None:
    """During the fault: upload more studies, and let serve meet the fault for OUTAGE_S."""
    for study in later:
        upload_generated(engine.store, study)
    deadline = time.monotonic() + OUTAGE_S
    while time.monotonic() < deadline:
        assert server.poll() is None, "serve exited during the outage"
        time.sleep(0.5)
    # Nothing could be written meanwhile; nothing failed for it either (the budget is 600 s).
    assert engine.executor.counts()["failed"] == 0


def test_a_read_only_results_folder_for_20_s_loses_nothing(
    make_settings: Callable[..., Settings], tmp_path: Path, mountable: None
) -> None:
    settings = make_settings()
    studies = _studies("ro", 8)
    first, later = studies[:3], studies[3:]
    with LocalEngine.open(settings) as engine, serving(settings, tmp_path) as server:
        wait_until(lambda: _live_workers(engine) == 2, "serve's workers", timeout_s=120)
        for study in first:
            upload_generated(engine.store, study)
        wait_until(
            lambda: engine.executor.counts()["succeeded"] >= 1, "a first result", timeout_s=120
        )
        with read_only(settings.data_dir / "buckets" / "results"):
            _outage(engine, server, later)
        wait_until(_finished(engine, len(studies)), "every study after the outage", timeout_s=180)
        assert server.poll() is None, "serve exited"
        _check_outcomes(engine, studies)


def test_a_full_results_disk_loses_nothing(
    make_settings: Callable[..., Settings], tmp_path: Path, mountable: None
) -> None:
    settings = make_settings()
    studies = _studies("full", 6)
    results = settings.data_dir / "buckets" / "results"
    with (
        small_disk(results),
        LocalEngine.open(settings) as engine,
        serving(settings, tmp_path) as server,
    ):
        wait_until(lambda: _live_workers(engine) == 2, "serve's workers", timeout_s=120)
        upload_generated(engine.store, studies[0])
        wait_until(
            lambda: engine.executor.counts()["succeeded"] >= 1, "a first result", timeout_s=120
        )
        filler = _fill(results)
        _outage(engine, server, studies[1:])
        filler.unlink()
        wait_until(_finished(engine, len(studies)), "every study after the outage", timeout_s=180)
        assert server.poll() is None, "serve exited"
        _check_outcomes(engine, studies)
        # No partial temporary object was left behind on the full disk.
        assert not list((results / ".tmp").iterdir())


def test_a_read_only_lake_keeps_telemetry_and_writes_it_later(
    make_settings: Callable[..., Settings], tmp_path: Path, mountable: None
) -> None:
    settings = make_settings()
    studies = _studies("lake", 5)
    settings.lake_dir.mkdir(parents=True, exist_ok=True)
    with LocalEngine.open(settings) as engine, serving(settings, tmp_path) as server:
        wait_until(lambda: _live_workers(engine) == 2, "serve's workers", timeout_s=120)
        with read_only(settings.lake_dir):
            for study in studies:
                upload_generated(engine.store, study)
            wait_until(
                _finished(engine, len(studies)), "every study with the lake down", timeout_s=180
            )
            time.sleep(1.0)  # flushes fail meanwhile: the records stay buffered
            assert server.poll() is None, "serve exited"
        _check_outcomes(engine, studies)
        # Written once the lake is back (the sink's backoff is at most 30 s).
        expected = 4 * (len(studies) - 1) + 2  # 4 stages per result; validate+record_failure
        wait_until(
            lambda: read_lake(settings.lake_dir).num_rows >= expected,
            "the kept telemetry",
            timeout_s=90,
        )


def test_status_on_a_full_disk_is_a_message_not_a_traceback(
    make_settings: Callable[..., Settings], tmp_path: Path, mountable: None
) -> None:
    settings = make_settings()
    with small_disk(settings.data_dir, size="4m"):
        with LocalEngine.open(settings) as engine:
            upload_generated(engine.store, _studies("st", 1)[0])
        _fill(settings.data_dir)
        (settings.data_dir / "engine.db-shm").unlink(missing_ok=True)
        (settings.data_dir / "engine.db-wal").unlink(missing_ok=True)
        done = subprocess.run(
            [sys.executable, "-m", "radstream.cli", "status", "--data-dir", str(settings.data_dir)],
            capture_output=True,
            text=True,
            cwd=tmp_path,
            check=False,
        )
    assert "Traceback" not in done.stderr + done.stdout
    # SQLite cannot even create its shared-memory index: said as the error it is, with a hint.
    assert done.returncode == 2, done.stderr
    assert "error DATABASE_UNAVAILABLE" in done.stderr and "Free space" in done.stderr


def test_a_full_disk_under_the_whole_data_directory_loses_nothing(
    make_settings: Callable[..., Settings], tmp_path: Path, mountable: None
) -> None:
    # The database, the store and the lake all on one small disk that fills up mid-run:
    # SQLite commits fail too ("database or disk is full"), and workers wait them out.
    settings = make_settings()
    studies = _studies("disk", 6)
    with (
        small_disk(settings.data_dir, size="48m"),
        LocalEngine.open(settings) as engine,
        serving(settings, tmp_path) as server,
    ):
        wait_until(lambda: _live_workers(engine) == 2, "serve's workers", timeout_s=120)
        for study in studies:
            upload_generated(engine.store, study)
        wait_until(
            lambda: engine.executor.counts()["succeeded"] >= 1, "a first result", timeout_s=120
        )
        filler = _fill(settings.data_dir)
        deadline = time.monotonic() + OUTAGE_S
        while time.monotonic() < deadline:
            assert server.poll() is None, "serve exited during the outage"
            time.sleep(0.5)
        filler.unlink()
        wait_until(_finished(engine, len(studies)), "every study after the outage", timeout_s=180)
        assert server.poll() is None, "serve exited"
        _check_outcomes(engine, studies)
