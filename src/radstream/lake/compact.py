"""Lake upkeep: compaction of small files, and pruning of old partitions.

Compaction of one partition, and why each step is safe to be killed after:

1. write the merged file under a hidden name          (invisible: inputs still count)
2. write the journal under a hidden name, then rename  (commit point; output not yet there,
   it to ``{id}.compaction.json``                      so the inputs still count)
3. rename the merged file to ``compact-{id}.parquet``  (now the output counts, the inputs
                                                        listed in the journal do not)
4. delete the inputs, then the journal                 (cleanup)

A later run finishes or rolls back whatever a killed run left (:func:`recover`).
"""

from __future__ import annotations

import fcntl
import json
import os
import shutil
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from radstream.lake.columns import arrow_schema, conform
from radstream.lake.files import JOURNAL_SUFFIX, partitions, superseded, visible_files


@dataclass(frozen=True)
class CompactionReport:
    """What a compaction did."""

    partitions: int
    files_before: int
    files_after: int
    rows: int


def recover(partition: Path) -> None:
    """Finish committed compactions and remove uncommitted leftovers in ``partition``."""
    gone = superseded(partition)
    for name in gone:
        (partition / name).unlink(missing_ok=True)
    for journal in partition.glob(f"*{JOURNAL_SUFFIX}"):
        if journal.name.startswith("."):
            journal.unlink(missing_ok=True)  # never committed
            continue
        entry = json.loads(journal.read_text())
        if not (partition / entry["output"]).exists():
            # Committed but the output was never renamed into place: roll back.
            (partition / entry["staging"]).unlink(missing_ok=True)
        journal.unlink(missing_ok=True)
    for leftover in partition.glob(".compact-*"):
        leftover.unlink(missing_ok=True)


def compact_partition(partition: Path, *, min_files: int = 2) -> tuple[int, int]:
    """Merge the visible files of one partition into one. Returns (files before, rows)."""
    recover(partition)
    inputs = [p for p in visible_files(partition.parent.parent) if p.parent == partition]
    if len(inputs) < min_files:
        return len(inputs), 0
    schema = arrow_schema()
    merged = pa.concat_tables([conform(pq.read_table(p), schema) for p in inputs])
    cid = uuid.uuid4().hex[:12]
    staging = f".compact-{cid}.parquet.tmp"
    output = f"compact-{cid}.parquet"
    pq.write_table(merged, partition / staging, compression="zstd")
    journal = {"inputs": [p.name for p in inputs], "output": output, "staging": staging}
    pending = partition / f".{cid}{JOURNAL_SUFFIX}"
    pending.write_text(json.dumps(journal))
    os.replace(pending, partition / f"{cid}{JOURNAL_SUFFIX}")  # commit
    os.replace(partition / staging, partition / output)
    recover(partition)
    return len(inputs), merged.num_rows


@contextmanager
def lake_lock(lake_dir: Path) -> Iterator[None]:
    """One upkeep run at a time: two compactions of a partition could both commit its rows."""
    lake_dir.mkdir(parents=True, exist_ok=True)
    with open(lake_dir / ".upkeep.lock", "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def compact_lake(lake_dir: Path, *, min_files: int = 2) -> CompactionReport:
    """Compact every partition with at least ``min_files`` files."""
    before = after = rows = 0
    with lake_lock(lake_dir):
        parts = partitions(lake_dir)
        for partition in parts:
            count, merged_rows = compact_partition(partition, min_files=min_files)
            before += count
            rows += merged_rows
            after += 1 if merged_rows else count
    return CompactionReport(len(parts), before, after, rows)


def prune(lake_dir: Path, *, older_than: timedelta, today: date | None = None) -> list[str]:
    """Delete partitions whose day is older than ``older_than``. Returns the days removed."""
    cutoff = (today or datetime.now(UTC).date()) - older_than
    removed = []
    with lake_lock(lake_dir):
        for day in sorted(lake_dir.glob("dt=*")):
            try:
                day_date = date.fromisoformat(day.name.removeprefix("dt="))
            except ValueError:
                continue
            if day_date < cutoff:
                shutil.rmtree(day)
                removed.append(day.name.removeprefix("dt="))
    return removed
