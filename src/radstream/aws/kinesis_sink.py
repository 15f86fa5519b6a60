"""Kinesis telemetry producer for the Lambda handlers: Kinesis → Firehose → Parquet on S3.

Each :class:`~radstream.schema.telemetry.TelemetryRecord` becomes one Kinesis record whose
data is one JSON object and a newline. Firehose concatenates records into its output, and
its OpenX JSON SerDe converts them to Parquet against a Glue table whose columns are the
record's field names, so the JSON keys are exactly those names.

Telemetry must never cost a study: :meth:`KinesisTelemetrySink.emit` only buffers, and
:meth:`KinesisTelemetrySink.flush` never raises and gives up after a time budget, dropping
(and counting) what it could not deliver.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import random
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from botocore.exceptions import ClientError

from radstream.backoff import Backoff, Random
from radstream.schema.telemetry import TelemetryRecord

logger = logging.getLogger("radstream.telemetry")

MAX_RECORD_BYTES = 1024 * 1024
"""Kinesis rejects a record (data + partition key) above 1 MiB, whatever the retries."""
MAX_BATCH_BYTES = 5 * 1024 * 1024
"""Kinesis rejects a whole ``PutRecords`` request above 5 MiB, partition keys included."""
MAX_BATCH_RECORDS = 500
"""Kinesis rejects a whole ``PutRecords`` request of more than 500 records."""
MAX_PARTITION_KEY_CHARS = 256

# Codes that no retry can cure: spending the flush budget on them would only delay every
# Lambda invocation for nothing, so the batch is dropped at once.
_PERMANENT_CODES = frozenset(
    {
        "AccessDeniedException",
        "InvalidArgumentException",
        "ResourceNotFoundException",
        "ValidationException",
    }
)

# Drop reasons that are not AWS error codes; logged next to the AWS codes.
_TOO_LARGE = "RecordTooLarge"
_UNSERIALIZABLE = "Unserializable"
_BUDGET = "FlushBudgetExhausted"


@dataclass(frozen=True)
class KinesisSinkStats:
    """Cumulative delivery counters of one sink, in records.

    ``retried`` counts re-sends: a record re-sent twice counts twice.
    """

    sent: int = 0
    dropped: int = 0
    retried: int = 0


@dataclass(frozen=True)
class _Entry:
    """One encoded record, ready for a ``PutRecords`` request."""

    data: bytes
    partition_key: str
    size: int

    def request(self) -> dict[str, Any]:
        """The entry as PutRecords takes it."""
        return {"Data": self.data, "PartitionKey": self.partition_key}


def hive_timestamp(value: datetime) -> str:
    """``value`` as ``YYYY-MM-DD HH:MM:SS.fff`` in UTC, without a zone.

    Naive datetimes are taken as UTC, as the schema declares every timestamp UTC.
    Milliseconds are truncated, not rounded, so a value never moves into the next second.
    """
    utc = value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
    return f"{utc:%Y-%m-%d %H:%M:%S}.{utc.microsecond // 1000:03d}"


def partition_key(execution_id: str) -> str:
    """The Kinesis partition key of a record: its ``execution_id``.

    One execution's records hash to one shard, so they stay in order there. Kinesis only
    takes keys of 1-256 characters; for ids outside that range the key is the id's SHA-256,
    which is just as deterministic, so the execution still maps to a single shard.
    """
    if 1 <= len(execution_id) <= MAX_PARTITION_KEY_CHARS:
        return execution_id
    return hashlib.sha256(execution_id.encode("utf-8")).hexdigest()


def encode_record(record: TelemetryRecord) -> tuple[bytes, str]:
    """The ``(Data, PartitionKey)`` of one record.

    ``Data`` is one UTF-8 JSON object with the record's field names as keys, then ``\\n``:
    Firehose concatenates the records it delivers, and the newline keeps them separable for
    every reader of the raw objects.
    """
    row = record.model_dump(mode="json")
    for name in type(record).model_fields:
        value = getattr(record, name)
        if isinstance(value, datetime):
            # pydantic writes ISO 8601 with a "T" and a "Z" or an offset such as "+02:00".
            # DuckDB-based emulators (ministack casts the string into a TIMESTAMP column)
            # silently drop such an offset and keep the wall-clock time, and the Hive SerDe
            # paths of real Firehose are strict about the format. The Hive format
            # "YYYY-MM-DD HH:MM:SS.fff", converted to UTC first, is parsed the same by both.
            row[name] = hive_timestamp(value)
        elif isinstance(value, float) and not math.isfinite(value):
            # JSON has no Infinity/NaN; null is what pydantic's own JSON output writes, and
            # it keeps the row instead of failing the whole record in the SerDe.
            row[name] = None
    text = json.dumps(row, ensure_ascii=False, separators=(",", ":"), allow_nan=False)
    return (text + "\n").encode("utf-8"), partition_key(record.execution_id)


def _batches(entries: list[_Entry]) -> Iterator[list[_Entry]]:
    """Greedy, order-preserving split into requests within the count and size limits."""
    batch: list[_Entry] = []
    size = 0
    for entry in entries:
        if batch and (len(batch) == MAX_BATCH_RECORDS or size + entry.size > MAX_BATCH_BYTES):
            yield batch
            batch, size = [], 0
        batch.append(entry)
        size += entry.size
    if batch:
        yield batch


def _error_code(exc: Exception) -> str:
    """A loggable code for a failed call: the AWS error code, else the exception type.

    Never the message: it is not needed to diagnose throttling or outages, and keeping it
    out guarantees nothing from a request ends up in the logs.
    """
    if isinstance(exc, ClientError):
        code = exc.response.get("Error", {}).get("Code")
        if isinstance(code, str) and code:
            return code
    return type(exc).__name__


class KinesisTelemetrySink:
    """A :class:`~radstream.stages.ports.TelemetrySink` writing to a Kinesis data stream.

    ``client`` is a botocore Kinesis client (``AwsTarget.client("kinesis")``). Records are
    buffered by :meth:`emit` and sent by :meth:`flush` in ``PutRecords`` calls of at most
    500 records and 5 MiB. Failed entries are re-sent with the pipeline's backoff
    (:class:`~radstream.backoff.Backoff`, full jitter drawn from ``rng``; by default from
    ``base_delay_s``, doubling), up to ``max_attempts`` calls per batch, while
    ``flush_budget_s`` (measured with ``clock``) lasts; what is left then is dropped and
    counted. The budget is checked between calls: a call already in flight runs to the
    client's own timeouts.

    Delivery is at least once (a reply lost after Kinesis stored the records makes them
    go again), and a re-sent entry lands after its batch's successful ones, so per-execution
    order holds only when no entry of that execution had to be re-sent.
    """

    def __init__(
        self,
        client: Any,
        stream_name: str,
        *,
        flush_budget_s: float = 2.0,
        max_attempts: int = 4,
        base_delay_s: float = 0.05,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.monotonic,
        backoff: Backoff | None = None,
        rng: Random = random.random,
    ) -> None:
        if max_attempts < 1:
            raise ValueError("max_attempts must be at least 1")
        self._client = client
        self._stream_name = stream_name
        self._flush_budget_s = flush_budget_s
        self._max_attempts = max_attempts
        # No wait beyond the flush budget is ever useful: it caps the ceiling.
        self._backoff = backoff or Backoff(
            base_s=base_delay_s, max_s=max(base_delay_s, flush_budget_s), rate=2.0
        )
        self._rng = rng
        self._sleep = sleep
        self._clock = clock
        # emit() may be called from a thread other than the one flushing (a background
        # heartbeat, say); the lock makes taking the buffer atomic.
        self._lock = threading.Lock()
        self._buffer: list[_Entry] = []
        # Drops noticed by emit() wait here to be reported by the next flush's single log line.
        self._pending_drops: Counter[str] = Counter()
        self._sent = 0
        self._dropped = 0
        self._retried = 0

    @property
    def stats(self) -> KinesisSinkStats:
        """Records sent, dropped and re-sent since the sink was made."""
        with self._lock:
            return KinesisSinkStats(sent=self._sent, dropped=self._dropped, retried=self._retried)

    @property
    def buffered(self) -> int:
        """Records waiting for the next flush."""
        with self._lock:
            return len(self._buffer)

    def emit(self, records: Iterable[TelemetryRecord]) -> None:
        """Encode and buffer records; never does network I/O and never raises.

        A record over the 1 MiB Kinesis limit, or one that cannot be encoded, is dropped
        here and counted, since no retry could ever deliver it.
        """
        try:
            for record in records:
                self._buffer_one(record)
        except Exception as exc:
            # Only the caller's iterable can get here; telemetry must not fail the study.
            logger.warning("telemetry: emit stopped early (%s)", type(exc).__name__)

    def _buffer_one(self, record: TelemetryRecord) -> None:
        try:
            data, key = encode_record(record)
        except Exception:
            self._drop_at_emit(_UNSERIALIZABLE)
            return
        size = len(data) + len(key.encode("utf-8"))
        if size > MAX_RECORD_BYTES:
            self._drop_at_emit(_TOO_LARGE)
            return
        with self._lock:
            self._buffer.append(_Entry(data=data, partition_key=key, size=size))

    def _drop_at_emit(self, reason: str) -> None:
        with self._lock:
            self._pending_drops[reason] += 1
            self._dropped += 1

    def flush(self) -> None:
        """Send every buffered record; never raises, and returns within the budget.

        Afterwards the buffer is empty: each record was sent or dropped. Drops are logged
        once, at WARNING, with counts and error codes only.
        """
        try:
            self._flush()
        except Exception as exc:
            # A bug here must still not fail the study; the records taken are lost.
            logger.warning("telemetry: flush failed (%s)", type(exc).__name__)

    def close(self) -> None:
        """Flush; the sink holds no other resource."""
        self.flush()

    def _flush(self) -> None:
        with self._lock:
            entries, self._buffer = self._buffer, []
            drops, self._pending_drops = self._pending_drops, Counter()
        deadline = self._clock() + self._flush_budget_s
        total = len(entries) + sum(drops.values())
        for batch in _batches(entries):
            self._send(batch, deadline, drops)
        if drops:
            codes = ", ".join(f"{code}={n}" for code, n in sorted(drops.items()))
            logger.warning(
                "telemetry: dropped %d of %d records to Kinesis stream %s (%s)",
                sum(drops.values()),
                total,
                self._stream_name,
                codes,
            )

    def _send(self, batch: list[_Entry], deadline: float, drops: Counter[str]) -> None:
        """Deliver one batch, re-sending only failed entries; count the rest as dropped."""
        pending = batch
        attempt = 0
        while True:
            if self._clock() >= deadline:
                self._drop(pending, Counter({_BUDGET: len(pending)}), drops)
                return
            failed, codes = self._put(pending)
            with self._lock:
                self._sent += len(pending) - len(failed)
            if not failed:
                return
            attempt += 1
            if attempt >= self._max_attempts or codes.keys() & _PERMANENT_CODES:
                self._drop(failed, codes, drops)
                return
            # Full jitter: spreads the retries of many concurrent Lambdas over the window
            # instead of having them hit a throttled shard in lockstep.
            delay = self._backoff.delay(attempt, self._rng)
            if self._clock() + delay >= deadline:
                self._drop(failed, codes, drops)
                return
            self._sleep(delay)
            with self._lock:
                self._retried += len(failed)
            pending = failed

    def _put(self, entries: list[_Entry]) -> tuple[list[_Entry], Counter[str]]:
        """One ``PutRecords`` call: the entries that failed and their error codes."""
        try:
            reply = self._client.put_records(
                StreamName=self._stream_name, Records=[e.request() for e in entries]
            )
        except Exception as exc:
            # ClientError (throttling, KMS, …), BotoCoreError (connection, timeouts) and
            # anything else alike: the whole request failed, so every entry is re-sent.
            return entries, Counter({_error_code(exc): len(entries)})
        results = reply.get("Records")
        if not isinstance(results, list) or len(results) != len(entries):
            # Without one result per entry there is no telling which were stored; re-send
            # all (at least once beats silently losing some).
            return entries, Counter({"MalformedReply": len(entries)})
        failed: list[_Entry] = []
        codes: Counter[str] = Counter()
        for entry, result in zip(entries, results, strict=True):
            code = result.get("ErrorCode") if isinstance(result, dict) else "MalformedReply"
            if code:
                failed.append(entry)
                codes[str(code)] += 1
        return failed, codes

    def _drop(self, entries: list[_Entry], codes: Counter[str], drops: Counter[str]) -> None:
        drops.update(codes)
        with self._lock:
            self._dropped += len(entries)
