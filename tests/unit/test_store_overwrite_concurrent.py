"""Folder store: an overwrite is atomic for a reader reading at the same time.

The older test wrote twenty times and read once afterwards, which an in-place write passes
too. Here a reader thread reads the object in a loop while a writer replaces it: every read
must return one whole payload, never a truncated, mixed or missing one.
"""

from __future__ import annotations

import threading
from pathlib import Path

from radstream.errors import StoreObjectMissing
from radstream.local.store import FolderStore

SIZE = 512 * 1024
WRITES = 150


def _payload(i: int) -> bytes:
    return bytes([i % 251]) * SIZE


def test_a_reader_never_sees_a_partial_overwrite(tmp_path: Path) -> None:
    store = FolderStore(tmp_path)
    store.put("results", "r/a.json", _payload(0))
    done = threading.Event()
    bad: list[str] = []
    reads = 0

    def reader() -> None:
        nonlocal reads
        while not done.is_set():
            try:
                data = store.get("results", "r/a.json")
            except StoreObjectMissing:
                bad.append("missing")
                continue
            reads += 1
            if len(data) != SIZE or data.count(data[:1]) != SIZE:
                bad.append(f"{len(data)} bytes, {len(set(data))} distinct values")

    thread = threading.Thread(target=reader)
    thread.start()
    try:
        for i in range(1, WRITES + 1):
            store.put("results", "r/a.json", _payload(i))
    finally:
        done.set()
        thread.join()
    assert reads > 0  # the reader did read while the writes went on
    assert bad == []
    assert store.get("results", "r/a.json") == _payload(WRITES)
    assert not any((tmp_path / "results" / ".tmp").iterdir())
