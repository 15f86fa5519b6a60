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


def superseded(partition: Path) -> set[str]:
    """Names of files that committed compactions (whose output exists) have replaced."""
    gone: set[str] = set()
    for journal in partition.glob(f"*{JOURNAL_SUFFIX}"):
        if journal.name.startswith("."):
            continue  # not committed yet
        try:
            entry = json.loads(journal.read_text())
        except (OSError, ValueError):
            continue
        if (partition / entry["output"]).exists():
            gone.update(entry["inputs"])
    return gone


def visible_files(lake_dir: Path) -> list[Path]:
    """Every Parquet file a reader should read, each row exactly once."""
    files: list[Path] = []
    for partition in partitions(lake_dir):
        gone = superseded(partition)
        files.extend(
            p
            for p in sorted(partition.glob("*.parquet"))
            if not p.name.startswith(".") and p.name not in gone
        )
    return files
