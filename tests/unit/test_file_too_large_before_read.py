"""README: ``IMAGE_FILE_TOO_LARGE`` is "checked before reading": an oversized image's bytes are
never fetched. A store spy fails the test if ``get`` is called for the oversized object."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from radstream.errors import ImageFileTooLarge
from radstream.imaging.options import ImagingLimits, Preprocessing
from radstream.layout import Bucket
from radstream.loadgen.study import make_study
from radstream.local.database import connect
from radstream.local.executor import Executor
from radstream.local.runner import ExecutionRunner
from radstream.local.store import FolderStore
from radstream.settings import Settings
from radstream.stages.prepare import prepare
from radstream.stages.validate import validate_dicom_drop
from support.clocks import FakeClock
from support.fakes import FixedLogitsModel, ListSink

LIMIT = 4096


class NoReadStore(FolderStore):
    """A folder store that refuses to read the objects named in ``forbidden``."""

    forbidden: frozenset[str] = frozenset()
    reads: list[str]

    def get(self, bucket: str, key: str) -> bytes:
        self.reads.append(key)
        if key in self.forbidden:
            pytest.fail(f"read {bucket}/{key}, whose size is over the limit")
        return super().get(bucket, key)


def _store(root: Path, forbidden: set[str], listener: Executor | None = None) -> NoReadStore:
    store = NoReadStore(root, listener=listener)
    store.forbidden = frozenset(forbidden)
    store.reads = []
    return store


def _big_png() -> bytes:
    study = make_study("big", "png", np.random.default_rng(5), width=512, height=512)
    assert len(study.image) > LIMIT
    return study.image


def test_prepare_refuses_by_size_without_reading(tmp_path: Path) -> None:
    key = "incoming/big/big.png"
    store = _store(tmp_path, {key})
    store.put(Bucket.IMAGES, key, _big_png())
    with pytest.raises(ImageFileTooLarge) as raised:
        prepare(
            store,
            Bucket.IMAGES,
            key,
            expected_size=None,
            preprocessing=Preprocessing(size=64),
            limits=ImagingLimits(max_file_bytes=LIMIT),
        )
    assert raised.value.code == "IMAGE_FILE_TOO_LARGE"
    assert store.reads == []


def test_prepare_reads_an_image_at_the_limit(tmp_path: Path) -> None:
    # The control: the same call with the limit at the file's size does read it.
    key = "incoming/big/big.png"
    data = _big_png()
    store = _store(tmp_path, set())
    store.put(Bucket.IMAGES, key, data)
    prepared = prepare(
        store,
        Bucket.IMAGES,
        key,
        expected_size=None,
        preprocessing=Preprocessing(size=64),
        limits=ImagingLimits(max_file_bytes=len(data)),
    )
    assert store.reads == [key] and prepared.image_bytes == len(data)


def test_a_dicom_drop_is_refused_by_size_without_reading(tmp_path: Path) -> None:
    key = "dicom/drop/big.dcm"
    store = _store(tmp_path, {key})
    store.put(Bucket.IMAGES, key, b"\0" * (LIMIT + 1))
    with pytest.raises(ImageFileTooLarge):
        validate_dicom_drop(store, Bucket.IMAGES, key, max_bytes=LIMIT)
    assert store.reads == []


def test_the_pipeline_fails_an_oversized_image_without_reading_it(tmp_path: Path) -> None:
    clock = FakeClock()
    executor = Executor(connect(tmp_path / "e.db"), lease_s=30.0, clock=clock)
    study = make_study("big", "png", np.random.default_rng(5), width=512, height=512)
    image_key = f"incoming/big/{study.image_name}"
    store = _store(tmp_path / "buckets", {image_key}, listener=executor)
    store.put(Bucket.IMAGES, image_key, study.image)
    store.put(Bucket.IMAGES, "incoming/big/big.json", study.sidecar)
    settings = Settings(data_dir=tmp_path / "data", imaging={"max_file_bytes": LIMIT})
    runner = ExecutionRunner(
        store=store,
        executor=executor,
        model=FixedLogitsModel(),
        sink=ListSink(),
        settings=settings,
        worker_id="w1",
        clock=clock,
    )
    claim = executor.claim("w1")
    assert claim is not None
    runner.run(claim)
    [row] = executor.executions()
    assert row["state"] == "failed" and row["error_code"] == "IMAGE_FILE_TOO_LARGE"
    failure = json.loads(store.get(Bucket.RESULTS, "failed/big/big.json"))
    assert failure["error"]["code"] == "IMAGE_FILE_TOO_LARGE"
    assert image_key not in store.reads
