"""The imaging entry point: bytes in, model-ready tensor out, typed errors only."""

from __future__ import annotations

from radstream.errors import (
    ImageEmpty,
    ImageFileTooLarge,
    ImageFormatMismatch,
    ImageSizeMismatch,
    ImageTooLarge,
    ImageTooSmall,
    ImageUndecodable,
    RadStreamError,
)
from radstream.imaging.decoded import DecodedPixels, ImageHeader
from radstream.imaging.dicom import DicomFacts, decode_dicom, dicom_facts, read_dicom_header
from radstream.imaging.formats import ImageFormat, extension_format, sniff_format
from radstream.imaging.jpeg import decode_jpeg, read_jpeg_header
from radstream.imaging.options import ImagingLimits, Preprocessing
from radstream.imaging.png import decode_png, read_png_header
from radstream.imaging.prepared import PreparedImage
from radstream.imaging.preprocess import to_model_input

ExpectedSize = tuple[int | None, int | None]

_DEFAULT_PREPROCESSING = Preprocessing()
_DEFAULT_LIMITS = ImagingLimits()


def prepare_image(
    data: bytes,
    *,
    filename: str | None = None,
    expected_size: ExpectedSize | None = None,
    preprocessing: Preprocessing = _DEFAULT_PREPROCESSING,
    limits: ImagingLimits = _DEFAULT_LIMITS,
    require_chest: bool = False,
) -> PreparedImage:
    """Check, decode and preprocess one image file into a model input tensor.

    Checks run cheapest first and all of them before pixels are decoded: emptiness, file
    size, content format, extension against content, declared pixel count against
    ``limits.max_pixels``, declared size against ``expected_size`` (``(width, height)``;
    ``None`` for either skips it); with ``require_chest``, a DICOM header that is not a
    chest radiograph's fails ``MODALITY_UNSUPPORTED`` or ``BODY_PART_UNSUPPORTED`` (the
    pipeline passes ``imaging.require_chest``, on by default; PNG and JPEG carry no such
    header and are not checked). Then the image is decoded (JPEG at reduced size),
    checked for being at least ``preprocessing.size`` on its short side and preprocessed.

    Every failure is a ``RadStreamError``; unexpected decoder exceptions become
    ``ImageUndecodable``.
    """
    try:
        return _prepare(data, filename, expected_size, preprocessing, limits, require_chest)
    except RadStreamError:
        raise
    except Exception as exc:
        # Decoders raise a zoo of exception types on hostile input (struct.error,
        # KeyError, zlib.error, ...); callers must only ever see typed errors.
        raise ImageUndecodable(
            f"the image could not be decoded ({type(exc).__name__}: {exc})",
            exception=type(exc).__name__,
        ) from exc


def _prepare(
    data: bytes,
    filename: str | None,
    expected_size: ExpectedSize | None,
    preprocessing: Preprocessing,
    limits: ImagingLimits,
    require_chest: bool,
) -> PreparedImage:
    if not data:
        raise ImageEmpty("the image file has zero bytes")
    if len(data) > limits.max_file_bytes:
        raise ImageFileTooLarge(
            f"the image file has {len(data)} bytes, the limit is {limits.max_file_bytes}",
            file_bytes=len(data),
            max_file_bytes=limits.max_file_bytes,
        )
    fmt = sniff_format(data)
    _check_extension(fmt, filename)
    facts: DicomFacts | None = None

    if fmt == "png":
        header = read_png_header(data)
        _check_header(header, expected_size, limits)
        decoded = decode_png(data, header)
    elif fmt == "jpeg":
        header, frame_offset = read_jpeg_header(data)
        _check_header(header, expected_size, limits)
        decoded = decode_jpeg(data, header, frame_offset, preprocessing.size)
    else:
        header, dataset = read_dicom_header(
            data, require_chest=require_chest, max_inflated_bytes=limits.max_file_bytes
        )
        facts = dicom_facts(dataset)
        _check_header(header, expected_size, limits)
        decoded = decode_dicom(dataset, header, preprocessing.size)

    return _finish(fmt, header, decoded, preprocessing, facts)


def _check_extension(fmt: ImageFormat, filename: str | None) -> None:
    if filename is None:
        return
    promised = extension_format(filename)
    if promised is not None and promised != fmt:
        raise ImageFormatMismatch(
            f"{filename!r} is named as {promised.upper()} but contains {fmt.upper()}",
            filename=filename,
            extension_format=promised,
            content_format=fmt,
        )


def _check_header(
    header: ImageHeader, expected_size: ExpectedSize | None, limits: ImagingLimits
) -> None:
    # Counted over every frame the header declares, before a byte is decompressed: a
    # compressed DICOM can be small on disk and enormous once decoded.
    if header.declared_pixels > limits.max_pixels:
        frames = f" x {header.frames} frames" if header.frames > 1 else ""
        raise ImageTooLarge(
            f"the image declares {header.width}x{header.height}{frames} = "
            f"{header.declared_pixels} pixels, the limit is {limits.max_pixels}",
            width=header.width,
            height=header.height,
            frames=header.frames,
            max_pixels=limits.max_pixels,
        )
    if expected_size is None:
        return
    want_width, want_height = expected_size
    if (want_width is not None and want_width != header.width) or (
        want_height is not None and want_height != header.height
    ):
        raise ImageSizeMismatch(
            f"the sidecar says {_describe(want_width)}x{_describe(want_height)}, "
            f"the image is {header.width}x{header.height}",
            expected_width=want_width,
            expected_height=want_height,
            width=header.width,
            height=header.height,
        )


def _describe(value: int | None) -> str:
    return "?" if value is None else str(value)


def _finish(
    fmt: ImageFormat,
    header: ImageHeader,
    decoded: DecodedPixels,
    preprocessing: Preprocessing,
    facts: DicomFacts | None,
) -> PreparedImage:
    if min(header.width, header.height) < preprocessing.size:
        raise ImageTooSmall(
            f"the image is {header.width}x{header.height}; its short side must be at "
            f"least {preprocessing.size}",
            width=header.width,
            height=header.height,
            size=preprocessing.size,
        )
    return PreparedImage(
        tensor=to_model_input(decoded, preprocessing),
        format=fmt,
        width=header.width,
        height=header.height,
        bit_depth=header.bit_depth,
        decode_scale=decoded.decode_scale,
        photometric=header.photometric,
        dicom=facts,
    )
