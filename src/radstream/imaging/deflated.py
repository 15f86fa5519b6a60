"""The inflated size of a Deflated Explicit VR Little Endian DICOM file, bounded before pydicom reads it.

pydicom inflates a deflated data set with one ``zlib.decompress`` of everything after the
file meta, before a single element is read, so the pixel guard (Rows x Columns x Frames)
comes too late: a 2 MB file of deflated zeros inflates to gigabytes (deflate reaches about
1000:1). :func:`check_inflated_size` inflates the stream first in bounded chunks, keeping
none of the output, and refuses a data set that would inflate to more than the limit an
uncompressed file has (``imaging.max_file_bytes``): ``IMAGE_FILE_TOO_LARGE``. Only then
does pydicom inflate it, into at most that many bytes.
"""

from __future__ import annotations

import struct
import zlib
from typing import Final

from radstream.errors import ImageFileTooLarge, ImageTruncated, ImageUndecodable

DEFLATED_SYNTAX: Final = "1.2.840.10008.1.2.1.99"
"""Deflated Explicit VR Little Endian."""
_PREAMBLE: Final = 128
_MAGIC: Final = b"DICM"
_LONG_VRS: Final = frozenset(
    {b"OB", b"OD", b"OF", b"OL", b"OV", b"OW", b"SQ", b"SV", b"UC", b"UN", b"UR", b"UT", b"UV"}
)
"""Explicit VRs with a 2-byte reserved field and a 4-byte length (PS3.5 7.1.2)."""
_TRANSFER_SYNTAX: Final = (0x0002, 0x0010)
_CHUNK: Final = 1 << 20


def deflated_stream_offset(data: bytes) -> int | None:
    """Where the deflated data set starts, or None when the file is not deflated.

    The file meta group (0002,xxxx) is always explicit VR little endian; it is walked here
    as pydicom walks it, up to the first element of another group.
    """
    pos = _PREAMBLE + len(_MAGIC) if data[_PREAMBLE : _PREAMBLE + 4] == _MAGIC else 0
    syntax = None
    while pos + 8 <= len(data):
        group, element = struct.unpack_from("<HH", data, pos)
        if group != 0x0002:
            break
        vr = data[pos + 4 : pos + 6]
        if vr in _LONG_VRS:
            if pos + 12 > len(data):
                return None
            (length,) = struct.unpack_from("<I", data, pos + 8)
            start = pos + 12
        else:
            (length,) = struct.unpack_from("<H", data, pos + 6)
            start = pos + 8
        if length == 0xFFFFFFFF:  # undefined length in the file meta: pydicom refuses it
            return None
        if (group, element) == _TRANSFER_SYNTAX:
            syntax = data[start : start + length].rstrip(b"\x00 ").decode("ascii", "replace")
        pos = start + length
    return pos if syntax == DEFLATED_SYNTAX else None


def check_inflated_size(data: bytes, max_bytes: int) -> None:
    """Refuse a deflated DICOM file whose data set inflates to more than ``max_bytes``.

    A file that is not deflated passes untouched. Memory stays at one chunk of output
    whatever the stream claims.
    """
    offset = deflated_stream_offset(data)
    if offset is None:
        return
    inflater = zlib.decompressobj(-zlib.MAX_WBITS)
    pending = memoryview(data)[offset:]
    total = 0
    try:
        while not inflater.eof:
            out = inflater.decompress(pending, _CHUNK)
            total += len(out)
            if total > max_bytes:
                raise ImageFileTooLarge(
                    f"the deflated DICOM data set inflates to more than {max_bytes} bytes, "
                    "the limit of an uncompressed file (imaging.max_file_bytes)",
                    inflated_bytes_over=max_bytes,
                    file_bytes=len(data),
                    max_file_bytes=max_bytes,
                )
            pending = memoryview(inflater.unconsumed_tail)
            if not out and not pending:
                break  # all input used, no output left: the stream ends early
    except zlib.error as exc:
        raise ImageUndecodable(f"the deflated DICOM data set is corrupt: {exc}") from exc
    if not inflater.eof:
        raise ImageTruncated("the deflated DICOM data set ends early")
