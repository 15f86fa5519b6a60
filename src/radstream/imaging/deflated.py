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

import io
import zlib
from typing import Final

from pydicom.filereader import (  # pydicom's private readers, used in this module only
    _read_command_set_elements,
    _read_file_meta_info,
    read_preamble,
)
from pydicom.uid import DeflatedExplicitVRLittleEndian

from radstream.errors import ImageFileTooLarge, ImageTruncated, ImageUndecodable

_CHUNK: Final = 1 << 20


def deflated_stream_offset(data: bytes) -> int | None:
    """Where the deflated data set starts, or None when pydicom would not inflate the file.

    The file is read as ``pydicom.dcmread(..., force=True)`` reads it up to the point where
    it inflates: the preamble when there is one, the file meta group (0002,xxxx) in
    whichever VR encoding pydicom settles on, and any command set group (0000,xxxx). A
    file whose meta pydicom cannot read is not inflated either: pydicom fails there first.
    """
    # pydicom's own readers, the ones its `read_partial` runs before it inflates: the file
    # meta (tried as explicit VR, read again as implicit VR when its VR bytes are not
    # letters) and a command set (group 0000). They are private to pydicom; using them
    # here, and only here, is the one way to agree with it on every file a forger can
    # write (an implicit-VR file meta went past a hand-written walk that assumed explicit
    # VR). pydicom is pinned <4; a release that renames them fails this import, loudly.
    fp = io.BytesIO(data)
    try:
        read_preamble(fp, True)
        syntax = _read_file_meta_info(fp).get("TransferSyntaxUID")
        _read_command_set_elements(fp)
    except Exception:
        # Whatever stops this read stops pydicom's at the same byte, before it inflates
        # (a warning turned into an error included).
        return None
    offset = fp.tell()
    # pydicom inflates only when its syntax is exactly this UID and bytes are left.
    if syntax != DeflatedExplicitVRLittleEndian or offset >= len(data):
        return None
    return offset


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
