"""Compaction (also when killed), pruning, and files written before a column existed."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections import Counter
from collections.abc import Callable
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from lake_records import record

from radstream.lake import compact as compact_module
from radstream.lake.compact import compact_lake, prune
from radstream.lake.duckdb_runner import LocalQueryRunner
from radstream.lake.files import visible_files
from radstream.lake.parquet_sink import ParquetSink, read_lake
from radstream.schema.telemetry import TelemetryRecord
from support.waiting import wait_until


def _fragmented_lake(lake: Path, *, hours: int = 3, files_per_hour: int = 4, rows: int = 5) -> None:
    """Several small files per partition, as many workers flushing often leave them."""
    t0 = datetime(2026, 3, 1, 0, 0, tzinfo=UTC)
    n = 0
    for f in range(files_per_hour):
        sink = ParquetSink(lake, writer_id=f"w{f}", flush_rows=10**9, flush_s=10**9)
        for h in range(hours):
            sink.emit(
                record(execution_id=f"e{n + i}", start=t0 + timedelta(hours=h, seconds=i))
                for i in range(rows)
            )
            n += rows
        sink.close()


def _row_ids(lake: Path) -> Counter[str]:
    return Counter(read_lake(lake).column("execution_id").to_pylist())


def test_compaction_merges_and_keeps_every_row_once(tmp_path: Path) -> None:
    lake = tmp_path / "lake"
    _fragmented_lake(lake)
    before = _row_ids(lake)
    assert len(visible_files(lake)) == 12
    report = compact_lake(lake)
    assert (report.partitions, report.files_before, report.files_after) == (3, 12, 3)
    assert len(visible_files(lake)) == 3
    assert _row_ids(lake) == before
    assert set(before.values()) == {1}
    assert compact_lake(lake).rows == 0  # nothing left to merge


@pytest.mark.parametrize("crash_at", [1, 2, 3])
def test_compaction_killed_at_each_step_loses_and_duplicates_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, crash_at: int
) -> None:
    """Stop the compaction at each step (1: before commit, 2: committed, output not in
    place, 3: output in place, inputs not deleted); the lake must read the same."""
    lake = tmp_path / "lake"
    _fragmented_lake(lake, hours=1)
    before = _row_ids(lake)
    real_replace, real_recover = os.replace, compact_module.recover
    calls = {"replace": 0, "recover": 0}

    def replace(src: str | Path, dst: str | Path) -> None:
        calls["replace"] += 1
        if calls["replace"] == crash_at:
            raise KeyboardInterrupt("killed")
        real_replace(src, dst)

    def recover(partition: Path) -> None:
        calls["recover"] += 1
        if crash_at == 3 and calls["recover"] == 2:
            raise KeyboardInterrupt("killed")
        real_recover(partition)

    monkeypatch.setattr(compact_module.os, "replace", replace)
    monkeypatch.setattr(compact_module, "recover", recover)
    with pytest.raises(KeyboardInterrupt):
        compact_lake(lake)
    monkeypatch.undo()
    assert _row_ids(lake) == before
    with LocalQueryRunner(lake) as runner:
        assert runner.run_sql("SELECT count(*) FROM radstream.telemetry").rows == [(20,)]
    compact_lake(lake)  # the next run finishes or rolls back what was left
    assert _row_ids(lake) == before
    assert len(visible_files(lake)) == 1
    leftovers = [p for p in lake.rglob("*") if p.name.startswith(".") and p.name != ".upkeep.lock"]
    assert not leftovers


@pytest.mark.slow  # compactions in child processes
def test_sigkilled_compactions_leave_the_lake_complete(tmp_path: Path) -> None:
    lake = tmp_path / "lake"
    _fragmented_lake(lake, hours=40, files_per_hour=6, rows=20)
    before = _row_ids(lake)
    script = (
        "import sys; from pathlib import Path; from radstream.lake.compact import compact_lake;"
        "compact_lake(Path(sys.argv[1]))"
    )
    mid_way_kills = 0
    for _ in range(6):
        files_before = len(visible_files(lake))
        if files_before == 40:
            break
        proc = subprocess.Popen([sys.executable, "-c", script, str(lake)])
        # Kill as soon as the compaction has visibly made progress: mid-way, for real.
        wait_until(
            lambda p=proc, n=files_before: len(visible_files(lake)) != n or p.poll() is not None,
            "the compaction to make progress or end",
            interval_s=0.005,
        )
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        mid_way_kills += proc.returncode == -signal.SIGKILL
        assert _row_ids(lake) == before
    assert mid_way_kills >= 1
    compact_lake(lake)
    assert _row_ids(lake) == before
    assert len(visible_files(lake)) == 40


def test_files_from_before_a_new_column_still_read(
    tmp_path: Path, write_lake: Callable[[list[TelemetryRecord]], Path]
) -> None:
    lake = write_lake([record(execution_id="new", cost_usd=0.5, variant="A")])
    old = read_lake(lake).drop_columns(["cost_usd", "variant"]).slice(0, 1)
    old = old.set_column(
        old.schema.get_field_index("execution_id"), "execution_id", pa.array(["old"])
    )
    partition = next(lake.glob("dt=*/hour=*"))
    pq.write_table(old, partition / "part-old.parquet")
    with LocalQueryRunner(lake) as runner:
        rows = runner.run_sql(
            "SELECT execution_id, cost_usd, variant FROM radstream.telemetry ORDER BY 1"
        ).rows
    assert rows == [("new", 0.5, "A"), ("old", None, None)]
    compact_lake(lake)
    assert sorted(read_lake(lake).column("execution_id").to_pylist()) == ["new", "old"]


def test_prune_removes_only_old_days(tmp_path: Path) -> None:
    lake = tmp_path / "lake"
    sink = ParquetSink(lake, writer_id="p")
    for days_ago in (0, 10, 31, 90):
        start = datetime(2026, 6, 30, tzinfo=UTC) - timedelta(days=days_ago)
        sink.emit([record(execution_id=f"e{days_ago}", start=start)])
    sink.close()
    removed = prune(lake, older_than=timedelta(days=30), today=date(2026, 6, 30))
    assert removed == ["2026-04-01", "2026-05-30"]
    assert sorted(read_lake(lake).column("execution_id").to_pylist()) == ["e0", "e10"]


def test_a_reader_pairs_journals_and_files_from_one_listing(tmp_path: Path) -> None:
    """The output renamed into place after the reader listed: the inputs still count."""
    from radstream.lake.files import superseded

    partition = tmp_path / "dt=2026-03-01" / "hour=00"
    partition.mkdir(parents=True)
    (partition / "x.compaction.json").write_text(
        '{"inputs": ["a.parquet", "b.parquet"], "output": "compact-x.parquet", "staging": "s"}'
    )
    before_rename = {"a.parquet", "b.parquet", "x.compaction.json"}
    assert superseded(partition, before_rename) == set()
    assert superseded(partition, before_rename | {"compact-x.parquet"}) == {
        "a.parquet",
        "b.parquet",
    }


@pytest.mark.slow  # compactions in child processes
def test_two_compactions_at_once_do_not_duplicate_rows(tmp_path: Path) -> None:
    lake = tmp_path / "lake"
    _fragmented_lake(lake, hours=20, files_per_hour=5, rows=10)
    before = _row_ids(lake)
    script = (
        "import sys; from pathlib import Path; from radstream.lake.compact import compact_lake;"
        "compact_lake(Path(sys.argv[1]))"
    )
    procs = [subprocess.Popen([sys.executable, "-c", script, str(lake)]) for _ in range(2)]
    assert [p.wait(120) for p in procs] == [0, 0]
    assert _row_ids(lake) == before
    assert len(visible_files(lake)) == 20
