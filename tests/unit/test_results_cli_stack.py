"""`results … --stack` reads the stack's results bucket through the same reader (the stack's
store is replaced here by a folder store: the wiring is under test, not S3)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from outcome_samples import sample_failure, sample_result
from typer.testing import CliRunner

from radstream.cli import app
from radstream.layout import Bucket, failure_key, result_key
from radstream.local.store import FolderStore


def test_results_list_with_stack_reads_the_stacks_store(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import radstream.aws.outcomes

    store = FolderStore(tmp_path / "stack-buckets")
    store.put(
        Bucket.RESULTS, result_key("s-1", "a"), sample_result("s-1", "a").model_dump_json().encode()
    )
    store.put(
        Bucket.RESULTS,
        failure_key("s-2", "b"),
        sample_failure("s-2", "b").model_dump_json().encode(),
    )
    asked: list[str] = []

    def fake_stack_store(stack: object) -> FolderStore:
        asked.append(getattr(stack, "name", ""))
        return store

    monkeypatch.setattr(radstream.aws.outcomes, "stack_store", fake_stack_store)
    monkeypatch.setenv("RADSTREAM_DATA_DIR", str(tmp_path / "no-local-data"))
    listed = CliRunner().invoke(app, ["results", "list", "--stack", "prod", "--format", "json"])
    assert listed.exit_code == 0, listed.output
    rows = json.loads(listed.stdout)
    assert {(r["study_id"], r["outcome"]) for r in rows} == {
        ("s-1", "succeeded"),
        ("s-2", "failed"),
    }
    assert asked == ["prod"]
    assert not (tmp_path / "no-local-data").exists()  # the local data directory is not needed
