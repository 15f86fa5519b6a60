"""Folder store: atomic writes, ETags, key safety, events."""

from __future__ import annotations

from pathlib import Path

import pytest

from radstream.errors import StoreKeyInvalid, StoreObjectMissing
from radstream.local.database import connect
from radstream.local.executor import Executor
from radstream.local.store import FolderStore, etag_of
from radstream.stages.ports import ObjectInfo


class Recorder:
    def __init__(self) -> None:
        self.events: list[ObjectInfo] = []

    def object_created(self, info: ObjectInfo) -> None:
        self.events.append(info)


def test_put_get_head_list(tmp_path: Path) -> None:
    rec = Recorder()
    store = FolderStore(tmp_path, listener=rec)
    info = store.put("images", "incoming/a/x.png", b"abc")
    assert info.etag == etag_of(b"abc") == "ba7816bf8f01cfea414140de5dae2223"
    assert store.get("images", "incoming/a/x.png") == b"abc"
    head = store.head("images", "incoming/a/x.png")
    assert head is not None and head.size == 3
    store.put("images", "incoming/a/x.json", b"{}")
    store.put("images", "incoming/b/y.json", b"{}")
    assert store.list("images", "incoming/a/") == ["incoming/a/x.json", "incoming/a/x.png"]
    assert store.list("images", "incoming/a/x.") == ["incoming/a/x.json", "incoming/a/x.png"]
    assert store.list("images") == ["incoming/a/x.json", "incoming/a/x.png", "incoming/b/y.json"]
    assert [e.key for e in rec.events] == [
        "incoming/a/x.png",
        "incoming/a/x.json",
        "incoming/b/y.json",
    ]
    assert (tmp_path / "images" / "incoming" / "a" / "x.png").read_bytes() == b"abc"


def test_overwrite_keeps_the_last_value_and_no_temp_files(tmp_path: Path) -> None:
    store = FolderStore(tmp_path)
    for i in range(20):
        store.put("results", "r/a.json", str(i).encode())
    assert store.get("results", "r/a.json") == b"19"
    assert not any((tmp_path / "results" / ".tmp").iterdir())


def test_missing_object(tmp_path: Path) -> None:
    store = FolderStore(tmp_path)
    with pytest.raises(StoreObjectMissing):
        store.get("images", "nope")
    assert store.head("images", "nope") is None


@pytest.mark.parametrize(
    "key", ["../x", "a/../../x", "/etc/passwd", "a//b", "", "a/./b", "a\\b", "a\n/b", "a/b\n"]
)
def test_unsafe_keys_are_refused(tmp_path: Path, key: str) -> None:
    store = FolderStore(tmp_path)
    with pytest.raises(StoreKeyInvalid):
        store.put("images", key, b"x")


def test_unknown_bucket_is_refused(tmp_path: Path) -> None:
    with pytest.raises(StoreKeyInvalid):
        FolderStore(tmp_path).put("../images", "a", b"x")


def test_puts_from_two_stores_reach_one_event_log(tmp_path: Path) -> None:
    # Two "processes": each opens its own connection to the same database file.
    a = Executor(connect(tmp_path / "engine.db"))
    b = Executor(connect(tmp_path / "engine.db"))
    FolderStore(tmp_path / "buckets", listener=a).put("images", "incoming/s/x.json", b"{}")
    FolderStore(tmp_path / "buckets", listener=b).put("images", "incoming/t/y.json", b"{}")
    assert a.route() == 2
    assert b.counts()["pending"] == 2


def test_reconcile_finds_strays_and_requeues_unrouted_sidecars(tmp_path: Path) -> None:
    from radstream.local.reconcile import reconcile, requeue

    executor = Executor(connect(tmp_path / "engine.db"))
    store = FolderStore(tmp_path / "buckets", listener=executor)
    store.put("images", "incoming/a/x.png", b"img")
    store.put("images", "incoming/a/x.json", b"{}")
    store.put("images", "incoming/b/y.JPG", b"img")
    # A put whose process died before its event was recorded: no listener.
    FolderStore(tmp_path / "buckets").put("images", "incoming/c/z.json", b"{}")
    executor.route()
    found = reconcile(store, executor, older_than_s=0)
    assert [s.key for s in found.orphan_images] == ["incoming/b/y.JPG"]
    assert [s.key for s in found.unrouted_sidecars] == ["incoming/c/z.json"]
    assert reconcile(store, executor, older_than_s=3600).orphan_images == []
    assert requeue(store, executor, found.unrouted_sidecars) == 1
    executor.route()
    assert reconcile(store, executor, older_than_s=0).unrouted_sidecars == []
    assert executor.counts()["pending"] == 2


def test_an_outcome_replaces_the_opposite_outcome_of_an_earlier_upload(tmp_path: Path) -> None:
    from outcome_samples import sample_failure, sample_result

    from radstream.stages.store import failure_key, record_failure, result_key, store_result

    store = FolderStore(tmp_path)
    record_failure(store, sample_failure("st", "img"))
    assert store.exists("results", failure_key("st", "img"))
    store_result(store, sample_result("st", "img"))
    assert store.exists("results", result_key("st", "img"))
    assert not store.exists("results", failure_key("st", "img"))
    record_failure(store, sample_failure("st", "img"))
    assert not store.exists("results", result_key("st", "img"))


def test_uploader_survives_hostile_sidecars() -> None:
    from radstream.loadgen.uploader import study_folder_for

    assert study_folder_for(b"[" * 200_000, "stem") == "stem"
    assert study_folder_for(b'{"study_id": "../x"}', "a b") == "a_b"
    assert study_folder_for(b'{"study_id": "ok-1"}', "stem") == "ok-1"
    assert study_folder_for(b'{"study_id": "S1\n"}', "stem") == "stem"
