"""Image checks, decoding and preprocessing: file bytes in, model input tensor out.

`prepare_image` is the one entry point the pipeline calls; it raises only typed
``RadStreamError`` subclasses.
"""

from radstream.imaging.formats import ImageFormat, extension_format, sniff_format
from radstream.imaging.options import ImagingLimits, Preprocessing
from radstream.imaging.prepare import prepare_image
from radstream.imaging.prepared import PreparedImage

__all__ = [
    "ImageFormat",
    "ImagingLimits",
    "PreparedImage",
    "Preprocessing",
    "extension_format",
    "prepare_image",
    "sniff_format",
]
