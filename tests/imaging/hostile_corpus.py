"""A hostile corpus: files built to make a decoder allocate far more than they weigh.

Each sample names the code it must fail with (``None``: the largest image the limits
allow, which must decode within the memory bound too). Built in memory; building the
deflate bomb never holds its inflated gigabytes either.
"""

from __future__ import annotations

import io
import struct
import zlib
from dataclasses import dataclass
from typing import Final

import numpy as np
from PIL import Image
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.encaps import encapsulate
from pydicom.filebase import DicomBytesIO
from pydicom.filewriter import write_dataset, write_file_meta_info
from pydicom.uid import (
    DeflatedExplicitVRLittleEndian,
    ExplicitVRLittleEndian,
    JPEGBaseline8Bit,
    RLELossless,
    generate_uid,
)

from radstream.loadgen.bad_inputs import huge_png_header

CR_IMAGE_STORAGE: Final = "1.2.840.10008.5.1.4.1.1.1"
DEFLATE_BOMB_BYTES: Final = 2 * 1024**3
"""What the deflate bomb inflates to: more than the 1.5 GB bound on its own."""
_CHUNK: Final = 16 * 1024 * 1024


@dataclass(frozen=True)
class Sample:
    """One hostile file, and what must become of it."""

    name: str
    data: bytes
    expected_code: str | None
    sidecar_less: bool = False
    """Upload it as a DICOM drop (``dicom/{folder}/{file}``): ``validate`` reads it first."""


def _png16(width: int, height: int) -> bytes:
    """A valid 16-bit grey PNG of zeros: a few hundred kB that decode to ``2*w*h`` bytes."""
    ihdr = struct.pack(">IIBBBBB", width, height, 16, 0, 0, 0, 0)
    packer = zlib.compressobj(9)
    row = b"\x00" * (1 + 2 * width)  # filter byte, then the row
    idat = b"".join(packer.compress(row) for _ in range(height)) + packer.flush()
    return (
        b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", ihdr) + _chunk(b"IDAT", idat) + _chunk(b"IEND", b"")
    )


def _chunk(kind: bytes, payload: bytes) -> bytes:
    crc = zlib.crc32(kind + payload) & 0xFFFFFFFF
    return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", crc)


def _jpeg(width: int, height: int) -> bytes:
    pixels = (np.random.default_rng(5).random((height, width)) * 255).astype(np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, "JPEG", quality=90)
    return buffer.getvalue()


def _forge_jpeg_size(jpeg: bytes, width: int, height: int) -> bytes:
    """The same stream with its frame header (SOF0) claiming ``width`` x ``height``."""
    sof = jpeg.index(b"\xff\xc0")
    patched = bytearray(jpeg)
    patched[sof + 5 : sof + 7] = height.to_bytes(2, "big")
    patched[sof + 7 : sof + 9] = width.to_bytes(2, "big")
    return bytes(patched)


def _dataset(rows: int, columns: int, *, bits: int = 16, frames: int | None = None) -> Dataset:
    ds = Dataset()
    ds.SOPClassUID = CR_IMAGE_STORAGE
    ds.SOPInstanceUID = generate_uid()
    ds.StudyInstanceUID = generate_uid()
    ds.StudyDate, ds.StudyTime = "20240101", "120000"
    ds.Modality = "CR"
    ds.BodyPartExamined = "CHEST"
    ds.ViewPosition = "PA"
    ds.Rows, ds.Columns = rows, columns
    if frames is not None:
        ds.NumberOfFrames = frames
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.BitsAllocated = bits
    ds.BitsStored = bits
    ds.HighBit = bits - 1
    ds.PixelRepresentation = 0
    return ds


def _meta(ds: Dataset, syntax: str) -> FileMetaDataset:
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = ds.SOPClassUID
    meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    meta.TransferSyntaxUID = syntax
    return meta


def _part10(ds: Dataset, syntax: str) -> bytes:
    ds.file_meta = _meta(ds, syntax)
    buffer = io.BytesIO()
    ds.save_as(buffer, enforce_file_format=True, implicit_vr=False, little_endian=True)
    return buffer.getvalue()


def _explicit_le(ds: Dataset) -> bytes:
    """The data set's elements, explicit VR little endian, no file meta."""
    buffer = DicomBytesIO()
    buffer.is_little_endian, buffer.is_implicit_VR = True, False
    write_dataset(buffer, ds)
    return buffer.getvalue()


def deflate_bomb(inflated_bytes: int = DEFLATE_BOMB_BYTES, *, implicit_meta: bool = False) -> bytes:
    """A Deflated Explicit VR Little Endian file whose data set inflates to more than
    ``inflated_bytes`` (a multiple of 16 MiB): a private OB element of zeros before a
    small, valid Pixel Data.

    The zeros are one compressed 16 MiB block repeated: after a full flush deflate
    refers to nothing earlier, so identical blocks concatenate into one valid stream.
    With ``implicit_meta`` the file meta is written in implicit VR, which the standard
    forbids and pydicom reads all the same (it retries the meta as implicit VR when its
    VR bytes are not letters).
    """
    blocks = inflated_bytes // _CHUNK
    ds = _dataset(256, 256)
    creator = struct.pack("<HH2sH", 0x7FDF, 0x0010, b"LO", 10) + b"RADSTREAM "
    filler = struct.pack("<HH2sHI", 0x7FDF, 0x1010, b"OB", 0, blocks * _CHUNK)
    pixels = struct.pack("<HH2sHI", 0x7FE0, 0x0010, b"OW", 0, 256 * 256 * 2)
    packer = zlib.compressobj(9, zlib.DEFLATED, -zlib.MAX_WBITS)
    head = packer.compress(_explicit_le(ds) + creator + filler) + packer.flush(zlib.Z_FULL_FLUSH)
    block = packer.compress(b"\x00" * _CHUNK) + packer.flush(zlib.Z_FULL_FLUSH)
    tail = packer.compress(pixels + b"\x00" * (256 * 256 * 2)) + packer.flush()
    meta = DicomBytesIO()
    meta.write(b"\x00" * 128 + b"DICM")
    if implicit_meta:
        meta.is_little_endian, meta.is_implicit_VR = True, True
        write_dataset(meta, _meta(ds, DeflatedExplicitVRLittleEndian))
    else:
        write_file_meta_info(meta, _meta(ds, DeflatedExplicitVRLittleEndian))
    return meta.getvalue() + head + block * blocks + tail


def _huge_frames() -> bytes:
    """4096 x 4096 x 1000 frames declared (16.8 G pixels), 2 kB of pixel data."""
    ds = _dataset(4096, 4096, frames=1000)
    ds.PixelData = b"\x00" * 2048
    return _part10(ds, ExplicitVRLittleEndian)


def _little_data() -> bytes:
    """7000 x 7000 (within the 50 MP guard) declared, 1 kB of native pixel data."""
    ds = _dataset(7000, 7000)
    ds.PixelData = b"\x00" * 1024
    return _part10(ds, ExplicitVRLittleEndian)


def _rle_huge() -> bytes:
    """RLE: 30000 x 30000 declared, one tiny segment that would repeat to fill it."""
    ds = _dataset(30000, 30000, bits=8)
    header = struct.pack("<16I", 1, 64, *([0] * 14))
    ds.PixelData = encapsulate([header + b"\x81\x00" * 32])
    ds["PixelData"].VR = "OB"
    return _part10(ds, RLELossless)


def _jpeg_dicom(rows: int, columns: int, frame: bytes) -> bytes:
    ds = _dataset(rows, columns, bits=8)
    ds.PixelData = encapsulate([frame])
    ds["PixelData"].VR = "OB"
    return _part10(ds, JPEGBaseline8Bit)


def _lying_pixel_length() -> bytes:
    """Pixel Data whose length field says 4 GB - 2 in a file of a few kB."""
    ds = _dataset(512, 512)
    ds.PixelData = b"\x00" * 16
    data = bytearray(_part10(ds, ExplicitVRLittleEndian))
    at = data.rindex(b"\xe0\x7f\x10\x00OW\x00\x00")
    data[at + 8 : at + 12] = struct.pack("<I", 0xFFFFFFFE)
    return bytes(data)


def hostile_corpus() -> list[Sample]:
    """Every sample, built fresh."""
    jpeg = _jpeg(640, 800)
    frame = _jpeg(1000, 1000)
    bomb = deflate_bomb()
    implicit_meta_bomb = deflate_bomb(implicit_meta=True)
    return [
        Sample("png-huge-ihdr.png", huge_png_header(100_000, 100_000), "IMAGE_TOO_LARGE"),
        Sample("png-largest-allowed.png", _png16(7000, 7000), None),
        Sample("jpeg-huge-sof.jpg", _forge_jpeg_size(jpeg, 65_000, 65_000), "IMAGE_TOO_LARGE"),
        Sample("jpeg-lying-sof.jpg", _forge_jpeg_size(jpeg, 7000, 7000), "IMAGE_TRUNCATED"),
        Sample("jpeg-cut.jpg", jpeg[: len(jpeg) // 3], "IMAGE_TRUNCATED"),
        Sample("dicom-huge-frames.dcm", _huge_frames(), "IMAGE_TOO_LARGE"),
        Sample("dicom-little-data.dcm", _little_data(), "IMAGE_TRUNCATED"),
        Sample("dicom-rle-huge.dcm", _rle_huge(), "IMAGE_TOO_LARGE"),
        Sample(
            "dicom-frame-bigger-than-header.dcm",
            _jpeg_dicom(1000, 1000, _forge_jpeg_size(frame, 13_000, 13_000)),
            "IMAGE_SIZE_MISMATCH",
        ),
        Sample(
            "dicom-fragment-cut.dcm",
            _jpeg_dicom(1000, 1000, frame)[: -len(frame) // 2],
            "IMAGE_TRUNCATED",
        ),
        Sample("dicom-lying-pixel-length.dcm", _lying_pixel_length(), "IMAGE_TRUNCATED"),
        Sample("dicom-deflate-bomb.dcm", bomb, "IMAGE_FILE_TOO_LARGE"),
        Sample("IM-deflate-bomb", bomb, "IMAGE_FILE_TOO_LARGE", sidecar_less=True),
        Sample("dicom-deflate-bomb-implicit-meta.dcm", implicit_meta_bomb, "IMAGE_FILE_TOO_LARGE"),
        Sample(
            "IM-deflate-bomb-implicit-meta",
            implicit_meta_bomb,
            "IMAGE_FILE_TOO_LARGE",
            sidecar_less=True,
        ),
    ]
