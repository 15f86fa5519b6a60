"""Which pydicom pixel-data decoder plugin decodes which compressed encoding, and why.

pydicom 3 decodes through plugins; it tries the installed ones in its own order
(gdcm first). The order below is chosen by licence, size and measured speed on a real
15-bit CR chest radiograph (benchmarks/decode.py); no GPL decoder is needed
(pylibjpeg-libjpeg, GPL-3, is never required or preferred).

=========================  ==============================  ============================
encoding                   plugin (package, licence)        why
=========================  ==============================  ============================
JPEG Baseline (8-bit)      radstream fast path, else        reduced-size IDCT; see
                           pillow (Pillow, MIT-CMU)         `dicom_jpeg`
JPEG Extended (12-bit)     ``radstream-gdcm`` (below)       only GDCM decodes 12-bit
                                                           without GPL code
JPEG Lossless (Process 14  gdcm (python-gdcm, BSD)          the only permissive decoder
 SV1 and other predictors)                                  with a pydicom plugin
JPEG-LS (near-)lossless    pyjpegls (CharLS, BSD-3/MIT)     2x faster than GDCM
JPEG 2000 lossless         gdcm                             on a par with OpenJPEG (faster
                                                           in 3 of 4 noisy runs)
JPEG 2000 (lossy), HTJ2K   pylibjpeg (+openjpeg, MIT)       1.5-2x faster than GDCM for
                                                           lossy J2K; the only HTJ2K
                                                           decoder
RLE Lossless               pylibjpeg (+rle, MIT), else      12 ms against 14 ms for the
                           radstream PackBits fast path     PackBits path (see `rle`),
                                                           100 ms for pydicom's own
=========================  ==============================  ============================

Where the preferred plugin is missing, pydicom's own order decides, so a machine with
only some of the packages still decodes what it can.

pydicom refuses 12-bit JPEG Extended through GDCM (its plugin raises before calling
GDCM) although GDCM decodes it: its output is identical to libjpeg-turbo 3's on real
12-bit files (tests/imaging/test_imaging_encodings.py checks this against imagecodecs).
`decode_frame` therefore registers this module as an extra plugin for that one
transfer syntax.
"""

from __future__ import annotations

import os
import tempfile
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Final

import numpy as np
from pydicom import uid
from pydicom.dataset import Dataset
from pydicom.pixels.decoders.base import DecodeRunner, get_decoder
from pydicom.pixels.utils import pixel_array

from radstream.errors import ImageTruncated

try:  # python-gdcm ships no type information.
    import gdcm  # type: ignore[import-untyped,unused-ignore]

    _HAVE_GDCM = True
except ImportError:  # pragma: no cover - depends on the installation
    _HAVE_GDCM = False

GDCM_12BIT_PLUGIN: Final = "radstream-gdcm"

# Required by pydicom's plugin interface: what this module decodes and needs.
DECODER_DEPENDENCIES: Final = {uid.JPEGExtended12Bit: ("python-gdcm>=3.0.10",)}

PREFERRED_PLUGINS: Final[dict[str, str]] = {
    uid.JPEGBaseline8Bit: "pillow",
    uid.JPEGExtended12Bit: GDCM_12BIT_PLUGIN,
    uid.JPEGLossless: "gdcm",
    uid.JPEGLosslessSV1: "gdcm",
    uid.JPEGLSLossless: "pyjpegls",
    uid.JPEGLSNearLossless: "pyjpegls",
    uid.JPEG2000Lossless: "gdcm",
    uid.JPEG2000: "pylibjpeg",
    uid.HTJ2KLossless: "pylibjpeg",
    uid.HTJ2KLosslessRPCL: "pylibjpeg",
    uid.HTJ2K: "pylibjpeg",
    uid.RLELossless: "pylibjpeg",
}

# Encodings GDCM decodes with its libjpeg, which pads a cut stream instead of failing.
_GDCM_JPEG: Final = frozenset({uid.JPEGLossless, uid.JPEGLosslessSV1, uid.JPEGExtended12Bit})
_LIBJPEG_CUT_WARNINGS: Final = ("premature end",)
_STDERR_LOCK: Final = threading.Lock()
_REGISTER_LOCK: Final = threading.Lock()

_registered = False


def is_available(transfer_syntax: str) -> bool:
    """pydicom plugin interface: True when this module can decode ``transfer_syntax``."""
    return _HAVE_GDCM and transfer_syntax in DECODER_DEPENDENCIES


def register_plugins() -> None:
    """Add the 12-bit GDCM plugin to pydicom's JPEG Extended decoder (once)."""
    global _registered
    if _registered:
        return
    # pydicom's add_plugin is not thread-safe, and the local engine decodes in threads.
    with _REGISTER_LOCK:
        decoder = get_decoder(uid.JPEGExtended12Bit)
        known = GDCM_12BIT_PLUGIN in decoder.available_plugins
        if not known and is_available(uid.JPEGExtended12Bit):
            decoder.add_plugin(GDCM_12BIT_PLUGIN, (__name__, "decode_jpeg_extended_frame"))
        _registered = True


def plugin_for(transfer_syntax: str) -> str:
    """The plugin to decode ``transfer_syntax`` with; "" lets pydicom choose."""
    register_plugins()
    preferred = PREFERRED_PLUGINS.get(transfer_syntax, "")
    if preferred and preferred in get_decoder(uid.UID(transfer_syntax)).available_plugins:
        return preferred
    return ""


def decode_frame(ds: Dataset, index: int = 0) -> np.ndarray:
    """Decode frame ``index`` of ``ds`` with the preferred plugin (colour as RGB).

    Raises ``ImageTruncated`` when GDCM padded a JPEG frame whose data ended early
    (see `_gdcm_padded`).
    """
    syntax = str(ds.file_meta.TransferSyntaxUID)
    plugin = plugin_for(syntax)
    try:
        frame: np.ndarray = pixel_array(ds, index=index, decoding_plugin=plugin)
    except BaseException as exc:
        # Rust decoders (pylibjpeg-rle) raise pyo3's PanicException on some hostile
        # input, and it derives from BaseException: without this it would get past
        # every `except Exception` and end the worker.
        if isinstance(exc, Exception) or type(exc).__name__ != "PanicException":
            raise
        raise RuntimeError(f"the {plugin or 'pydicom'} decoder failed: {exc}") from exc
    if syntax in _GDCM_JPEG and plugin in ("gdcm", GDCM_12BIT_PLUGIN) and ends_predictably(frame):
        _confirm_not_padded(ds, index, plugin)
    return frame


def ends_predictably(frame: np.ndarray) -> bool:
    """True when the frame's last row is what libjpeg fills in for missing data.

    When the entropy-coded data of a JPEG ends early (a cut file, perhaps patched with an
    end-of-image marker), libjpeg warns and decodes every missing block or sample with a
    zero difference: for lossy JPEG a flat block, for lossless JPEG each sample equal to
    its prediction. So the last row is flat or reproduces one of the seven lossless
    predictors exactly. A real radiograph rarely does, except where a border is blank,
    which is why this only triggers the confirmation in `_confirm_not_padded`.
    """
    grey = frame[..., 0] if frame.ndim == 3 else frame
    if grey.shape[0] < 2 or grey.shape[1] < 2:
        return False
    row = grey[-1, 1:].astype(np.int64)
    a = grey[-1, :-1].astype(np.int64)  # left
    b = grey[-2, 1:].astype(np.int64)  # above
    c = grey[-2, :-1].astype(np.int64)  # above left
    predictions = (a, b, c, a + b - c, a + ((b - c) >> 1), b + ((a - c) >> 1), (a + b) >> 1)
    return any(bool(np.array_equal(row, p)) for p in predictions)


def _confirm_not_padded(ds: Dataset, index: int, plugin: str) -> None:
    """Decode again, listening for libjpeg's warning, and fail if the data was cut.

    GDCM's libjpeg reports a cut stream only as a warning printed on stderr
    ("Corrupt JPEG data: premature end of data segment") and returns the padded image;
    neither GDCM nor pydicom exposes it. Capturing the process's stderr is global, so
    it happens only for frames `ends_predictably` flagged, under a lock, and whatever
    else was printed meanwhile is written back.
    """
    with _stderr_lines() as lines:
        pixel_array(ds, index=index, decoding_plugin=plugin)
    if any(warning in line.lower() for line in lines for warning in _LIBJPEG_CUT_WARNINGS):
        raise ImageTruncated("the JPEG data in the DICOM file ends early (libjpeg warned)")


@contextmanager
def _stderr_lines() -> Iterator[list[str]]:
    lines: list[str] = []
    with _STDERR_LOCK, tempfile.TemporaryFile() as sink:
        saved = os.dup(2)
        os.dup2(sink.fileno(), 2)
        try:
            yield lines
        finally:
            os.dup2(saved, 2)
            os.close(saved)
            sink.seek(0)
            captured = sink.read()
            if captured:
                os.write(2, captured)
            lines.extend(captured.decode("utf-8", "replace").splitlines())


def decode_jpeg_extended_frame(src: bytes, runner: DecodeRunner) -> bytes:
    """pydicom plugin: decode one JPEG Extended frame (8- or 12-bit) with GDCM."""
    fragment = gdcm.Fragment()
    fragment.SetByteStringValue(src)
    fragments = gdcm.SequenceOfFragments.New()
    fragments.AddFragment(fragment)
    element = gdcm.DataElement(gdcm.Tag(0x7FE0, 0x0010))
    element.SetValue(fragments.__ref__())

    image = gdcm.Image()
    image.SetNumberOfDimensions(2)
    image.SetDimensions((runner.columns, runner.rows, 1))
    image.SetDataElement(element)
    kind = gdcm.PhotometricInterpretation.GetPIType(runner.photometric_interpretation)
    image.SetPhotometricInterpretation(gdcm.PhotometricInterpretation(kind))
    if runner.samples_per_pixel > 1:
        image.SetPlanarConfiguration(runner.planar_configuration)
    syntax = gdcm.TransferSyntax.GetTSType(str.__str__(runner.transfer_syntax))
    image.SetTransferSyntax(gdcm.TransferSyntax(syntax))
    image.SetPixelFormat(
        gdcm.PixelFormat(
            runner.samples_per_pixel,
            runner.bits_allocated,
            runner.bits_stored,
            runner.bits_stored - 1,
            runner.pixel_representation,
        )
    )
    # GDCM hands the buffer back as str; surrogateescape restores the raw bytes.
    frame: bytes = image.GetBuffer().encode("utf-8", "surrogateescape")
    expected = int(runner.frame_length(unit="bytes"))
    if len(frame) < expected:
        raise ValueError(f"GDCM returned {len(frame)} bytes for a {expected}-byte frame")
    return frame[:expected]
