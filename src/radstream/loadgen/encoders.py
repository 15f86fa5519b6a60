"""Encoding synthetic pixels as the file formats RadStream accepts."""

from __future__ import annotations

import io
from datetime import date, timedelta
from typing import Final, Literal, get_args

import cv2
import numpy as np
from PIL import Image
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.encaps import encapsulate
from pydicom.uid import (
    UID,
    ExplicitVRLittleEndian,
    JPEGBaseline8Bit,
    RLELossless,
    generate_uid,
)

EncodeFormat = Literal["png", "png16", "jpeg", "dicom", "dicom-rle", "dicom-jpeg"]
ENCODE_FORMATS: Final[tuple[str, ...]] = get_args(EncodeFormat)

SOP_CLASS_CR: Final = UID("1.2.840.10008.5.1.4.1.1.1")  # Computed Radiography Image Storage
SOP_CLASS_DX: Final = UID("1.2.840.10008.5.1.4.1.1.1.1")  # Digital X-Ray, For Presentation
_JPEG_QUALITY: Final = 90
# Fast zlib level: load generation should not be bottlenecked by encoding, and decoding
# cost (what RadStream pays) hardly depends on the level.
_PNG_COMPRESSION: Final = 1
# (slope, intercept) pairs seen on real detectors; values in modality units differ but
# a model input must not.
_RESCALES: Final = ((1.0, 0.0), (1.0, -1024.0), (0.5, -100.0), (2.0, 0.0))


def encode(
    pixels16: np.ndarray,
    fmt: EncodeFormat,
    *,
    rng: np.random.Generator,
    patient_id: str | None = None,
    modality: Literal["CR", "DX"] | None = None,
) -> tuple[bytes, str]:
    """Encode a uint16 image as ``fmt`` and return ``(file bytes, extension)``.

    ``png`` and ``jpeg`` are 8-bit grayscale (JPEG quality 90), ``png16`` keeps 16 bits.
    The DICOM variants are Part-10 files with 12 of 16 bits stored (8 bits for
    ``dicom-jpeg``), a random rescale slope/intercept and, one time in four, MONOCHROME1
    with values inverted so the image still looks the same. ``rng`` drives those choices
    and the UIDs, so a seed reproduces the bytes.
    """
    if pixels16.ndim != 2 or pixels16.dtype != np.uint16:
        raise ValueError(f"expected a 2-D uint16 image, got {pixels16.dtype} {pixels16.shape}")
    if fmt == "png":
        return _cv2_encode(".png", to_uint8(pixels16), cv2.IMWRITE_PNG_COMPRESSION), ".png"
    if fmt == "png16":
        return _cv2_encode(".png", pixels16, cv2.IMWRITE_PNG_COMPRESSION), ".png"
    if fmt == "jpeg":
        return encode_jpeg(to_uint8(pixels16)), ".jpg"
    if fmt in ("dicom", "dicom-rle", "dicom-jpeg"):
        return _encode_dicom(pixels16, fmt, rng, patient_id, modality), ".dcm"
    raise ValueError(f"unknown format {fmt!r}; expected one of {', '.join(ENCODE_FORMATS)}")


def to_uint8(pixels16: np.ndarray) -> np.ndarray:
    """Keep the top 8 bits of a uint16 image."""
    return (pixels16 >> 8).astype(np.uint8)


def encode_jpeg(pixels8: np.ndarray) -> bytes:
    """Baseline grayscale JPEG at quality 90."""
    return _cv2_encode(".jpg", pixels8, cv2.IMWRITE_JPEG_QUALITY)


def _cv2_encode(ext: str, pixels: np.ndarray, param: int) -> bytes:
    value = _JPEG_QUALITY if param == cv2.IMWRITE_JPEG_QUALITY else _PNG_COMPRESSION
    ok, buffer = cv2.imencode(ext, pixels, [param, value])
    if not ok:
        raise RuntimeError(f"OpenCV could not encode a {pixels.shape} {pixels.dtype} {ext}")
    return bytes(buffer.tobytes())


def dicom_dataset(
    rng: np.random.Generator,
    *,
    patient_id: str | None = None,
    modality: Literal["CR", "DX"] | None = None,
) -> Dataset:
    """A chest X-ray DICOM data set with file meta and identifiers but no pixel data.

    UIDs derive from ``rng`` rather than from time or uuid4, so runs are reproducible.
    """
    chosen: str = modality or str(rng.choice(["CR", "DX"]))
    sop_class = SOP_CLASS_CR if chosen == "CR" else SOP_CLASS_DX
    instance_uid = _uid(rng)

    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = sop_class
    meta.MediaStorageSOPInstanceUID = instance_uid
    meta.TransferSyntaxUID = ExplicitVRLittleEndian

    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID = sop_class
    ds.SOPInstanceUID = instance_uid
    ds.StudyInstanceUID = _uid(rng)
    ds.SeriesInstanceUID = _uid(rng)
    ds.Modality = chosen
    ds.PatientID = patient_id or f"SYN-{int(rng.integers(0, 1_000_000)):06d}"
    ds.PatientName = "SYNTHETIC^PATIENT"
    ds.PatientSex = str(rng.choice(["F", "M", "O"]))
    study_date = date(2023, 1, 1) + timedelta(days=int(rng.integers(0, 730)))
    ds.StudyDate = study_date.strftime("%Y%m%d")
    ds.StudyTime = f"{int(rng.integers(0, 24)):02d}{int(rng.integers(0, 60)):02d}00"
    ds.AccessionNumber = f"ACC{int(rng.integers(0, 10**8)):08d}"
    ds.BodyPartExamined = "CHEST"
    ds.ViewPosition = str(rng.choice(["PA", "AP"]))
    ds.ImageType = ["ORIGINAL", "PRIMARY"]
    ds.Manufacturer = "RadStream Synthetic"
    return ds


def _uid(rng: np.random.Generator) -> UID:
    return generate_uid(entropy_srcs=[rng.bytes(16).hex()])


def _encode_dicom(
    pixels16: np.ndarray,
    fmt: str,
    rng: np.random.Generator,
    patient_id: str | None,
    modality: Literal["CR", "DX"] | None,
) -> bytes:
    ds = dicom_dataset(rng, patient_id=patient_id, modality=modality)
    monochrome1 = bool(rng.random() < 0.25)
    photometric = "MONOCHROME1" if monochrome1 else "MONOCHROME2"
    if fmt == "dicom-jpeg":
        stored = to_uint8(pixels16)
        if monochrome1:
            stored = 255 - stored
        _set_image_pixel_module(ds, stored, photometric, bits_stored=8)
        ds.file_meta.TransferSyntaxUID = JPEGBaseline8Bit
        ds.PixelData = encapsulate([_pillow_jpeg(stored)])
        ds["PixelData"].VR = "OB"
        ds.LossyImageCompression = "01"
        ds.LossyImageCompressionMethod = "ISO_10918_1"
    else:
        stored = pixels16 >> 4  # 12 bits stored, as most CR/DX detectors deliver
        if monochrome1:
            stored = 4095 - stored
        _set_image_pixel_module(ds, stored, photometric, bits_stored=12)
        ds.PixelData = stored.astype("<u2").tobytes()
        ds["PixelData"].VR = "OW"
        slope, intercept = _RESCALES[int(rng.integers(0, len(_RESCALES)))]
        ds.RescaleSlope = slope
        ds.RescaleIntercept = intercept
        ds.RescaleType = "US"  # unspecified units
        if fmt == "dicom-rle":
            # pydicom 3's own RLE encoder; generate_instance_uid=False keeps the seeded UID.
            ds.compress(RLELossless, generate_instance_uid=False)
    buffer = io.BytesIO()
    ds.save_as(buffer, enforce_file_format=True)
    return buffer.getvalue()


def _set_image_pixel_module(
    ds: Dataset, stored: np.ndarray, photometric: str, *, bits_stored: int
) -> None:
    ds.Rows, ds.Columns = stored.shape
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = photometric
    ds.BitsAllocated = 8 if bits_stored <= 8 else 16
    ds.BitsStored = bits_stored
    ds.HighBit = bits_stored - 1
    ds.PixelRepresentation = 0


def _pillow_jpeg(pixels8: np.ndarray) -> bytes:
    # Pillow writes a plain JFIF baseline stream, which is what JPEG Baseline DICOM wants.
    buffer = io.BytesIO()
    Image.fromarray(pixels8, mode="L").save(buffer, format="JPEG", quality=_JPEG_QUALITY)
    return buffer.getvalue()
