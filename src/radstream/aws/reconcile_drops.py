"""DICOM drops whose outcome object a later upload of the same instance took over.

A DICOM file uploaded without a sidecar (``dicom/{folder}/{file}``) has its outcome keyed
by its header (``results/{study}/{sop-instance}.json``, or ``failed/…``), not by its
upload. Two uploads of one instance (the same SOP Instance UID, under two keys) therefore
share one outcome object, and the later run overwrites it, ``sidecar_key`` included: the
earlier upload is then named by no outcome, although it was processed. Reported as lost,
``--requeue`` would run it again and take the object back from the later upload, and so
on at every reconcile.

:func:`superseded_drops` tells those apart: for each drop that no outcome names, it reads
the header from the drop's first bytes (one ranged GET), derives its outcome keys as the
validate stage does, and asks whether one of them was written after the drop was uploaded
(one or two HEADs). If so, the drop was superseded, not lost. Only drops already missing
an outcome are read, so a healthy bucket costs nothing.
"""

from __future__ import annotations

import io
from typing import Any, Final

import pydicom
from botocore.exceptions import ClientError

from radstream.imaging.deflated import deflated_stream_offset
from radstream.layout import failure_key, is_dicom_drop, result_key
from radstream.schema.dicom_sidecar import image_stem_from_header, study_id_from_header

HEADER_BYTES: Final = 64 * 1024
"""What is read of a drop to find its header: the UIDs come long before the pixel data."""


def superseded_drops(
    s3: Any, images: str, results: str, uploads: dict[str, float], outcomes: set[str]
) -> set[str]:
    """The DICOM drops among ``uploads`` (key → upload time, epoch seconds) that no outcome
    in ``outcomes`` names, whose header's outcome object was written after their upload:
    a later upload of the same instance holds it (see the module doc).

    Best effort: a drop whose header cannot be read from its first ``HEADER_BYTES`` (or
    whose data set is deflated) stays reported.
    """
    found: set[str] = set()
    for key, uploaded in uploads.items():
        if key in outcomes or not is_dicom_drop(key):
            continue
        ids = _outcome_ids(s3, images, key)
        if ids is None:
            continue
        for outcome in (result_key(*ids), failure_key(*ids)):
            written = _modified(s3, results, outcome)
            # Written before this upload: an earlier upload's outcome; this one is lost.
            if written is not None and written >= uploaded:
                found.add(key)
                break
    return found


def _outcome_ids(s3: Any, bucket: str, key: str) -> tuple[str, str] | None:
    """(study id, image id) of the drop, from its header, as ``validate`` derives them."""
    try:
        reply = s3.get_object(Bucket=bucket, Key=key, Range=f"bytes=0-{HEADER_BYTES - 1}")
        head: bytes = reply["Body"].read()
    except ClientError:  # deleted since the listing
        return None
    if deflated_stream_offset(head) is not None:
        return None  # pydicom inflates the whole data set, which a prefix cuts short
    try:
        header = pydicom.dcmread(io.BytesIO(head), stop_before_pixels=True, force=True)
        return study_id_from_header(header), image_stem_from_header(header)
    except Exception:  # not DICOM, or no UIDs: validate failed it under its own key
        return None


def _modified(s3: Any, bucket: str, key: str) -> float | None:
    """When the object was last written (epoch seconds), or None when there is none."""
    try:
        reply = s3.head_object(Bucket=bucket, Key=key)
    except ClientError as exc:
        if str(exc.response.get("Error", {}).get("Code")) in ("404", "NoSuchKey", "NotFound"):
            return None
        raise
    return float(reply["LastModified"].timestamp())
