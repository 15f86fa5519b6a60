"""Reading outcomes back from a store: rows, filters, the untrained flag, the export."""

from __future__ import annotations

import csv
import io
from datetime import date
from pathlib import Path

from outcome_samples import sample_failure, sample_result

from radstream.layout import Bucket, failure_key, result_key
from radstream.local.results import ResultFilter, list_results, read_row, to_csv
from radstream.local.store import FolderStore
from radstream.model.labels import CHEXPERT_LABELS
from radstream.model.metadata import STANDIN_NAME


def _store(tmp_path: Path) -> FolderStore:
    store = FolderStore(tmp_path / "buckets")
    ok = sample_result("s-1", "a")
    ok = ok.model_copy(
        update={"probabilities": {"No Finding": 0.1, "Edema": 0.7, "Fracture": None}}
    )
    store.put(Bucket.RESULTS, result_key("s-1", "a"), ok.model_dump_json().encode())
    old = sample_result("s-2", "b")
    standin = old.model.model_copy(update={"name": STANDIN_NAME})  # written before the flag
    old = old.model_copy(update={"model": standin})
    store.put(Bucket.RESULTS, result_key("s-2", "b"), old.model_dump_json().encode())
    bad = sample_failure("s-3", "c")
    store.put(Bucket.RESULTS, failure_key("s-3", "c"), bad.model_dump_json().encode())
    store.put(Bucket.RESULTS, result_key("s-4", "junk"), b"{not json")
    return store


def test_rows_findings_and_flags(tmp_path: Path) -> None:
    store = _store(tmp_path)
    rows = {r.study_id: r for r in list_results(store)}
    assert set(rows) == {"s-1", "s-2", "s-3"}  # an unreadable object is left out
    assert rows["s-1"].summary() == "Edema 0.70, No Finding 0.10"
    assert rows["s-1"].untrained is False and rows["s-1"].trained is None
    assert rows["s-2"].untrained is True  # recognised by the stand-in's name
    assert (rows["s-3"].outcome, rows["s-3"].summary(), rows["s-3"].hint) == ("failed", "X", "h")
    assert read_row(store, "incoming/s-1/a.json") is None


def test_filters(tmp_path: Path) -> None:
    store = _store(tmp_path)
    assert [r.study_id for r in list_results(store, ResultFilter(study="s-1"))] == ["s-1"]
    failed = list_results(store, ResultFilter(outcome="failed"))
    assert [r.study_id for r in failed] == ["s-3"]
    # The failure's time is its failed_at (2024-01-01); results are dated when stored.
    old = list_results(store, ResultFilter(until=date(2024, 1, 1)))
    assert [r.study_id for r in old] == ["s-3"]
    assert list_results(store, ResultFilter(since=date(2999, 1, 1))) == []


def test_export_has_every_label(tmp_path: Path) -> None:
    rows = list(csv.DictReader(io.StringIO(to_csv(list_results(_store(tmp_path))))))
    assert len(rows) == 3
    assert list(rows[0])[-len(CHEXPERT_LABELS) :] == list(CHEXPERT_LABELS)
    by_study = {r["study_id"]: r for r in rows}
    assert by_study["s-1"]["Edema"] == "0.7" and by_study["s-1"]["Fracture"] == ""
    assert by_study["s-3"]["error_code"] == "X" and by_study["s-3"]["Edema"] == ""
