"""Inference requests and responses of the KServe v2 protocol, both directions.

A requested output that should come back as bytes carries ``parameters.binary_data: true``
(or the request sets ``parameters.binary_data_output: true`` for every output). This is
the wire format of Triton's ``tritonclient.http`` and of KServe's v2 servers, so either
can talk to RadStream. Malformed input raises ``ProtocolError`` with a message that names
the tensor and what is wrong; it never raises anything else.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, NotRequired, TypedDict

import numpy.typing as npt

from radstream.kserve.tensors import (
    JsonObject,
    ShapeCheck,
    TensorEntry,
    Tensors,
    bool_parameter,
    decode_tensors,
    dumps,
    encode_tensors,
    parameters_of,
    split_body,
)
from radstream.kserve.wire import (
    BINARY_CONTENT_TYPE,
    HEADER_LENGTH,
    JSON_CONTENT_TYPE,
    ProtocolError,
)

Headers = dict[str, str]
"""HTTP headers to send with an encoded body."""


class OutputParameters(TypedDict):
    """``parameters`` of a requested output."""

    binary_data: bool


class RequestedOutput(TypedDict):
    """One entry of a request's ``outputs``."""

    name: str
    parameters: OutputParameters


class RequestParameters(TypedDict):
    """Request-wide ``parameters`` RadStream sends."""

    binary_data_output: bool


class RequestHeader(TypedDict):
    """The JSON part of an inference request."""

    id: NotRequired[str]
    inputs: list[TensorEntry]
    outputs: NotRequired[list[RequestedOutput]]
    parameters: NotRequired[RequestParameters]


class ResponseHeader(TypedDict):
    """The JSON part of an inference response."""

    model_name: str
    model_version: str
    id: NotRequired[str]
    outputs: list[TensorEntry]


class ErrorBody(TypedDict):
    """The body of a KServe v2 error answer."""

    error: str


@dataclass(frozen=True)
class InferRequest:
    """A decoded inference request.

    ``outputs`` is None when the request names no outputs (then every output is wanted).
    ``binary_outputs`` names the requested outputs that asked for binary data;
    ``binary_data_output`` is the request-wide default for outputs it does not name.
    """

    id: str | None
    inputs: Tensors
    outputs: list[str] | None = None
    binary_outputs: frozenset[str] = frozenset()
    binary_data_output: bool = False
    parameters: Mapping[str, object] = field(default_factory=dict)

    def wants_binary(self, name: str) -> bool:
        """Whether the output ``name`` should be returned as binary data."""
        if self.outputs is not None and name in self.outputs:
            return name in self.binary_outputs
        return self.binary_data_output

    def binary_set(self, names: list[str] | tuple[str, ...]) -> set[str]:
        """Those of ``names`` that should be returned as binary data."""
        return {name for name in names if self.wants_binary(name)}


def _assemble(header: Mapping[str, object], chunks: list[bytes]) -> tuple[bytes, Headers]:
    head = dumps(header)
    if not chunks:
        return head, {"Content-Type": JSON_CONTENT_TYPE}
    return b"".join([head, *chunks]), {
        "Content-Type": BINARY_CONTENT_TYPE,
        HEADER_LENGTH: str(len(head)),
    }


# --- requests --------------------------------------------------------------------------


def encode_infer_request(
    inputs: Mapping[str, npt.NDArray[Any]],
    *,
    outputs: list[str] | None,
    binary: bool = True,
    request_id: str | None = None,
) -> tuple[bytes, Headers]:
    """Encode an inference request; return ``(body, http_headers)``.

    With ``binary`` every input travels as raw bytes after the JSON header and every
    requested output (or, if ``outputs`` is None, every output) is asked for in binary;
    otherwise everything is JSON. The headers hold ``Content-Type`` and, for binary
    bodies, ``Inference-Header-Content-Length``.
    """
    if not inputs:
        raise ProtocolError("an inference request needs at least one input")
    names = set(inputs) if binary else set()
    entries, chunks = encode_tensors(inputs, names)
    header: RequestHeader = {"inputs": entries}
    if request_id is not None:
        # "id" goes first, as Triton writes it; a TypedDict keeps insertion order too.
        header = {"id": request_id, "inputs": entries}
    if outputs is not None:
        header["outputs"] = [{"name": n, "parameters": {"binary_data": binary}} for n in outputs]
    elif binary:
        header["parameters"] = {"binary_data_output": True}
    return _assemble(header, chunks)


def _requested_outputs(
    raw_outputs: object, binary_default: bool
) -> tuple[list[str] | None, set[str]]:
    """The names a request's ``outputs`` asks for, and which of them want binary data."""
    if raw_outputs is None:
        return None, set()
    if not isinstance(raw_outputs, list):
        raise ProtocolError("'outputs' must be a list of {\"name\": ...} objects")
    outputs: list[str] = []
    wanted_binary: set[str] = set()
    for position, entry in enumerate(raw_outputs):
        name = entry.get("name") if isinstance(entry, dict) else None
        if not isinstance(entry, dict) or not isinstance(name, str):
            raise ProtocolError(f"outputs[{position}] must be an object with a string 'name'")
        out_params = parameters_of(entry, f"output {name!r}")
        if "binary_data" in out_params:
            if bool_parameter(out_params, "binary_data", f"output {name!r}"):
                wanted_binary.add(name)
        elif binary_default:
            wanted_binary.add(name)
        outputs.append(name)
    return outputs, wanted_binary


def decode_infer_request(
    body: bytes, header_length: int | None, *, check: ShapeCheck | None = None
) -> InferRequest:
    """Decode an inference request body (``header_length`` from the HTTP header, or None).

    ``check`` sees each input's name, datatype and shape before its data is decoded, and
    may refuse it with ProtocolError (so an oversized batch costs no allocation).
    Raises ProtocolError for anything malformed: bad JSON, unknown datatype, a shape that
    does not match the data, binary sizes that do not add up to the body.
    """
    try:
        return _decode_infer_request(body, header_length, check)
    except ProtocolError:
        raise
    except (ValueError, TypeError, OverflowError, RecursionError) as exc:
        # A malformed body must never become a server error: whatever numpy or json
        # refuses that the checks above did not foresee is still the client's mistake.
        message = f"the request cannot be decoded ({type(exc).__name__}: {exc})"
        raise ProtocolError(message[:300]) from None


def _decode_infer_request(
    body: bytes, header_length: int | None, check: ShapeCheck | None
) -> InferRequest:
    header, binary = split_body(body, header_length)
    request_id = header.get("id")
    if request_id is not None and not isinstance(request_id, str):
        raise ProtocolError(f"'id' must be a string, got {request_id!r}"[:200])
    params = parameters_of(header, "the request")
    binary_default = bool_parameter(params, "binary_data_output", "the request")
    inputs = decode_tensors(header.get("inputs"), binary, "inputs", required=True, check=check)
    outputs, wanted_binary = _requested_outputs(header.get("outputs"), binary_default)
    return InferRequest(
        id=request_id,
        inputs=inputs,
        outputs=outputs,
        binary_outputs=frozenset(wanted_binary),
        binary_data_output=binary_default,
        parameters=params,
    )


# --- responses -------------------------------------------------------------------------


def encode_infer_response(
    model_name: str,
    model_version: str,
    outputs: Mapping[str, npt.NDArray[Any]],
    *,
    binary_outputs: set[str] | frozenset[str],
    request_id: str | None,
) -> tuple[bytes, Headers]:
    """Encode an inference response; return ``(body, http_headers)``.

    Outputs named in ``binary_outputs`` travel as raw little-endian bytes after the JSON
    header, in the order of ``outputs``; the rest as JSON ``data``.
    """
    entries, chunks = encode_tensors(outputs, binary_outputs)
    header: ResponseHeader
    if request_id is not None:
        header = {
            "model_name": model_name,
            "model_version": model_version,
            "id": request_id,
            "outputs": entries,
        }
    else:
        header = {"model_name": model_name, "model_version": model_version, "outputs": entries}
    return _assemble(header, chunks)


def decode_infer_response(body: bytes, header_length: int | None) -> Tensors:
    """Decode an inference response body into ``{output name: array}``.

    Raises ProtocolError for a malformed body, or with the server's message for an error
    body (``{"error": "..."}``).
    """
    header, binary = split_body(body, header_length)
    if "error" in header and "outputs" not in header:
        raise ProtocolError(f"the server answered with an error: {header['error']}")
    return decode_tensors(header.get("outputs"), binary, "outputs", required=True)


# --- errors ----------------------------------------------------------------------------


def encode_error(message: str) -> bytes:
    """The KServe v2 error body ``{"error": message}``."""
    body: ErrorBody = {"error": message}
    return dumps(body)


def error_message(text: str) -> str | None:
    """The message of a KServe v2 error body ``{"error": "..."}``; None for anything else."""
    try:
        body: object = json.loads(text)
    except ValueError:
        return None
    if isinstance(body, dict):
        message = body.get("error")
        if isinstance(message, str):
            return message
    return None


__all__ = [
    "ErrorBody",
    "Headers",
    "InferRequest",
    "JsonObject",
    "RequestHeader",
    "ResponseHeader",
    "decode_infer_request",
    "decode_infer_response",
    "encode_error",
    "encode_infer_request",
    "encode_infer_response",
    "error_message",
]
