"""Reading outcomes back: the result and failure objects of a store, as rows to show.

Works on any :class:`~radstream.stages.ports.ObjectStore` (the local folder store, or a
deployed stack's buckets), because it reads only the public outcome objects
(``results/{study}/{stem}.json`` and ``failed/{study}/{stem}.json``), never an engine's
private state. ``radstream results`` and the per-study lines of ``run``, ``serve`` and
``upload`` are built from these rows.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Literal

from pydantic import ValidationError

from radstream.layout import FAILED, RESULTS, Bucket, outcome_kind
from radstream.model.labels import CHEXPERT_LABELS
from radstream.model.metadata import STANDIN_NAME, UNTRAINED_NOTE
from radstream.schema.outcome import Failure, Result
from radstream.stages.ports import ObjectStore

__all__ = ["UNTRAINED_NOTE", "ResultFilter", "ResultRow", "list_results", "read_row"]

ResultOutcome = Literal["succeeded", "failed"]
TOP_FINDINGS = 3


@dataclass(frozen=True)
class Finding:
    """One label and its probability."""

    label: str
    probability: float


@dataclass(frozen=True)
class ResultRow:
    """One image's outcome, read from its result or failure object."""

    study_id: str
    image_id: str
    outcome: ResultOutcome
    key: str
    at: float
    """Epoch seconds: when the outcome was written (failure) or stored (result)."""
    probabilities: dict[str, float | None] = field(default_factory=dict)
    model: str | None = None
    trained: bool | None = None
    error_code: str | None = None
    message: str | None = None
    hint: str | None = None

    @property
    def findings(self) -> list[Finding]:
        """Every label with a probability, most probable first."""
        found = [Finding(k, v) for k, v in self.probabilities.items() if v is not None]
        return sorted(found, key=lambda f: -f.probability)

    @property
    def untrained(self) -> bool:
        """True when the stand-in (or any model marked untrained) produced this result."""
        return self.trained is False

    @property
    def time(self) -> str:
        """``at`` as ISO 8601 UTC, to the second."""
        return datetime.fromtimestamp(self.at, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")

    def summary(self, top: int = TOP_FINDINGS) -> str:
        """``Effusion 0.62, Atelectasis 0.41`` for a result; the error code for a failure."""
        if self.outcome == "failed":
            return self.error_code or "failed"
        return ", ".join(f"{f.label} {f.probability:.2f}" for f in self.findings[:top])


def read_row(store: ObjectStore, key: str) -> ResultRow | None:
    """The row of the outcome object ``key``; None if it is absent or not an outcome."""
    kind = outcome_kind(key)
    if kind is None:
        return None
    try:
        data = store.get(Bucket.RESULTS, key)
    except Exception:  # gone meanwhile (a re-run replaced it), or unreadable: not shown
        return None
    try:
        if kind == "result":
            return _result_row(store, key, Result.model_validate_json(data))
        return _failure_row(key, Failure.model_validate_json(data))
    except (ValidationError, ValueError):
        return None


def _result_row(store: ObjectStore, key: str, result: Result) -> ResultRow:
    info = store.head(Bucket.RESULTS, key)
    trained = result.model.trained
    if trained is None and result.model.name == STANDIN_NAME:
        trained = False  # written before results carried the flag
    return ResultRow(
        study_id=result.study_id,
        image_id=result.image_id,
        outcome="succeeded",
        key=key,
        at=info.modified if info is not None else 0.0,
        probabilities=dict(result.probabilities),
        model=f"{result.model.name} v{result.model.version}",
        trained=trained,
    )


def _failure_row(key: str, failure: Failure) -> ResultRow:
    return ResultRow(
        study_id=failure.study_id,
        image_id=failure.image_id,
        outcome="failed",
        key=key,
        at=failure.failed_at.timestamp(),
        error_code=failure.error.code,
        message=failure.error.message,
        hint=failure.error.hint,
    )


@dataclass(frozen=True)
class ResultFilter:
    """Which rows ``list_results`` keeps; a field left None keeps everything."""

    study: str | None = None
    outcome: ResultOutcome | None = None
    since: date | None = None
    until: date | None = None
    """Inclusive, by the UTC date of ``at``."""

    def keeps(self, row: ResultRow) -> bool:
        """Whether ``row`` passes every filter given."""
        day = datetime.fromtimestamp(row.at, UTC).date()
        return (
            (self.outcome is None or row.outcome == self.outcome)
            and (self.since is None or day >= self.since)
            and (self.until is None or day <= self.until)
        )


def list_results(store: ObjectStore, where: ResultFilter | None = None) -> list[ResultRow]:
    """Every outcome in ``store`` that passes ``where``, oldest first."""
    where = where or ResultFilter()
    study = f"{where.study}/" if where.study else ""
    prefixes = {"succeeded": [RESULTS], "failed": [FAILED], None: [RESULTS, FAILED]}
    rows = []
    for prefix in prefixes[where.outcome]:
        for key in store.list(Bucket.RESULTS, prefix + study):
            row = read_row(store, key)
            if row is not None and where.keeps(row):
                rows.append(row)
    return sorted(rows, key=lambda r: (r.at, r.study_id, r.image_id))


def export_columns() -> list[str]:
    """The columns of ``export``: identity, outcome, then one per CheXpert label."""
    return [
        "study_id",
        "image_id",
        "outcome",
        "time",
        "model",
        "model_trained",
        "error_code",
        *CHEXPERT_LABELS,
    ]


ExportValue = str | float | bool | None


def export_records(rows: Iterable[ResultRow]) -> list[dict[str, ExportValue]]:
    """One record per image with every label (None where the model has no such output)."""
    records: list[dict[str, ExportValue]] = []
    for row in rows:
        record: dict[str, ExportValue] = {
            "study_id": row.study_id,
            "image_id": row.image_id,
            "outcome": row.outcome,
            "time": row.time,
            "model": row.model,
            "model_trained": row.trained,
            "error_code": row.error_code,
        }
        for label in CHEXPERT_LABELS:
            record[label] = row.probabilities.get(label)
        records.append(record)
    return records


def to_csv(rows: Sequence[ResultRow]) -> str:
    """The export as CSV text (empty cells for missing values)."""
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=export_columns(), lineterminator="\n")
    writer.writeheader()
    for record in export_records(rows):
        writer.writerow({k: "" if v is None else v for k, v in record.items()})
    return buffer.getvalue()


def write_parquet(rows: Sequence[ResultRow], path: Path) -> None:
    """The export as a Parquet file at ``path``."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    records = export_records(rows)
    columns = export_columns()
    types = {
        "model_trained": pa.bool_(),
        **{label: pa.float64() for label in CHEXPERT_LABELS},
    }
    schema = pa.schema([(c, types.get(c, pa.string())) for c in columns])
    table = pa.Table.from_pylist(records, schema=schema)
    pq.write_table(table, path)


def to_json(rows: Sequence[ResultRow]) -> str:
    """The rows as a JSON list (``results list --format json``)."""
    doc = [
        {
            "study_id": r.study_id,
            "image_id": r.image_id,
            "outcome": r.outcome,
            "time": r.time,
            "key": r.key,
            "top_findings": [
                {"label": f.label, "probability": round(f.probability, 4)}
                for f in r.findings[:TOP_FINDINGS]
            ],
            "model": r.model,
            "model_trained": r.trained,
            "error_code": r.error_code,
        }
        for r in rows
    ]
    return json.dumps(doc)
