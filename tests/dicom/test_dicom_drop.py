"""A DICOM file uploaded without a sidecar (``dicom/{folder}/{file}``) becomes a study.

Real radiographs from pydicom-data, a real folder store, a real SQLite executor and real
worker processes.
"""

from __future__ import annotations

import json
from collections.abc import Callable

import pytest
from dicom_samples import path_of

from radstream.layout import Bucket, dicom_drop_key, result_key, sidecar_key, upload_key
from radstream.local.engine import LocalEngine
from radstream.local.outcomes import collect_outcomes
from radstream.local.pool import WorkerPool
from radstream.settings import Settings

pytestmark = pytest.mark.slow


def test_a_dicom_without_a_sidecar_gets_one_outcome(
    make_settings: Callable[..., Settings],
) -> None:
    settings = make_settings()
    engine = LocalEngine.open(settings)
    store = engine.store
    chest = path_of("RG1_UNCR.dcm").read_bytes()
    extremity = path_of("RG3_UNCR.dcm").read_bytes()
    # PACS exports name files without an extension.
    first = store.put(Bucket.IMAGES, dicom_drop_key("pacs", "IM0001"), chest)
    again = store.put(Bucket.IMAGES, dicom_drop_key("pacs", "IM0001"), chest)  # same bytes
    other = store.put(Bucket.IMAGES, dicom_drop_key("pacs", "IM0002"), extremity)
    # A DICOM with its sidecar under incoming/ is still triggered by the sidecar only.
    store.put(Bucket.IMAGES, upload_key("s1", "a.dcm"), chest)
    paired = store.put(
        Bucket.IMAGES,
        sidecar_key("s1", "a"),
        json.dumps({"study_id": "s1", "view": "PA", "timestamp": "2024-01-01T00:00:00Z"}).encode(),
    )
    assert first.etag == again.etag

    pool = WorkerPool(settings, until_idle=True).start()
    assert pool.wait(timeout=240), "workers did not finish"

    outcomes = {
        o.sidecar_key: o for o in collect_outcomes(engine.executor, store, [first, other, paired])
    }
    assert outcomes[first.key].status == "succeeded"
    assert (outcomes[other.key].status, outcomes[other.key].error_code) == (
        "failed",
        "BODY_PART_UNSUPPORTED",
    )
    assert outcomes[paired.key].status == "succeeded"
    # One execution per file: the repeated put and the paired image started none.
    assert len(engine.executor.executions()) == 3

    import pydicom

    header = pydicom.dcmread(path_of("RG1_UNCR.dcm"), stop_before_pixels=True)
    study = str(header.StudyInstanceUID).replace(".", "-")
    stem = str(header.SOPInstanceUID).replace(".", "-")
    result = json.loads(store.get(Bucket.RESULTS, result_key(study, stem)))
    assert result["sidecar_key"] == result["image_key"] == first.key
    assert result["view"] == "PA"
    paired_result = json.loads(store.get(Bucket.RESULTS, result_key("s1", "a")))
    # The same radiograph, with or without a sidecar: the same probabilities.
    assert paired_result["probabilities"] == result["probabilities"]
    engine.close()
