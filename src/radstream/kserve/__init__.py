"""The KServe v2 / Open Inference Protocol wire codec, shared by client and server.

Pure and cheap to import (numpy only): ``radstream.model.kserve_client`` speaks it to an
endpoint, ``radstream.serving`` answers it. ``wire`` holds header names, limits, URL paths
and ``ProtocolError``; ``tensors`` the JSON and binary tensor encoding; ``messages`` the
inference requests and responses; ``metadata`` the metadata endpoints' shapes and the
parameters RadStream publishes there.
"""

from __future__ import annotations

from radstream.kserve.messages import (
    InferRequest,
    decode_infer_request,
    decode_infer_response,
    encode_error,
    encode_infer_request,
    encode_infer_response,
    error_message,
)
from radstream.kserve.tensors import ShapeCheck, datatype_of
from radstream.kserve.wire import (
    BINARY_CONTENT_TYPE,
    DATATYPES,
    HEADER_LENGTH,
    JSON_CONTENT_TYPE,
    MAX_BODY_BYTES,
    RETRY_AFTER,
    ProtocolError,
    infer_path,
    model_path,
    parse_header_length,
    parse_retry_after,
)

__all__ = [
    "BINARY_CONTENT_TYPE",
    "DATATYPES",
    "HEADER_LENGTH",
    "JSON_CONTENT_TYPE",
    "MAX_BODY_BYTES",
    "RETRY_AFTER",
    "InferRequest",
    "ProtocolError",
    "ShapeCheck",
    "datatype_of",
    "decode_infer_request",
    "decode_infer_response",
    "encode_error",
    "encode_infer_request",
    "encode_infer_response",
    "error_message",
    "infer_path",
    "model_path",
    "parse_header_length",
    "parse_retry_after",
]
