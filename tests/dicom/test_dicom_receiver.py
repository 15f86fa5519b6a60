"""The DICOM receiver, driven by pynetdicom's own SCU with real radiographs, then the pipeline.

Listens on a socket, and the last test starts worker processes: slow.
"""

from __future__ import annotations

import io
import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from types import SimpleNamespace

import pydicom
import pytest
from dicom_samples import dataset
from pydicom.dataset import Dataset
from pydicom.filewriter import dcmwrite
from pydicom.uid import (
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
    JPEG2000Lossless,
    JPEGLSLossless,
    generate_uid,
)
from pynetdicom import AE
from pynetdicom.association import Association
from pynetdicom.sop_class import (  # type: ignore[attr-defined]
    ComputedRadiographyImageStorage,
    MRImageStorage,
    Verification,
)

from radstream.dicom import InstanceWriter, Receiver, ReceiverConfig, decodable_syntaxes
from radstream.dicom.receiver import (
    DATA_SET_MISMATCH,
    OUT_OF_RESOURCES,
    SOP_CLASS_NOT_SUPPORTED,
    SUCCESS,
)
from radstream.layout import Bucket
from radstream.local.engine import LocalEngine
from radstream.local.outcomes import collect_outcomes
from radstream.local.pool import WorkerPool
from radstream.settings import Settings

pytestmark = pytest.mark.slow

SENT_SYNTAXES = (ExplicitVRLittleEndian, ImplicitVRLittleEndian, JPEG2000Lossless, JPEGLSLossless)


@dataclass
class Running:
    receiver: Receiver
    engine: LocalEngine

    @property
    def port(self) -> int:
        return self.receiver.address[1]


@pytest.fixture
def settings(make_settings: Callable[..., Settings]) -> Settings:
    return make_settings()


def _start(settings: Settings, **config: object) -> Iterator[Running]:
    engine = LocalEngine.open(settings)
    receiver = Receiver(ReceiverConfig(port=0, **config), InstanceWriter(engine.store))  # type: ignore[arg-type]
    receiver.start()
    try:
        yield Running(receiver, engine)
    finally:
        receiver.stop()
        engine.close()


@pytest.fixture
def running(settings: Settings) -> Iterator[Running]:
    yield from _start(settings, allow_ae=("MODALITY",))


def _associate(port: int, calling: str = "MODALITY", *, mr: bool = False) -> Association:
    ae = AE(ae_title=calling)
    for syntax in SENT_SYNTAXES:
        ae.add_requested_context(ComputedRadiographyImageStorage, syntax)
    if mr:
        ae.add_requested_context(MRImageStorage, ExplicitVRLittleEndian)
    ae.add_requested_context(Verification)
    return ae.associate("127.0.0.1", port, ae_title="RADSTREAM")


def _instance(name: str, syntax: str | None = None) -> Dataset:
    """A real file, with its own SOP Instance UID (each encoding is a separate instance)."""
    ds = dataset(name)
    if syntax == JPEGLSLossless:
        ds.compress(JPEGLSLossless, generate_instance_uid=False)
    elif syntax == ImplicitVRLittleEndian:
        ds.file_meta.TransferSyntaxUID = ImplicitVRLittleEndian
        buffer = io.BytesIO()
        dcmwrite(buffer, ds, implicit_vr=True, little_endian=True, enforce_file_format=True)
        ds = pydicom.dcmread(io.BytesIO(buffer.getvalue()))
    ds.SOPInstanceUID = generate_uid()
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    return ds


def _send(port: int, *instances: Dataset) -> list[int]:
    assoc = _associate(port)
    assert assoc.is_established
    try:
        return [int(assoc.send_c_store(ds).Status) for ds in instances]
    finally:
        assoc.release()


def test_offers_every_decodable_transfer_syntax() -> None:
    syntaxes = decodable_syntaxes()
    for syntax in (*SENT_SYNTAXES, "1.2.840.10008.1.2.4.70", "1.2.840.10008.1.2.5"):
        assert syntax in syntaxes


def test_echo(running: Running) -> None:
    assoc = _associate(running.port)
    assert assoc.is_established
    assert int(assoc.send_c_echo().Status) == SUCCESS
    assoc.release()


def test_an_ae_not_on_the_allow_list_is_rejected(running: Running) -> None:
    assoc = _associate(running.port, calling="INTRUDER")
    assert assoc.is_rejected and not assoc.is_established
    assert running.engine.store.list(Bucket.IMAGES) == []


def test_another_sop_class_is_refused(running: Running) -> None:
    assoc = _associate(running.port, mr=True)
    assert assoc.is_established
    rejected = {cx.abstract_syntax for cx in assoc.rejected_contexts}
    assert MRImageStorage in rejected
    with pytest.raises(ValueError, match="presentation context"):
        assoc.send_c_store(dataset("MR2_UNCR.dcm"))
    assoc.release()
    # A C-STORE that names a SOP class outside the accepted ones gets 0x0122.
    request = SimpleNamespace(AffectedSOPClassUID=MRImageStorage)
    assert running.receiver.handle_store(SimpleNamespace(request=request)) == 0x0122  # type: ignore[arg-type]
    assert SOP_CLASS_NOT_SUPPORTED == 0x0122
    assert running.engine.store.list(Bucket.IMAGES) == []


def test_an_instance_over_the_size_limit_is_out_of_resources(settings: Settings) -> None:
    for small in _start(settings, max_instance_bytes=100_000):
        assert _send(small.port, _instance("RG1_UNCR.dcm")) == [OUT_OF_RESOURCES]
        assert small.engine.store.list(Bucket.IMAGES) == []


def test_a_header_without_study_uid_and_date_is_refused(running: Running) -> None:
    ds = _instance("RG1_UNCR.dcm")
    del ds.StudyInstanceUID
    ds.AccessionNumber = ""
    assert _send(running.port, ds) == [DATA_SET_MISMATCH]


def test_associations_are_bounded(settings: Settings) -> None:
    for one in _start(settings, max_associations=1):
        first = _associate(one.port)
        assert first.is_established
        second = _associate(one.port)
        assert second.is_rejected
        first.release()


def test_received_instances_each_get_an_outcome(settings: Settings, running: Running) -> None:
    chest = [_instance("RG1_UNCR.dcm", syntax) for syntax in SENT_SYNTAXES[:2]]
    chest.append(_instance("RG1_J2KR.dcm"))
    chest.append(_instance("RG1_UNCR.dcm", JPEGLSLossless))
    extremity = _instance("RG3_UNCR.dcm")
    assert _send(running.port, *chest, extremity) == [SUCCESS] * 5

    store = running.engine.store
    sidecars = [k for k in store.list(Bucket.IMAGES) if k.endswith(".json")]
    assert len(sidecars) == 5
    # Image first, sidecar last, each pair under the study's folder.
    for key in sidecars:
        assert store.head(Bucket.IMAGES, key.removesuffix(".json") + ".dcm") is not None
    infos = [i for i in (store.head(Bucket.IMAGES, k) for k in sidecars) if i is not None]

    pool = WorkerPool(settings, until_idle=True).start()
    assert pool.wait(timeout=240), "workers did not finish"
    outcomes = {
        o.sidecar_key: o
        for o in collect_outcomes(running.engine.executor, running.engine.store, infos)
    }
    extremity_stem = str(extremity.SOPInstanceUID).replace(".", "-")
    probabilities = []
    for key, outcome in outcomes.items():
        if extremity_stem in key:
            assert (outcome.status, outcome.error_code) == ("failed", "BODY_PART_UNSUPPORTED")
            continue
        assert outcome.status == "succeeded", (key, outcome)
        result_key = key.replace("incoming/", "results/", 1)
        result = json.loads(store.get(Bucket.RESULTS, result_key))
        assert result["view"] == "PA" and result["view_mismatch"] is None
        assert result["preprocessing"]["source_format"] == "dicom"
        probabilities.append(result["probabilities"])
    # Lossless encodings of one radiograph: the same probabilities.
    assert len(probabilities) == 4
    assert all(p == probabilities[0] for p in probabilities)
