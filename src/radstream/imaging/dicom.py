"""DICOM: header checks before decoding, first-frame decoding, modality LUT, MONOCHROME1.

What is accepted
    Every transfer syntax a decoder is installed for: implicit and explicit VR little
    endian, explicit VR big endian, deflated, RLE Lossless, JPEG Baseline, JPEG
    Extended (12-bit), JPEG Lossless (Process 14, any predictor), JPEG-LS lossless and
    near-lossless, JPEG 2000 lossless and lossy, HTJ2K. `dicom_codecs` says which
    plugin decodes which, and why. Anything else fails ``DICOM_UNSUPPORTED_TRANSFER_SYNTAX``
    before decoding.

Multi-frame objects
    Only the first frame is decoded and used; the others are never decompressed. A
    projection radiograph has one frame; where a modality stores several (a series of
    exposures in one object), the first is the one a viewer shows first. The pixel guard
    still counts every frame the header declares (Rows x Columns x NumberOfFrames)
    before anything is decoded, so a small compressed file cannot expand beyond
    ``imaging.max_pixels``. The dimensions inside the first compressed frame (a JPEG or
    JPEG-LS frame header, a JPEG 2000 SIZ segment) must then equal the header's Rows and
    Columns, or the study fails ``IMAGE_SIZE_MISMATCH`` before decoding: a header that
    says 1000x1000 cannot smuggle a 13000x13000 codestream past the guard. A JPEG frame
    with more scans than allowed fails ``IMAGE_TOO_COMPLEX`` (see `radstream.imaging.jpeg`).

Colour
    RGB, YBR_FULL, YBR_FULL_422, YBR_ICT, YBR_RCT (converted to RGB by the decoder) and
    PALETTE COLOR (looked up through its palette) become grey by ITU-R BT.601 luma,
    as colour PNG and JPEG do. There is no rescale for colour images.

The same preprocessing for every encoding
    Decoding yields the stored values of the first frame, bit for bit the same for
    every lossless encoding of one image (tests/imaging/test_imaging_encodings.py), and
    everything after decoding depends only on those values and the header:

    1. Bit depth: values are used as decoded (BitsStored bits, signed when
       PixelRepresentation is 1); unused high bits are not masked, as pydicom does not.
    2. Modality LUT: a Modality LUT Sequence is applied value by value; otherwise
       RescaleSlope and RescaleIntercept (default 1 and 0) map stored values to
       modality units.
    3. Range: the model's input range spans the frame's own minimum..maximum in
       modality units. VOI LUTs and WindowCenter/WindowWidth are ignored on purpose:
       they are display presets chosen for a human reader (often several, vendor
       specific, sometimes absent), whereas TorchXRayVision models were trained on the
       full dynamic range scaled linearly; min..max does that for any bit depth.
    4. MONOCHROME1 is mirrored within that range, so that bright means dense, as in
       MONOCHROME2 and every other format.

    Lossy encodings change the stored values and so the tensor, a little.

Is this a chest X-ray? (``require_chest``, the setting ``imaging.require_chest``, on by default)
    Checked from the header, after the Pixel Data check (a structured report still fails
    ``DICOM_NO_PIXEL_DATA``) and before anything is decoded:

    - Modality must name a projection radiograph: CR, DX, or RG (digitised film/screen
      radiography). Anything else, a missing Modality included, fails
      ``MODALITY_UNSUPPORTED``: CT, MR, US, NM and MG are not what the models read, and
      OT ("other", what most Secondary Capture objects say) tells nothing about the
      content. A Secondary Capture of a chest film passes when its exporter kept CR, DX
      or RG as the Modality.
    - BodyPartExamined, when present and not empty, must be the chest: CHEST (the DICOM
      term), or THORAX, TORAX, LUNG, LUNGS, which exporters and localised consoles also
      write. Anything else (EXTREMITY, HAND, SKULL...) fails ``BODY_PART_UNSUPPORTED``.
      The element is optional (Type 3), so its absence passes.

    ViewPosition is not checked here; the ``prepare`` stage records a disagreement with
    the sidecar's view in the result.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from typing import Any, Final

import numpy as np
import pydicom
from pydicom.dataset import Dataset
from pydicom.encaps import generate_frames

# Imported from their defining modules because pydicom.pixels re-exports them without
# __all__, which mypy --strict refuses; they are the documented pydicom.pixels functions.
from pydicom.pixels.decoders.base import get_decoder
from pydicom.pixels.processing import apply_color_lut, apply_modality_lut
from pydicom.uid import (
    UID,
    ExplicitVRBigEndian,
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
    RLELossless,
)

from radstream.errors import (
    BodyPartUnsupported,
    DicomNoPixelData,
    DicomUnsupportedTransferSyntax,
    ImageSizeMismatch,
    ImageTruncated,
    ImageUndecodable,
    ModalityUnsupported,
)
from radstream.imaging.decoded import DecodedPixels, ImageHeader
from radstream.imaging.deflated import check_inflated_size
from radstream.imaging.dicom_codecs import decode_frame, plugin_for, register_plugins
from radstream.imaging.dicom_jpeg import decode_jpeg_frame
from radstream.imaging.formats import JPEG_SOI
from radstream.imaging.jpeg import check_scan_count, jpeg_frame_size
from radstream.imaging.rle import decode_rle_frame

# Elements longer than this are left in the buffer until used, so reading the header
# costs the same for a 100 kB and a 60 MB file and the pixel guard runs before any
# pixel byte is copied.
_DEFER_BYTES: Final = 4096
MAX_INFLATED_BYTES: Final = 64 * 1024 * 1024
"""The default bound on a deflated data set once inflated: ``imaging.max_file_bytes``'s
default, the limit an uncompressed file has."""
_PIXEL_DATA_TAG: Final = b"\xe0\x7f\x10\x00"  # (7FE0,0010), little endian
_J2K_SOC_SIZ: Final = b"\xff\x4f\xff\x51"  # a JPEG 2000 codestream starts SOC, SIZ
_FRAME_MISMATCH_HINT: Final = (
    "The DICOM header (Rows, Columns) and its compressed frame disagree: the file is "
    "damaged or forged; export the image again from the PACS."
)
_MONOCHROME: Final = ("MONOCHROME1", "MONOCHROME2")
_PALETTE: Final = "PALETTE COLOR"
# BT.601 luma weights as float32 (what OpenCV's float colour conversion multiplies by),
# widened to float64 for the fused multiply-adds of `rgb_to_grey`.
_LUMA_R: Final = np.float64(np.float32(0.299))
_LUMA_G: Final = np.float32(0.587)
_LUMA_B: Final = np.float64(np.float32(0.114))
_COLOUR: Final = ("RGB", "YBR_FULL", "YBR_FULL_422", "YBR_ICT", "YBR_RCT", _PALETTE)
PROJECTION_MODALITIES: Final = frozenset({"CR", "DX", "RG"})
"""Modalities that are projection radiographs a chest X-ray model can read."""
CHEST_BODY_PARTS: Final = frozenset({"CHEST", "THORAX", "TORAX", "LUNG", "LUNGS"})
"""BodyPartExamined values that mean the chest (CHEST is the DICOM term)."""


@dataclass(frozen=True)
class DicomFacts:
    """What the header says about the picture, for the result: never a patient field."""

    modality: str | None
    body_part: str | None
    view_position: str | None


def dicom_facts(ds: Dataset) -> DicomFacts:
    """Modality, BodyPartExamined and ViewPosition, upper-case, None when absent or empty."""
    return DicomFacts(
        modality=_code_string(ds, "Modality"),
        body_part=_code_string(ds, "BodyPartExamined"),
        view_position=_code_string(ds, "ViewPosition"),
    )


def check_chest(facts: DicomFacts) -> None:
    """Refuse a DICOM image that is not a chest radiograph (see the module docstring)."""
    if facts.modality not in PROJECTION_MODALITIES:
        raise ModalityUnsupported(
            f"the DICOM Modality is {facts.modality or '(missing)'}, not a projection "
            f"radiograph ({', '.join(sorted(PROJECTION_MODALITIES))})",
            modality=facts.modality,
        )
    if facts.body_part is not None and facts.body_part not in CHEST_BODY_PARTS:
        raise BodyPartUnsupported(
            f"the DICOM BodyPartExamined is {facts.body_part}, not the chest",
            body_part=facts.body_part,
        )


def _code_string(ds: Dataset, keyword: str) -> str | None:
    # Code strings are upper case by definition; consoles still write "Chest " now and then.
    value: Any = ds.get(keyword)
    if value is None:
        return None
    text = str(value).strip().upper()
    return text or None


def read_dicom_header(
    data: bytes, *, require_chest: bool = False, max_inflated_bytes: int = MAX_INFLATED_BYTES
) -> tuple[ImageHeader, Dataset]:
    """Read a DICOM data set without its pixel values and check that it can be decoded.

    A deflated data set that would inflate to more than ``max_inflated_bytes`` fails
    ``IMAGE_FILE_TOO_LARGE`` before pydicom inflates it (:mod:`radstream.imaging.deflated`).
    Raises ``DicomNoPixelData`` when there is no Pixel Data element, then, with
    ``require_chest``, ``ModalityUnsupported`` or ``BodyPartUnsupported`` for what is not
    a chest radiograph,
    ``DicomUnsupportedTransferSyntax`` when no installed decoder handles the encoding and
    ``ImageUndecodable`` when the image pixel module is incomplete or unsupported.
    """
    check_inflated_size(data, max_inflated_bytes)
    # force=True also accepts data sets written without preamble; sniff_format has
    # already decided that the bytes look like DICOM.
    ds = pydicom.dcmread(io.BytesIO(data), defer_size=_DEFER_BYTES, force=True)
    if "PixelData" not in ds:
        if _PIXEL_DATA_TAG in data:
            # pydicom silently drops an encapsulated Pixel Data element that the file
            # ends inside of; the tag itself is still there to see.
            raise ImageTruncated("the DICOM file ends inside its Pixel Data element")
        raise DicomNoPixelData("the DICOM file has no Pixel Data element")
    if require_chest:
        check_chest(dicom_facts(ds))
    rows, columns = _positive_int(ds, "Rows"), _positive_int(ds, "Columns")
    bits_allocated = _positive_int(ds, "BitsAllocated")
    bits_stored = int(ds.get("BitsStored") or bits_allocated)
    photometric = str(ds.get("PhotometricInterpretation", "")).strip().upper()
    if photometric not in _MONOCHROME + _COLOUR:
        raise ImageUndecodable(
            f"DICOM photometric interpretation {photometric or '(missing)'} is not supported",
            photometric=photometric,
        )
    _ensure_transfer_syntax(ds)
    frames_value: Any = ds.get("NumberOfFrames")
    try:
        frames = max(1, int(frames_value or 1))
    except (TypeError, ValueError) as exc:
        raise ImageUndecodable(
            f"the DICOM NumberOfFrames {frames_value!r} is not a number"
        ) from exc
    header = ImageHeader(
        width=columns, height=rows, bit_depth=bits_stored, photometric=photometric, frames=frames
    )
    return header, ds


def decode_dicom(ds: Dataset, header: ImageHeader, size: int) -> DecodedPixels:
    """Decode the first frame and describe its values in modality units, bright = dense.

    ``size`` is the model input size, which lets JPEG frames decode at reduced size.
    The model input range is mapped to the min..max of the frame's values after the
    modality LUT: stored ranges differ by vendor and BitsStored (10, 12, 14, 16 bits,
    signed or not, with or without a rescale to HU-like units), so a fixed maximum as
    for PNG would leave most images dark or clipped.
    """
    stored, decode_scale = _decode_first_frame(ds, header, size)
    if header.photometric == _PALETTE and stored.ndim == 2:
        stored = apply_color_lut(stored, ds)
    colour = stored.ndim == 3
    if colour:
        # The decoders have already converted YBR to RGB.
        stored = rgb_to_grey(stored)

    if colour:
        # Rescale and modality LUTs apply to grey stored values only.
        slope, intercept = 1.0, 0.0
    elif "ModalityLUTSequence" in ds:
        # A lookup table is not affine, so it has to run on every pixel (rare for CXR).
        stored = apply_modality_lut(stored, ds).astype(np.float32)
        slope, intercept = 1.0, 0.0
    else:
        slope = float(ds.get("RescaleSlope") or 1.0)
        intercept = float(ds.get("RescaleIntercept") or 0.0)
    stored_min, stored_max = float(stored.min()), float(stored.max())
    ends = (stored_min * slope + intercept, stored_max * slope + intercept)
    low, high = min(ends), max(ends)
    gain, offset = slope, intercept
    if header.photometric == "MONOCHROME1":
        # MONOCHROME1 shows low values bright; mirroring within the value range makes
        # bright mean dense, like every other input.
        gain, offset = -slope, low + high - intercept
    return DecodedPixels(
        pixels=stored,
        gain=gain,
        offset=offset,
        low=low,
        high=high,
        decode_scale=decode_scale,
        source_shape=(header.height, header.width),
    )


def _decode_first_frame(ds: Dataset, header: ImageHeader, size: int) -> tuple[np.ndarray, int]:
    """Return the first frame's stored values and the DCT reduction used (1 if none).

    Fast paths handle the common RLE and JPEG Baseline layouts, where they are faster
    than any plugin (see `rle` and `dicom_jpeg`); pydicom's decoders, with the plugins
    `dicom_codecs` prefers, handle everything else.
    """
    _check_native_length(ds, header)
    _check_compressed_frame(ds, header)
    jpeg = decode_jpeg_frame(ds, header, size)
    if jpeg is not None:
        return jpeg
    try:
        # pylibjpeg-rle, where installed, is a little faster than the PackBits path.
        fast = decode_rle_frame(ds) if plugin_for(RLELossless) != "pylibjpeg" else None
        stored = fast if fast is not None else decode_frame(ds, index=0)
    except (ValueError, EOFError, RuntimeError) as exc:
        if _encapsulated_incomplete(ds):
            raise ImageTruncated(f"the DICOM pixel data ends early: {exc}") from exc
        raise ImageUndecodable(f"the DICOM pixel data could not be decoded: {exc}") from exc
    if stored.shape[:2] != (header.height, header.width):
        raise ImageUndecodable(
            f"the DICOM frame decoded to shape {stored.shape}, expected "
            f"{header.height}x{header.width}"
        )
    return stored, 1


def _positive_int(ds: Dataset, keyword: str) -> int:
    value: Any = ds.get(keyword)
    if value is None or int(value) <= 0:
        raise ImageUndecodable(f"the DICOM {keyword} element is missing or not positive")
    return int(value)


def _ensure_transfer_syntax(ds: Dataset) -> None:
    """Check that the pixel data's encoding can be decoded here.

    Data sets without file meta (no preamble) carry no Transfer Syntax UID; pydicom
    worked out how it read them, and for such files that is the native encoding.
    """
    syntax = ds.file_meta.get("TransferSyntaxUID")
    if syntax is None:
        implicit, little = ds.original_encoding
        if implicit:
            syntax = ImplicitVRLittleEndian
        else:
            syntax = ExplicitVRLittleEndian if little is not False else ExplicitVRBigEndian
        ds.file_meta.TransferSyntaxUID = syntax
    uid = UID(str(syntax))
    register_plugins()  # radstream's own plugins count as installed decoders
    try:
        available = get_decoder(uid).is_available
    except NotImplementedError:
        available = False
    if not available:
        raise DicomUnsupportedTransferSyntax(
            f"no decoder is installed for transfer syntax {uid} ({uid.name})",
            transfer_syntax=str(uid),
        )


def _check_native_length(ds: Dataset, header: ImageHeader) -> None:
    """Refuse native pixel data shorter than one frame: that is a cut-off upload."""
    if ds.file_meta.TransferSyntaxUID.is_compressed:
        return
    samples = int(ds.get("SamplesPerPixel") or 1)
    if header.photometric == "YBR_FULL_422" and samples == 3:
        samples = 2  # chroma is stored for every other pixel: Y Y Cb Cr per pair
    bits = int(ds.BitsAllocated)
    needed = (header.pixels * samples * bits + 7) // 8
    available = len(ds.PixelData)
    if available < needed:
        raise ImageTruncated(
            f"the DICOM pixel data has {available} bytes, one frame needs {needed}"
        )


def _check_compressed_frame(ds: Dataset, header: ImageHeader) -> None:
    """Refuse a compressed first frame whose own dimensions differ from the header's (the
    header passed the pixel guard; the frame is what would be decoded), or that has too
    many JPEG scans. A frame whose size cannot be read here is left to the decoder."""
    syntax = ds.file_meta.TransferSyntaxUID
    if not syntax.is_encapsulated or syntax == RLELossless:
        return  # RLE segments decode into a buffer the header sizes
    frames = int(ds.get("NumberOfFrames") or 1)
    try:
        frame = next(generate_frames(ds.PixelData, number_of_frames=frames))
    except (ValueError, StopIteration, TypeError):
        return
    found: tuple[int, int] | None = None
    if frame.startswith(JPEG_SOI):
        check_scan_count(frame)
        found = jpeg_frame_size(frame)
    elif frame.startswith(_J2K_SOC_SIZ) and len(frame) >= 24:
        # SIZ: Lsiz, Rsiz, then Xsiz, Ysiz, XOsiz, YOsiz (4 bytes each, big endian).
        xsiz, ysiz, xo, yo = (int.from_bytes(frame[i : i + 4], "big") for i in (8, 12, 16, 20))
        found = (xsiz - xo, ysiz - yo)
    if found is not None and found != (header.width, header.height):
        raise ImageSizeMismatch(
            f"the DICOM frame's codestream is {found[0]}x{found[1]} pixels, its header says "
            f"{header.width}x{header.height} (Columns x Rows)",
            frame_width=found[0],
            frame_height=found[1],
            hint=_FRAME_MISMATCH_HINT,
        )


def _encapsulated_incomplete(ds: Dataset) -> bool:
    """True when compressed pixel data ends without its JPEG-family stream being complete."""
    syntax = ds.file_meta.TransferSyntaxUID
    if not syntax.is_compressed or syntax == RLELossless:
        # RLE has no end marker; a cut RLE file ends inside its Pixel Data element,
        # which read_dicom_header reports.
        return False
    value = ds.PixelData
    # JPEG, JPEG-LS and JPEG 2000 codestreams all end with FFD9 (EOI, EOC); a missing
    # one means the file was cut.
    return isinstance(value, bytes) and not value.rstrip(b"\x00").endswith(b"\xff\xd9")


def rgb_to_grey(rgb: np.ndarray) -> np.ndarray:
    """BT.601 luma ``0.299 R + 0.587 G + 0.114 B`` of an ``[..., 3]`` array, as float32.

    float32, so palettes and 16-bit colour keep their fractions, and computed as
    OpenCV's ``cvtColor(float32, COLOR_RGB2GRAY)`` computes it on a CPU with FMA:
    ``fma(B, 0.114, fma(R, 0.299, G * 0.587))`` in float32. A float32 product is exact
    in float64, so each fused step is a float64 multiply-add rounded to float32.
    """
    red, green, blue = (rgb[..., i].astype(np.float32) for i in range(3))
    partial = green * _LUMA_G
    partial = (red.astype(np.float64) * _LUMA_R + partial).astype(np.float32)
    grey: np.ndarray = (blue.astype(np.float64) * _LUMA_B + partial).astype(np.float32)
    return grey
