"""The C-STORE receiver bounds a deflated instance before pydicom inflates it for its header.

pydicom inflates a deflated data set whole, even to read the header with
``stop_before_pixels``: 2 MB of deflated zeros would take the receiver to gigabytes. The
handler is called in process with the event pynetdicom would give it (no socket: the wire
itself is covered by the slow tests in test_dicom_receiver.py); the store is a real folder.
"""

from __future__ import annotations

import io
import struct
import zlib
from pathlib import Path
from types import SimpleNamespace

from dicom_samples import dataset
from pydicom.filebase import DicomBytesIO
from pydicom.filewriter import write_file_meta_info
from pydicom.uid import DeflatedExplicitVRLittleEndian

from radstream.dicom import InstanceWriter, Receiver, ReceiverConfig
from radstream.dicom.receiver import CANNOT_UNDERSTAND, OUT_OF_RESOURCES, SUCCESS
from radstream.layout import Bucket
from radstream.local.store import FolderStore

MIB = 1024 * 1024
CR = "1.2.840.10008.5.1.4.1.1.1"


def _event(part10: bytes) -> SimpleNamespace:
    """What ``handle_store`` reads of pynetdicom's event: the request, and the encoded file."""
    request = SimpleNamespace(AffectedSOPClassUID=CR, DataSet=io.BytesIO(part10))
    return SimpleNamespace(request=request, encoded_dataset=lambda: part10)


def _deflated(data_set: bytes) -> bytes:
    ds = dataset("RG1_UNCR.dcm")
    meta = DicomBytesIO()
    meta.write(b"\x00" * 128 + b"DICM")
    ds.file_meta.TransferSyntaxUID = DeflatedExplicitVRLittleEndian
    write_file_meta_info(meta, ds.file_meta)
    packer = zlib.compressobj(9, zlib.DEFLATED, -zlib.MAX_WBITS)
    return meta.getvalue() + packer.compress(data_set) + packer.flush()


def _receiver(tmp_path: Path, max_bytes: int = 64 * MIB) -> tuple[Receiver, FolderStore]:
    store = FolderStore(tmp_path)
    return Receiver(
        ReceiverConfig(port=0, max_instance_bytes=max_bytes), InstanceWriter(store)
    ), store


def test_a_deflated_instance_that_inflates_past_the_limit_is_out_of_resources(
    tmp_path: Path,
) -> None:
    # (0008,0016) first, then a private OB element of 128 MiB of zeros: about 130 kB sent.
    sop_class = struct.pack("<HH2sH", 0x0008, 0x0016, b"UI", 26) + CR.encode() + b"\x00"
    filler = struct.pack("<HH2sHI", 0x0009, 0x1010, b"OB", 0, 128 * MIB)
    bomb = _deflated(sop_class + filler + b"\x00" * (128 * MIB))
    assert len(bomb) < MIB
    receiver, store = _receiver(tmp_path)
    assert receiver.handle_store(_event(bomb)) == OUT_OF_RESOURCES  # type: ignore[arg-type]
    assert store.list(Bucket.IMAGES) == []


def test_a_corrupt_deflated_instance_cannot_be_understood(tmp_path: Path) -> None:
    corrupt = _deflated(b"")[:-2] + b"\xff" * 64
    receiver, store = _receiver(tmp_path)
    assert receiver.handle_store(_event(corrupt)) == CANNOT_UNDERSTAND  # type: ignore[arg-type]
    assert store.list(Bucket.IMAGES) == []


def test_a_real_deflated_instance_is_stored(tmp_path: Path) -> None:
    ds = dataset("RG1_UNCR.dcm")
    ds.file_meta.TransferSyntaxUID = DeflatedExplicitVRLittleEndian
    buffer = io.BytesIO()
    ds.save_as(buffer, enforce_file_format=True)
    receiver, store = _receiver(tmp_path)
    assert receiver.handle_store(_event(buffer.getvalue())) == SUCCESS  # type: ignore[arg-type]
    assert len(store.list(Bucket.IMAGES)) == 2  # the file and its sidecar
