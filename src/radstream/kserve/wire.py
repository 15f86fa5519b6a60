"""Names, limits and small parsers of the KServe v2 / Open Inference Protocol over HTTP.

Everything here is shared by the client (``radstream.model.kserve_client``) and the server
(``radstream.serving``): the HTTP header names, content types, the URL of a model, the
datatypes a tensor may have, the limits a body must respect, and the one error type a
malformed message raises.
"""

from __future__ import annotations

import email.utils
import math
from datetime import UTC, datetime
from typing import Any, ClassVar
from urllib.parse import quote

import numpy as np

from radstream.errors import InvalidInputError

HEADER_LENGTH = "Inference-Header-Content-Length"
"""HTTP header carrying the byte length of the JSON part of a binary body."""

RETRY_AFTER = "Retry-After"
"""HTTP header of a 429/503 answer: seconds (or an HTTP date) to wait before retrying."""

JSON_CONTENT_TYPE = "application/json"
BINARY_CONTENT_TYPE = "application/octet-stream"

BINARY_EXTENSION = "binary_tensor_data"
"""Name of Triton's binary tensor extension in the server metadata's ``extensions``."""

MAX_BODY_BYTES = 256 * 1024 * 1024
"""Largest request body a server accepts (after decompression): 413 above it."""

MAX_ELEMENTS = 1 << 31
"""A tensor shape claiming more elements than this is refused before allocating."""

MAX_DIMS = 32
"""Most dimensions a tensor shape may have (numpy's own limit is higher)."""

MAX_HEADER_TEXT = 40
"""How much of a malformed header value an error message quotes."""

# KServe v2 datatype names and their little-endian numpy dtypes. BYTES (length-prefixed
# strings) is not supported: RadStream only moves numeric tensors.
DATATYPES: dict[str, np.dtype[Any]] = {
    "BOOL": np.dtype(np.bool_),
    "UINT8": np.dtype("<u1"),
    "UINT16": np.dtype("<u2"),
    "UINT32": np.dtype("<u4"),
    "UINT64": np.dtype("<u8"),
    "INT8": np.dtype("<i1"),
    "INT16": np.dtype("<i2"),
    "INT32": np.dtype("<i4"),
    "INT64": np.dtype("<i8"),
    "FP16": np.dtype("<f2"),
    "FP32": np.dtype("<f4"),
    "FP64": np.dtype("<f8"),
}


class ProtocolError(InvalidInputError):
    """A KServe v2 request or response that cannot be decoded (HTTP 400)."""

    code: ClassVar[str] = "KSERVE_BAD_REQUEST"
    hint: ClassVar[str] = (
        "Send a KServe v2 inference request: JSON with 'inputs' (name, shape, datatype and "
        "'data' or, with the binary extension, parameters.binary_data_size and the "
        "Inference-Header-Content-Length header)."
    )


def model_path(name: str, version: str | None = None) -> str:
    """URL path of a model, ``/v2/models/{name}[/versions/{version}]`` (names quoted)."""
    path = f"/v2/models/{quote(name, safe='')}"
    if version is not None:
        path += f"/versions/{quote(version, safe='')}"
    return path


def infer_path(name: str, version: str | None = None) -> str:
    """URL path of a model's inference endpoint, ``{model_path}/infer``."""
    return model_path(name, version) + "/infer"


def parse_header_length(value: str | None) -> int | None:
    """Parse the ``Inference-Header-Content-Length`` HTTP header (None when absent)."""
    if value is None:
        return None
    try:
        length = int(value.strip())
    except ValueError:
        raise ProtocolError(
            f"{HEADER_LENGTH} must be an integer, got {value[:MAX_HEADER_TEXT]!r}"
        ) from None
    if length < 0:
        raise ProtocolError(f"{HEADER_LENGTH} must not be negative, got {length}")
    return length


def parse_retry_after(value: str | None, *, now: datetime | None = None) -> float | None:
    """Seconds from a ``Retry-After`` header (delta-seconds or HTTP date); None if absent.

    A date in the past gives 0. ``now`` (default: the current UTC time) is injectable so
    a test can pin it.
    """
    if value is None:
        return None
    value = value.strip()
    try:
        seconds = float(value)
    except ValueError:
        try:
            when = email.utils.parsedate_to_datetime(value)
        except (TypeError, ValueError):
            return None
        if when.tzinfo is None:
            when = when.replace(tzinfo=UTC)
        seconds = (when - (now if now is not None else datetime.now(UTC))).total_seconds()
    if not math.isfinite(seconds):
        return None
    return max(0.0, seconds)


__all__ = [
    "BINARY_CONTENT_TYPE",
    "BINARY_EXTENSION",
    "DATATYPES",
    "HEADER_LENGTH",
    "JSON_CONTENT_TYPE",
    "MAX_BODY_BYTES",
    "MAX_DIMS",
    "MAX_ELEMENTS",
    "RETRY_AFTER",
    "ProtocolError",
    "infer_path",
    "model_path",
    "parse_header_length",
    "parse_retry_after",
]
