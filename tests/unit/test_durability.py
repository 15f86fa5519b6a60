"""``engine.fsync = true``: what is acknowledged is on disk.

Two kinds of test. The spy tests record which files and folders are fsynced while real
writes happen (``os.fsync`` is wrapped, not replaced: every call still reaches the disk),
and read SQLite's ``synchronous`` pragma back. The crash test kills a writer with SIGKILL
after it acknowledged some outcomes and finds every one of them. A power loss cannot be
simulated here (it would need a VM or a fault-injecting block device): the spy tests are
what show that the fsyncs a power loss needs are made.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
from collections.abc import Callable
from pathlib import Path

import pytest

from radstream.local.database import connect
from radstream.local.executor import Executor
from radstream.local.store import FolderStore

SYNCHRONOUS = {0: "OFF", 1: "NORMAL", 2: "FULL", 3: "EXTRA"}


@pytest.fixture
def fsynced(monkeypatch: pytest.MonkeyPatch) -> list[Path]:
    """The paths of the file descriptors passed to ``os.fsync``, in order."""
    seen: list[Path] = []
    real: Callable[[int], None] = os.fsync

    def spy(fd: int) -> None:
        seen.append(Path(os.readlink(f"/proc/self/fd/{fd}")))
        real(fd)

    monkeypatch.setattr(os, "fsync", spy)
    return seen


@pytest.mark.skipif(not Path("/proc/self/fd").is_dir(), reason="needs /proc to name fds")
def test_a_put_fsyncs_the_content_then_the_folder_and_new_parents(
    tmp_path: Path, fsynced: list[Path]
) -> None:
    root = tmp_path.resolve()
    store = FolderStore(root, fsync=True)
    store.put("results", "results/study/img.json", b"{}")
    content, *folders = fsynced
    # The content is synced under its temporary name, before the rename.
    assert content.parent == root / "results" / ".tmp"
    # New folders top-down (each one's entry lives in its parent), then the object's folder.
    assert folders == [
        root / "results",
        root / "results" / "results",
        root / "results" / "results" / "study",
    ]
    fsynced.clear()
    store.put("results", "results/study/img.json", b"{ }")  # the folder exists now
    assert fsynced[1:] == [root / "results" / "results" / "study"]
    fsynced.clear()
    store.delete("results", "results/study/img.json")
    assert fsynced == [root / "results" / "results" / "study"]


def test_without_fsync_nothing_is_fsynced(tmp_path: Path, fsynced: list[Path]) -> None:
    store = FolderStore(tmp_path, fsync=False)
    store.put("results", "results/study/img.json", b"{}")
    store.delete("results", "results/study/img.json")
    assert fsynced == []


@pytest.mark.parametrize(("fsync", "expected"), [(True, "FULL"), (False, "NORMAL")])
def test_the_database_syncs_every_commit_with_fsync(
    tmp_path: Path, fsync: bool, expected: str
) -> None:
    conn = connect(tmp_path / "engine.db", fsync=fsync)
    assert SYNCHRONOUS[conn.execute("PRAGMA synchronous").fetchone()[0]] == expected
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


WRITER = textwrap.dedent(
    """
    import sys
    from pathlib import Path

    from radstream.local.database import connect
    from radstream.local.executor import Executor
    from radstream.local.store import FolderStore

    root = Path(sys.argv[1])
    executor = Executor(connect(root / "engine.db", fsync=True))
    store = FolderStore(root / "buckets", listener=executor, fsync=True)
    n = 0
    while True:
        store.put("images", f"incoming/s{n}/a.png", b"image %d" % n)
        store.put("images", f"incoming/s{n}/a.json", b"{}")
        claim = executor.claim("writer")
        assert claim is not None and claim.key == f"incoming/s{n}/a.json"
        key = f"results/s{n}/a.json"
        store.put("results", key, b"result %d" % n)
        assert executor.finish(claim, "writer", succeeded=True, outcome_key=key)
        print(n, flush=True)  # acknowledged: the outcome and its state are durable
        n += 1
    """
)


@pytest.mark.slow
def test_a_killed_writer_loses_nothing_it_acknowledged(tmp_path: Path) -> None:
    proc = subprocess.Popen(
        [sys.executable, "-c", WRITER, str(tmp_path)], stdout=subprocess.PIPE, text=True
    )
    assert proc.stdout is not None
    acknowledged = [int(proc.stdout.readline()) for _ in range(25)]
    proc.send_signal(signal.SIGKILL)  # mid-write, most likely: no cleanup of any kind
    proc.wait()
    acknowledged += [int(line) for line in proc.stdout.read().split()]
    assert acknowledged == list(range(len(acknowledged)))

    executor = Executor(connect(tmp_path / "engine.db", fsync=True))
    store = FolderStore(tmp_path / "buckets", listener=executor, fsync=True)
    states = {row["key"]: row["state"] for row in executor.executions()}
    for n in acknowledged:
        assert store.get("results", f"results/s{n}/a.json") == b"result %d" % n
        assert states[f"incoming/s{n}/a.json"] == "succeeded"
    # The database is usable after the kill: the next upload is routed as usual.
    store.put("images", "incoming/after/a.json", b"{}")
    assert executor.route() == 1
