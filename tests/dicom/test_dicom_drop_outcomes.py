"""Every DICOM drop upload ends as one outcome object, whichever of its runs came last.

A drop that fails before its header is read is filed under its upload folder and file;
once its header reads, its outcome lives under the header's study and SOP instance. The
local runner over a real folder store and SQLite executor, on a fake clock, in process.
"""

from __future__ import annotations

import json
from pathlib import Path

import pydicom
from dicom_samples import dataset, path_of, to_bytes

from radstream.layout import Bucket, dicom_drop_key, failure_key, result_key
from radstream.local.database import connect
from radstream.local.executor import Executor
from radstream.local.runner import ExecutionRunner
from radstream.local.store import FolderStore
from radstream.settings import Settings
from support.clocks import FakeClock
from support.fakes import FixedLogitsModel, ListSink


class Pipeline:
    """A store whose puts start executions, and a runner that runs them to the end."""

    def __init__(self, tmp_path: Path) -> None:
        self.clock = FakeClock()
        self.executor = Executor(connect(tmp_path / "e.db"), lease_s=30.0, clock=self.clock)
        self.store = FolderStore(tmp_path / "buckets", listener=self.executor)
        settings = Settings(data_dir=tmp_path / "data", engine={"image_wait_s": 5.0})
        self.runner = ExecutionRunner(
            store=self.store,
            executor=self.executor,
            model=FixedLogitsModel(),
            sink=ListSink(),
            settings=settings,
            worker_id="w1",
            rng=lambda: 0.5,
            clock=self.clock,
        )

    def run_until_idle(self) -> None:
        for _ in range(200):
            claim = self.executor.claim("w1")
            if claim is not None:
                self.runner.run(claim)
            elif self.executor.idle():
                return
            else:
                self.clock.advance(1.0)
        raise AssertionError("the executions did not finish")

    def outcomes(self) -> dict[str, dict[str, object]]:
        """Every outcome object in the results bucket, by key."""
        return {
            key: json.loads(self.store.get(Bucket.RESULTS, key))
            for key in self.store.list(Bucket.RESULTS)
        }


def _header_keys() -> tuple[str, str]:
    header = pydicom.dcmread(path_of("RG1_UNCR.dcm"), stop_before_pixels=True)
    study = str(header.StudyInstanceUID).replace(".", "-")
    stem = str(header.SOPInstanceUID).replace(".", "-")
    return result_key(study, stem), failure_key(study, stem)


def test_a_drop_that_failed_validate_then_succeeds_ends_with_its_result_only(
    tmp_path: Path,
) -> None:
    pipeline = Pipeline(tmp_path)
    key = dicom_drop_key("pacs", "IM0001")
    # First export: the header lacks the UIDs the study id comes from.
    incomplete = dataset("RG1_UNCR.dcm")
    del incomplete.StudyInstanceUID
    incomplete.AccessionNumber = ""
    pipeline.store.put(Bucket.IMAGES, key, to_bytes(incomplete))
    pipeline.run_until_idle()
    [(first_key, failure)] = pipeline.outcomes().items()
    assert first_key == failure_key("dicom~pacs", "IM0001")  # never a sidecar upload's key
    assert failure["sidecar_key"] == key

    # Exported again, complete, to the same key: the result replaces the failure.
    pipeline.store.put(Bucket.IMAGES, key, path_of("RG1_UNCR.dcm").read_bytes())
    pipeline.run_until_idle()
    result, _ = _header_keys()
    outcomes = pipeline.outcomes()
    assert list(outcomes) == [result]
    assert outcomes[result]["sidecar_key"] == key


def test_a_drop_that_fails_after_its_header_is_read_is_replaced_as_before(
    tmp_path: Path,
) -> None:
    # The failure of a drop whose header was read is under the header's keys already.
    pipeline = Pipeline(tmp_path)
    key = dicom_drop_key("pacs", "IM0002")
    chest = dataset("RG1_UNCR.dcm")
    chest.BodyPartExamined = "HAND"
    pipeline.store.put(Bucket.IMAGES, key, to_bytes(chest))
    pipeline.run_until_idle()
    result, failure = _header_keys()
    assert list(pipeline.outcomes()) == [failure]
    pipeline.store.put(Bucket.IMAGES, key, path_of("RG1_UNCR.dcm").read_bytes())
    pipeline.run_until_idle()
    assert list(pipeline.outcomes()) == [result]


def test_a_drop_and_a_sidecar_upload_of_one_folder_and_name_never_share_a_failure(
    tmp_path: Path,
) -> None:
    # dicom/s1/a.dcm and incoming/s1/a.json once both failed into failed/s1/a.json, and a
    # later success of the drop deleted the sidecar upload's only outcome.
    pipeline = Pipeline(tmp_path)
    pipeline.store.put(Bucket.IMAGES, dicom_drop_key("s1", "a.dcm"), b"not dicom")
    pipeline.store.put(Bucket.IMAGES, "incoming/s1/a.json", b"{not json")
    pipeline.run_until_idle()
    outcomes = pipeline.outcomes()
    assert set(outcomes) == {failure_key("dicom~s1", "a"), failure_key("s1", "a")}
    assert {o["sidecar_key"] for o in outcomes.values()} == {"dicom/s1/a.dcm", "incoming/s1/a.json"}
