"""One real radiograph in every encoding archives hold, built from pydicom-data's files.

The source is ``RG1_UNCR.dcm`` from the ``pydicom-data`` package: a CR chest PA,
1841x1955, 15 bits stored, MONOCHROME1. pydicom-data also ships it as JPEG 2000
lossless (``RG1_J2KR``) and lossy (``RG1_J2KI``); those files are used as shipped.
Every other encoding is made here, in memory, from the same pixels:

- implicit VR, big endian and deflated: pydicom's writer;
- RLE, JPEG-LS lossless and near-lossless: pydicom's encoders (``Dataset.compress``);
- JPEG Lossless (Process 14, predictors 1 to 7), JPEG Extended 12-bit, JPEG Baseline
  and HTJ2K: imagecodecs (libjpeg-turbo 3, OpenJPH), a development dependency only.
  The 12-bit and 8-bit JPEGs hold the top 12 or 8 of the 15 bits, as a modality that
  exports at that depth would.

Nothing is downloaded: pydicom-data is installed with the dev extra.
"""

from __future__ import annotations

import io
from collections.abc import Callable
from functools import cache
from typing import Final

import imagecodecs
import numpy as np
import pydicom
from pydicom.data import get_testdata_file
from pydicom.dataset import Dataset
from pydicom.encaps import encapsulate
from pydicom.filewriter import dcmwrite
from pydicom.uid import (
    UID,
    DeflatedExplicitVRLittleEndian,
    ExplicitVRBigEndian,
    HTJ2KLossless,
    JPEGBaseline8Bit,
    JPEGExtended12Bit,
    JPEGLossless,
    JPEGLosslessSV1,
    JPEGLSLossless,
    JPEGLSNearLossless,
    RLELossless,
)

SOURCE: Final = "RG1_UNCR.dcm"
SHIPPED: Final = {"j2k-lossless": "RG1_J2KR.dcm", "j2k-lossy": "RG1_J2KI.dcm"}

LOSSLESS: Final = (
    "explicit-le",
    "implicit-le",
    "explicit-be",
    "deflated",
    "rle",
    "jpeg-lossless-sv1",
    *(f"jpeg-lossless-p{k}" for k in range(2, 8)),
    "jpeg-ls-lossless",
    "j2k-lossless",
    "htj2k-lossless",
)
LOSSY: Final = ("jpeg-baseline", "jpeg-extended-12", "jpeg-ls-near", "j2k-lossy")
ENCODINGS: Final = LOSSLESS + LOSSY


def path_of(name: str) -> str:
    """Absolute path of a pydicom-data (or pydicom) test file."""
    path = get_testdata_file(name, download=False)
    if path is None:
        raise FileNotFoundError(f"{name} is not installed; pip install pydicom-data")
    return str(path)


@cache
def source_pixels() -> np.ndarray:
    """The radiograph's stored values (uint16, 1955 rows x 1841 columns)."""
    pixels: np.ndarray = pydicom.dcmread(path_of(SOURCE)).pixel_array
    pixels.flags.writeable = False
    return pixels


def _source() -> Dataset:
    return pydicom.dcmread(path_of(SOURCE))


def _save(ds: Dataset, **kwargs: bool) -> bytes:
    buffer = io.BytesIO()
    if kwargs:
        dcmwrite(buffer, ds, **kwargs)
    else:
        ds.save_as(buffer, enforce_file_format=True)
    return buffer.getvalue()


def _encapsulated(
    frame: bytes, syntax: UID, *, bits_stored: int | None = None, bits_allocated: int = 16
) -> bytes:
    ds = _source()
    ds.file_meta.TransferSyntaxUID = syntax
    if bits_stored is not None:
        ds.BitsStored = bits_stored
        ds.HighBit = bits_stored - 1
    ds.BitsAllocated = bits_allocated
    ds.PixelData = encapsulate([frame])
    ds["PixelData"].VR = "OB"
    return _save(ds)


def _implicit() -> bytes:
    ds = _source()
    ds.file_meta.TransferSyntaxUID = pydicom.uid.ImplicitVRLittleEndian
    return _save(ds, implicit_vr=True, little_endian=True, enforce_file_format=True)


def _big_endian() -> bytes:
    ds = _source()
    ds.file_meta.TransferSyntaxUID = ExplicitVRBigEndian
    ds.PixelData = source_pixels().astype(">u2").tobytes()
    # save_as refuses to change endianness; dcmwrite with force_encoding does it.
    return _save(ds, implicit_vr=False, little_endian=False, force_encoding=True)


def _deflated() -> bytes:
    ds = _source()
    ds.file_meta.TransferSyntaxUID = DeflatedExplicitVRLittleEndian
    return _save(ds)


def _compressed(syntax: UID, **options: int) -> bytes:
    ds = _source()
    ds.compress(syntax, generate_instance_uid=False, **options)
    return _save(ds)


def _jpeg_lossless(predictor: int) -> bytes:
    frame = imagecodecs.jpeg8_encode(
        source_pixels(), lossless=True, predictor=predictor, bitspersample=15
    )
    return _encapsulated(bytes(frame), JPEGLosslessSV1 if predictor == 1 else JPEGLossless)


def _jpeg_extended_12() -> bytes:
    top12 = source_pixels() >> 3
    frame = imagecodecs.jpeg8_encode(top12, level=95, bitspersample=12)
    return _encapsulated(bytes(frame), JPEGExtended12Bit, bits_stored=12)


def _jpeg_baseline() -> bytes:
    top8 = (source_pixels() >> 7).astype(np.uint8)
    frame = imagecodecs.jpeg8_encode(top8, level=95)
    return _encapsulated(bytes(frame), JPEGBaseline8Bit, bits_stored=8, bits_allocated=8)


def _htj2k_lossless() -> bytes:
    frame = imagecodecs.htj2k_encode(source_pixels(), reversible=True)
    return _encapsulated(bytes(frame), HTJ2KLossless)


def _shipped(name: str) -> Callable[[], bytes]:
    def read() -> bytes:
        with open(path_of(name), "rb") as handle:
            return handle.read()

    return read


_MAKERS: Final[dict[str, Callable[[], bytes]]] = {
    "explicit-le": _shipped(SOURCE),
    "implicit-le": _implicit,
    "explicit-be": _big_endian,
    "deflated": _deflated,
    "rle": lambda: _compressed(RLELossless),
    "jpeg-lossless-sv1": lambda: _jpeg_lossless(1),
    **{f"jpeg-lossless-p{k}": (lambda k=k: _jpeg_lossless(k)) for k in range(2, 8)},
    "jpeg-ls-lossless": lambda: _compressed(JPEGLSLossless),
    "jpeg-ls-near": lambda: _compressed(JPEGLSNearLossless, jls_error=3),
    "j2k-lossless": _shipped(SHIPPED["j2k-lossless"]),
    "j2k-lossy": _shipped(SHIPPED["j2k-lossy"]),
    "htj2k-lossless": _htj2k_lossless,
    "jpeg-baseline": _jpeg_baseline,
    "jpeg-extended-12": _jpeg_extended_12,
}


@cache
def encoded(name: str) -> bytes:
    """The radiograph as a Part-10 file in encoding ``name`` (one of ``ENCODINGS``)."""
    return _MAKERS[name]()


def transfer_syntax(data: bytes) -> UID:
    """The transfer syntax a Part-10 file declares."""
    ds = pydicom.dcmread(io.BytesIO(data), stop_before_pixels=True)
    return UID(ds.file_meta.TransferSyntaxUID)
