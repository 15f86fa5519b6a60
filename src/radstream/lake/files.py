"""Which Parquet files make up the local lake right now.

Compaction replaces many files of a partition by one, and no file system can do that in one
atomic step. So compaction commits through a journal (see :mod:`.compact`), and every reader
asks this module for the file list: a file is visible unless it is hidden (a name starting
with ``.``) or a committed compaction whose output exists has replaced it. At every instant
of a compaction, killed or not, each row is visible exactly once.
"""

from __future__ import annotations

import json
from pathlib import Path

JOURNAL_SUFFIX = ".compaction.json"


def partitions(lake_dir: Path) -> list[Path]:
    """Partition folders ``dt=…/hour=…``, oldest first."""
    return sorted(p for p in lake_dir.glob("dt=*/hour=*") if p.is_dir())


def superseded(partition: Path, names: set[str] | None = None) -> set[str]:
    """Names of files that committed compactions have replaced.

    ``names`` is one listing of the partition: a compaction counts only if its output is in
    that same listing, so a reader never pairs an old view of the journals with a newer
    view of the files (which could show the output *and* its inputs).
    """
    listing = names if names is not None else {p.name for p in partition.iterdir()}
    gone: set[str] = set()
    for name in listing:
        if name.startswith(".") or not name.endswith(JOURNAL_SUFFIX):
            continue  # not a committed journal
        try:
            entry = json.loads((partition / name).read_text())
        except (OSError, ValueError):
            continue
        if entry["output"] in listing:
            gone.update(entry["inputs"])
    return gone


def visible_files(lake_dir: Path) -> list[Path]:
    """Every Parquet file a reader should read, each row exactly once.

    A file listed here can still be deleted by a compaction finishing its cleanup before
    the reader opens it; readers retry with a fresh listing (see the query runner).
    """
    files: list[Path] = []
    for partition in partitions(lake_dir):
        try:
            names = {p.name for p in partition.iterdir()}
        except FileNotFoundError:  # pruned meanwhile
            continue
        gone = superseded(partition, names)
        files.extend(
            partition / name
            for name in sorted(names)
            if name.endswith(".parquet") and not name.startswith(".") and name not in gone
        )
    return files
