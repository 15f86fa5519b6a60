"""The Kinesis telemetry producer: against the ministack emulator, and fakes for failures."""

from __future__ import annotations

import json
import logging
import re
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import duckdb
import pytest
from botocore.exceptions import ClientError, EndpointConnectionError

from radstream.aws.kinesis_sink import (
    MAX_BATCH_BYTES,
    MAX_BATCH_RECORDS,
    MAX_RECORD_BYTES,
    KinesisSinkStats,
    KinesisTelemetrySink,
    encode_record,
    partition_key,
)
from radstream.aws.session import AwsTarget
from radstream.backoff import Backoff
from radstream.schema.telemetry import StageStatus, TelemetryRecord
from support.clocks import FakeClock
from support.emulator import REGION, running_emulator
from support.waiting import wait_until

HIVE_TS = re.compile(r"^\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2}\.\d{3}$")
T0 = datetime(2026, 11, 28, 20, 0, 0, 123000, tzinfo=UTC)
THROTTLED = "ProvisionedThroughputExceededException"


def make_record(i: int, execution_id: str = "exec-0", **fields: Any) -> TelemetryRecord:
    """A valid record, unique by ``attempt`` (= i + 1) within its execution."""
    values: dict[str, Any] = {
        "execution_id": execution_id,
        "study_id": f"study-{execution_id}",
        "stage": "infer",
        "status": StageStatus.OK,
        "start_ts": T0 + timedelta(milliseconds=i),
        "end_ts": T0 + timedelta(milliseconds=i + 7),
        "duration_ms": 7.0,
        "attempt": i + 1,
        "worker_id": "lambda-1",
        "pipeline_version": "0.1.0",
        **fields,
    }
    return TelemetryRecord(**values)


def record_size(record: TelemetryRecord) -> int:
    data, key = encode_record(record)
    return len(data) + len(key.encode("utf-8"))


def sized_record(i: int, size: int, execution_id: str = "exec-big") -> TelemetryRecord:
    """A record whose data + partition key is exactly ``size`` bytes (padding error_code)."""
    base = make_record(i, execution_id, error_code="")
    record = make_record(i, execution_id, error_code="x" * (size - record_size(base)))
    assert record_size(record) == size
    return record


def batch_bytes(records: list[dict[str, Any]]) -> int:
    return sum(len(r["Data"]) + len(r["PartitionKey"].encode("utf-8")) for r in records)


class PutRecordsSpy:
    """Delegates to a real client, remembering the ``Records`` of every ``put_records``."""

    def __init__(self, client: Any) -> None:
        self.client = client
        self.calls: list[list[dict[str, Any]]] = []

    def put_records(self, **kwargs: Any) -> Any:
        self.calls.append(list(kwargs["Records"]))
        return self.client.put_records(**kwargs)


class FakeKinesis:
    """Replies to ``put_records`` from a script: a reply dict, an exception, or a function."""

    def __init__(self, *replies: Any, on_call: Callable[[], None] | None = None) -> None:
        self.replies = list(replies)
        self.calls: list[list[dict[str, Any]]] = []
        self.on_call = on_call

    def put_records(self, *, StreamName: str, Records: list[dict[str, Any]]) -> Any:  # noqa: N803
        self.calls.append(list(Records))
        if self.on_call is not None:
            self.on_call()
        reply = self.replies.pop(0) if len(self.replies) > 1 else self.replies[0]
        if callable(reply):
            reply = reply(Records)
        if isinstance(reply, Exception):
            raise reply
        return reply


def all_ok(records: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "FailedRecordCount": 0,
        "Records": [
            {"SequenceNumber": str(n), "ShardId": "shardId-000000000000"}
            for n in range(len(records))
        ],
    }


def throttled(operation: str = "PutRecords") -> ClientError:
    return ClientError(
        {"Error": {"Code": THROTTLED, "Message": "Rate exceeded for stream telemetry"}}, operation
    )


# --- the emulator -------------------------------------------------------------------------


@pytest.fixture(scope="module")
def kinesis(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """A botocore Kinesis client on a ministack started for this module."""
    with running_emulator(tmp_path_factory.mktemp("ministack")) as emu:
        yield AwsTarget(region=REGION, endpoint_url=emu.url).client("kinesis")


def create_stream(client: Any) -> str:
    name = f"telemetry-{uuid.uuid4().hex[:8]}"
    client.create_stream(StreamName=name, ShardCount=1)

    def active() -> bool:
        summary = client.describe_stream_summary(StreamName=name)["StreamDescriptionSummary"]
        return bool(summary["StreamStatus"] == "ACTIVE")

    wait_until(active, f"stream {name} to be ACTIVE", timeout_s=30, interval_s=0.1)
    return name


def read_stream(client: Any, stream: str) -> list[dict[str, Any]]:
    """Every record of every shard, in shard order, from the trim horizon."""
    records: list[dict[str, Any]] = []
    for shard in client.list_shards(StreamName=stream)["Shards"]:
        iterator = client.get_shard_iterator(
            StreamName=stream, ShardId=shard["ShardId"], ShardIteratorType="TRIM_HORIZON"
        )["ShardIterator"]
        # An open shard always hands back a next iterator, so stop on an empty page that is
        # caught up with the tip.
        while iterator:
            reply = client.get_records(ShardIterator=iterator, Limit=1000)
            records.extend(reply["Records"])
            if not reply["Records"] and reply.get("MillisBehindLatest", 0) == 0:
                break
            iterator = reply.get("NextShardIterator")
    return records


def test_records_arrive_once_as_json_lines_keyed_by_execution(kinesis: Any) -> None:
    stream = create_stream(kinesis)
    spy = PutRecordsSpy(kinesis)
    sink = KinesisTelemetrySink(spy, stream)
    executions = [f"exec-{n}" for n in range(7)]
    sent = [make_record(i, executions[i % 7]) for i in range(1200)]
    sink.emit(sent[:700])
    sink.emit(sent[700:])
    sink.flush()

    assert sink.stats == KinesisSinkStats(sent=1200, dropped=0, retried=0)
    assert sink.buffered == 0
    assert [len(c) for c in spy.calls] == [500, 500, 200]

    got = read_stream(kinesis, stream)
    assert len(got) == 1200
    rows = []
    for item in got:
        data = item["Data"]
        assert data.endswith(b"\n")
        assert data.count(b"\n") == 1
        row = json.loads(data)
        assert set(row) == set(TelemetryRecord.model_fields)
        assert HIVE_TS.match(row["start_ts"])
        assert HIVE_TS.match(row["end_ts"])
        assert item["PartitionKey"] == row["execution_id"]
        rows.append(row)

    keys = [(r["execution_id"], r["attempt"]) for r in rows]
    assert len(set(keys)) == 1200
    assert set(keys) == {(r.execution_id, r.attempt) for r in sent}
    # Read back, each row is the record it came from (timestamps as naive UTC).
    by_key = {(r.execution_id, r.attempt): r for r in sent}
    for row in rows:
        original = by_key[(row["execution_id"], row["attempt"])]
        parsed = TelemetryRecord.model_validate(row)
        assert parsed.start_ts.replace(tzinfo=UTC) == original.start_ts
        assert parsed.model_dump(exclude={"start_ts", "end_ts"}) == original.model_dump(
            exclude={"start_ts", "end_ts"}
        )
    # Nothing was re-sent, so each execution's records kept their order in the shard.
    for execution in executions:
        attempts = [r["attempt"] for r in rows if r["execution_id"] == execution]
        assert attempts == sorted(attempts)


def test_batches_stop_at_five_mib_before_five_hundred_records(kinesis: Any) -> None:
    stream = create_stream(kinesis)
    spy = PutRecordsSpy(kinesis)
    sink = KinesisTelemetrySink(spy, stream)
    records = [sized_record(i, 20_000, f"exec-{i % 3}") for i in range(600)]
    sink.emit(records)
    sink.flush()

    assert sink.stats == KinesisSinkStats(sent=600, dropped=0, retried=0)
    sizes = [batch_bytes(c) for c in spy.calls]
    counts = [len(c) for c in spy.calls]
    assert all(s <= MAX_BATCH_BYTES for s in sizes)
    assert all(n < MAX_BATCH_RECORDS for n in counts)
    # Greedy: every batch but the last was full, i.e. one more record would not have fit.
    assert counts == [262, 262, 76]
    assert all(s + 20_000 > MAX_BATCH_BYTES for s in sizes[:-1])
    assert len(read_stream(kinesis, stream)) == 600


def test_exact_limits_are_accepted_by_the_emulator(kinesis: Any) -> None:
    """Six records of exactly 1 MiB: five fill exactly 5 MiB, which Kinesis still takes."""
    stream = create_stream(kinesis)
    spy = PutRecordsSpy(kinesis)
    sink = KinesisTelemetrySink(spy, stream)
    sink.emit(sized_record(i, MAX_RECORD_BYTES) for i in range(6))
    sink.flush()

    assert [len(c) for c in spy.calls] == [5, 1]
    assert batch_bytes(spy.calls[0]) == MAX_BATCH_BYTES
    assert sink.stats == KinesisSinkStats(sent=6, dropped=0, retried=0)
    assert len(read_stream(kinesis, stream)) == 6


# --- failures, with fakes -----------------------------------------------------------------


def test_only_the_failed_entries_are_resent_in_order() -> None:
    """ministack never fails single entries of a PutRecords, so a fake client plays Kinesis."""

    def first(records: list[dict[str, Any]]) -> dict[str, Any]:
        reply = all_ok(records)
        for i in (1, 4):  # records 2 and 5 of 6
            reply["Records"][i] = {"ErrorCode": THROTTLED, "ErrorMessage": "Rate exceeded"}
        reply["FailedRecordCount"] = 2
        return reply

    fake_time = FakeClock()
    client = FakeKinesis(first, all_ok)
    sink = KinesisTelemetrySink(
        client, "telemetry", base_delay_s=0.05, sleep=fake_time.sleep, clock=fake_time.clock
    )
    records = [make_record(i, f"exec-{i}") for i in range(6)]
    sink.emit(records)
    sink.flush()

    assert len(client.calls) == 2
    assert client.calls[0] == [
        {"Data": encode_record(r)[0], "PartitionKey": r.execution_id} for r in records
    ]
    assert client.calls[1] == [client.calls[0][1], client.calls[0][4]]
    assert sink.stats == KinesisSinkStats(sent=6, dropped=0, retried=2)
    assert len(fake_time.sleeps) == 1
    assert 0 <= fake_time.sleeps[0] < 0.05


def test_flush_gives_up_within_the_budget_and_logs_no_record_contents(
    caplog: pytest.LogCaptureFixture,
) -> None:
    fake_time = FakeClock()
    call_starts: list[float] = []

    def slow_call() -> None:
        call_starts.append(fake_time.now)
        fake_time.advance(0.1)

    client = FakeKinesis(throttled(), on_call=slow_call)
    sink = KinesisTelemetrySink(
        client,
        "telemetry",
        flush_budget_s=2.0,
        max_attempts=100,
        sleep=fake_time.sleep,
        clock=fake_time.clock,
        rng=lambda: 0.999,  # the longest backoffs
    )
    records = [make_record(i, f"exec-{i % 4}", study_id=f"1.2.840.{i}") for i in range(600)]
    sink.emit(records)
    start = fake_time.now
    with caplog.at_level(logging.WARNING, logger="radstream.telemetry"):
        sink.flush()

    deadline = start + 2.0
    assert len(client.calls) > 2
    assert all(t < deadline for t in call_starts)
    assert fake_time.now <= deadline + 0.1  # at most the one call in flight at the deadline
    assert sink.stats.sent == 0
    assert sink.stats.dropped == 600
    assert sink.buffered == 0

    warnings = [r for r in caplog.records if r.name == "radstream.telemetry"]
    assert len(warnings) == 1
    assert warnings[0].levelno == logging.WARNING
    message = warnings[0].getMessage()
    assert "600" in message
    assert THROTTLED in message
    assert "1.2.840" not in message
    assert "exec-" not in message

    calls = len(client.calls)
    sink.flush()  # nothing left: no call, no log line
    assert len(client.calls) == calls
    assert len([r for r in caplog.records if r.name == "radstream.telemetry"]) == 1


def test_max_attempts_bounds_the_calls_per_batch() -> None:
    fake_time = FakeClock()
    client = FakeKinesis(EndpointConnectionError(endpoint_url="http://127.0.0.1:1"))
    sink = KinesisTelemetrySink(
        client, "telemetry", max_attempts=3, sleep=fake_time.sleep, clock=fake_time.clock
    )
    sink.emit(make_record(i) for i in range(4))
    sink.flush()

    assert len(client.calls) == 3
    assert all(c == client.calls[0] for c in client.calls)
    assert sink.stats == KinesisSinkStats(sent=0, dropped=4, retried=8)


def test_resends_wait_the_pipeline_backoff_with_the_injected_randomness() -> None:
    fake_time = FakeClock()
    client = FakeKinesis(EndpointConnectionError(endpoint_url="http://127.0.0.1:1"))
    backoff = Backoff(base_s=0.05, max_s=0.15, rate=2.0)
    sink = KinesisTelemetrySink(
        client,
        "telemetry",
        flush_budget_s=10.0,
        max_attempts=4,
        sleep=fake_time.sleep,
        clock=fake_time.clock,
        backoff=backoff,
        rng=lambda: 0.5,
    )
    sink.emit(make_record(i) for i in range(2))
    sink.flush()

    assert len(client.calls) == 4
    # Full jitter under a capped ceiling: half of 0.05, 0.1, then the 0.15 cap.
    assert fake_time.sleeps == pytest.approx([0.025, 0.05, 0.075])
    assert fake_time.sleeps == pytest.approx([backoff.delay(k, lambda: 0.5) for k in (1, 2, 3)])


def test_permanent_errors_are_not_retried(caplog: pytest.LogCaptureFixture) -> None:
    missing = ClientError(
        {"Error": {"Code": "ResourceNotFoundException", "Message": "Stream x not found"}},
        "PutRecords",
    )
    client = FakeKinesis(missing)
    fake_time = FakeClock()
    sink = KinesisTelemetrySink(client, "telemetry", sleep=fake_time.sleep, clock=fake_time.clock)
    sink.emit(make_record(i) for i in range(3))
    with caplog.at_level(logging.WARNING, logger="radstream.telemetry"):
        sink.flush()

    assert len(client.calls) == 1
    assert fake_time.sleeps == []
    assert sink.stats == KinesisSinkStats(sent=0, dropped=3, retried=0)
    assert "ResourceNotFoundException=3" in caplog.text


def test_an_oversized_record_is_dropped_without_a_call(caplog: pytest.LogCaptureFixture) -> None:
    client = FakeKinesis(all_ok)
    sink = KinesisTelemetrySink(client, "telemetry")
    sink.emit([sized_record(0, MAX_RECORD_BYTES + 1)])
    assert sink.buffered == 0
    with caplog.at_level(logging.WARNING, logger="radstream.telemetry"):
        sink.flush()

    assert client.calls == []
    assert sink.stats == KinesisSinkStats(sent=0, dropped=1, retried=0)
    assert "RecordTooLarge=1" in caplog.text
    assert "x" * 100 not in caplog.text


def test_the_largest_record_is_kept_next_to_an_oversized_one() -> None:
    client = FakeKinesis(all_ok)
    sink = KinesisTelemetrySink(client, "telemetry")
    sink.emit([sized_record(0, MAX_RECORD_BYTES + 1), sized_record(1, MAX_RECORD_BYTES)])
    sink.close()

    assert [len(c) for c in client.calls] == [1]
    assert sink.stats == KinesisSinkStats(sent=1, dropped=1, retried=0)


def test_emit_never_raises() -> None:
    def broken() -> Iterator[TelemetryRecord]:
        yield make_record(0)
        raise RuntimeError("caller bug")

    client = FakeKinesis(all_ok)
    sink = KinesisTelemetrySink(client, "telemetry")
    sink.emit(broken())
    no_fields: dict[str, Any] = {}
    sink.emit([TelemetryRecord.model_construct(**no_fields)])  # cannot be encoded
    sink.flush()

    assert [len(c) for c in client.calls] == [1]
    assert sink.stats == KinesisSinkStats(sent=1, dropped=1, retried=0)


def test_five_hundred_records_per_call_at_most() -> None:
    client = FakeKinesis(all_ok)
    sink = KinesisTelemetrySink(client, "telemetry")
    sink.emit(make_record(i) for i in range(1001))
    sink.flush()
    assert [len(c) for c in client.calls] == [500, 500, 1]
    sink.flush()
    assert len(client.calls) == 3


# --- encoding -----------------------------------------------------------------------------


def test_timestamps_are_hive_format_in_utc() -> None:
    record = make_record(
        0,
        start_ts=datetime(2026, 11, 28, 20, 0, 0, 123999, tzinfo=UTC),
        end_ts=datetime(2026, 11, 28, 22, 0, 1, 5000, tzinfo=timezone(timedelta(hours=2))),
    )
    data, key = encode_record(record)
    row = json.loads(data)
    assert row["start_ts"] == "2026-11-28 20:00:00.123"
    assert row["end_ts"] == "2026-11-28 20:00:01.005"
    assert key == record.execution_id

    naive = make_record(0, start_ts=datetime(2026, 1, 2, 3, 4, 5), end_ts=datetime(2026, 1, 2))
    assert json.loads(encode_record(naive)[0])["start_ts"] == "2026-01-02 03:04:05.000"


def test_duckdb_reads_the_timestamps_as_utc() -> None:
    """As ministack's Firehose → Parquet conversion does: the string into a TIMESTAMP column."""
    record = make_record(
        0,
        start_ts=datetime(2026, 11, 28, 22, 0, 0, 123000, tzinfo=timezone(timedelta(hours=2))),
    )
    row = json.loads(encode_record(record)[0])
    con = duckdb.connect()
    try:
        con.execute("CREATE TABLE t (start_ts TIMESTAMP)")
        con.execute("INSERT INTO t VALUES (?)", [row["start_ts"]])
        stored = con.execute("SELECT start_ts FROM t").fetchone()
    finally:
        con.close()
    assert stored == (datetime(2026, 11, 28, 20, 0, 0, 123000),)


def test_non_finite_floats_become_null() -> None:
    row = json.loads(encode_record(make_record(0, duration_ms=float("inf")))[0])
    assert row["duration_ms"] is None


def test_partition_keys_fit_kinesis() -> None:
    assert partition_key("exec-1") == "exec-1"
    long_id = "e" * 300
    assert partition_key(long_id) == partition_key(long_id)
    assert 1 <= len(partition_key(long_id)) <= 256
    assert 1 <= len(partition_key("")) <= 256
