"""KServe v2 / Open Inference Protocol codec, with Triton's binary tensor extension.

Pure functions, both directions, for requests and responses:

* A JSON body holds each tensor's values in ``data``, flattened in row-major order (a
  nested list of the right shape is also accepted when decoding).
* With the binary extension the body is a JSON header followed by the raw little-endian
  bytes of each binary tensor, in the order the header lists them. The length of the JSON
  header travels in the HTTP header ``Inference-Header-Content-Length``; each binary tensor
  carries ``parameters.binary_data_size``; a requested output that should come back as
  bytes carries ``parameters.binary_data: true`` (or the request sets
  ``parameters.binary_data_output: true`` for every output).

This is the wire format of Triton's ``tritonclient.http`` and of KServe's v2 servers, so
either can talk to RadStream. Malformed input raises ``ProtocolError`` with a message that
names the tensor and what is wrong; it never raises anything else.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np
import numpy.typing as npt

from radstream.errors import InvalidInputError

HEADER_LENGTH = "Inference-Header-Content-Length"
"""HTTP header carrying the byte length of the JSON part of a binary body."""

JSON_CONTENT_TYPE = "application/json"
BINARY_CONTENT_TYPE = "application/octet-stream"

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

_MAX_ELEMENTS = 1 << 31  # a shape claiming more than this is refused before allocating


class ProtocolError(InvalidInputError):
    """A KServe v2 request or response that cannot be decoded (HTTP 400)."""

    code: ClassVar[str] = "KSERVE_BAD_REQUEST"
    hint: ClassVar[str] = (
        "Send a KServe v2 inference request: JSON with 'inputs' (name, shape, datatype and "
        "'data' or, with the binary extension, parameters.binary_data_size and the "
        "Inference-Header-Content-Length header)."
    )


@dataclass(frozen=True)
class InferRequest:
    """A decoded inference request.

    ``outputs`` is None when the request names no outputs (then every output is wanted).
    ``binary_outputs`` names the requested outputs that asked for binary data;
    ``binary_data_output`` is the request-wide default for outputs it does not name.
    """

    id: str | None
    inputs: dict[str, npt.NDArray[Any]]
    outputs: list[str] | None = None
    binary_outputs: frozenset[str] = frozenset()
    binary_data_output: bool = False
    parameters: dict[str, Any] = field(default_factory=dict)

    def wants_binary(self, name: str) -> bool:
        """Whether the output ``name`` should be returned as binary data."""
        if self.outputs is not None and name in self.outputs:
            return name in self.binary_outputs
        return self.binary_data_output

    def binary_set(self, names: list[str] | tuple[str, ...]) -> set[str]:
        """Those of ``names`` that should be returned as binary data."""
        return {name for name in names if self.wants_binary(name)}


# --- helpers ---------------------------------------------------------------------------


def datatype_of(array: npt.NDArray[Any]) -> str:
    """The KServe datatype name of a numpy array; raises ProtocolError if it has none."""
    kind = array.dtype
    for name, dtype in DATATYPES.items():
        if kind.kind == dtype.kind and kind.itemsize == dtype.itemsize:
            return name
    raise ProtocolError(
        f"numpy dtype {kind} has no KServe v2 datatype; use one of {sorted(DATATYPES)}"
    )


def _dtype_for(datatype: Any, where: str) -> np.dtype[Any]:
    if not isinstance(datatype, str) or datatype not in DATATYPES:
        raise ProtocolError(
            f"{where}: unsupported datatype {datatype!r}; supported are "
            f"{', '.join(sorted(DATATYPES))}"
        )
    return DATATYPES[datatype]


def _to_wire(array: npt.NDArray[Any]) -> bytes:
    """Row-major little-endian bytes of ``array``."""
    if array.dtype.kind == "b":
        return np.ascontiguousarray(array, dtype=np.bool_).tobytes()
    little = array.dtype.newbyteorder("<")
    return np.ascontiguousarray(array, dtype=little).tobytes()


def _from_wire(raw: memoryview, dtype: np.dtype[Any], shape: list[int]) -> npt.NDArray[Any]:
    """Array of ``shape`` from little-endian bytes (native byte order, writeable copy)."""
    if dtype.kind == "b":
        return np.frombuffer(raw, dtype=np.uint8).astype(np.bool_).reshape(shape)
    array = np.frombuffer(raw, dtype=dtype).reshape(shape)
    return array.astype(dtype.newbyteorder("="), copy=True)


def _json_list(array: npt.NDArray[Any]) -> list[Any]:
    """Row-major flat list of Python scalars (float32 values survive a JSON round trip)."""
    flat: list[Any] = np.asarray(array).reshape(-1).tolist()
    return flat


def _dumps(obj: Any) -> bytes:
    # allow_nan keeps NaN/Infinity as JSON extensions, which tritonclient's rapidjson and
    # Python's json both read; strict JSON has no spelling for them.
    return json.dumps(obj, separators=(",", ":"), allow_nan=True).encode("utf-8")


def _shape(value: Any, where: str) -> list[int]:
    if not isinstance(value, list) or not all(
        isinstance(d, int) and not isinstance(d, bool) and d >= 0 for d in value
    ):
        raise ProtocolError(
            f"{where}: 'shape' must be a list of non-negative integers, got {value!r}"
        )
    count = math.prod(value)
    if count > _MAX_ELEMENTS:
        raise ProtocolError(f"{where}: shape {value} has {count} elements, too many")
    return list(value)


def _parameters(obj: Mapping[str, Any], where: str) -> dict[str, Any]:
    params = obj.get("parameters", {})
    if params is None:
        return {}
    if not isinstance(params, dict):
        raise ProtocolError(f"{where}: 'parameters' must be a JSON object, got {params!r}")
    return params


def _bool_param(params: Mapping[str, Any], key: str, where: str) -> bool:
    value = params.get(key, False)
    if not isinstance(value, bool):
        raise ProtocolError(f"{where}: parameters.{key} must be true or false, got {value!r}")
    return value


def _parse_header(body: bytes, header_length: int | None) -> tuple[dict[str, Any], memoryview]:
    """Split ``body`` into its JSON header (parsed) and the binary remainder."""
    if header_length is None:
        header_length = len(body)
    if isinstance(header_length, bool) or not isinstance(header_length, int):
        raise ProtocolError(f"{HEADER_LENGTH} must be an integer, got {header_length!r}")
    if not 0 < header_length <= len(body):
        raise ProtocolError(
            f"{HEADER_LENGTH} is {header_length}, but the body has {len(body)} bytes; "
            "it must give the length of the JSON part, between 1 and the body length"
        )
    view = memoryview(body)
    try:
        header = json.loads(bytes(view[:header_length]).decode("utf-8"))
    except UnicodeDecodeError as exc:
        raise ProtocolError(f"the JSON part of the body is not UTF-8 ({exc.reason})") from None
    except json.JSONDecodeError as exc:
        hint = (
            " (a binary body needs the Inference-Header-Content-Length header)"
            if header_length == len(body)
            else ""
        )
        raise ProtocolError(
            f"the body is not valid JSON: {exc.msg} at byte {exc.pos}{hint}"
        ) from None
    except RecursionError:
        raise ProtocolError("the JSON part of the body nests too deeply") from None
    if not isinstance(header, dict):
        raise ProtocolError(
            f"the JSON part of the body must be an object, got {type(header).__name__}"
        )
    return header, view[header_length:]


def _tensor_from_json(
    data: Any, dtype: np.dtype[Any], shape: list[int], where: str
) -> npt.NDArray[Any]:
    """Check and convert a JSON ``data`` list (flat or nested, row-major)."""
    if not isinstance(data, list):
        raise ProtocolError(f"{where}: 'data' must be a JSON list, got {type(data).__name__}")
    try:
        array = np.asarray(data)
    except (ValueError, TypeError, OverflowError):
        raise ProtocolError(f"{where}: 'data' is a ragged or mixed-type list") from None
    expected = math.prod(shape)
    if array.size != expected:
        raise ProtocolError(
            f"{where}: 'data' holds {array.size} values, but shape {shape} needs {expected}"
        )
    if expected == 0:
        return np.zeros(shape, dtype=dtype.newbyteorder("="))
    kind = array.dtype.kind
    if dtype.kind == "b":
        ok = kind == "b"
    elif dtype.kind in "iu":
        ok = kind in "iu"
    else:  # floating point: integers are acceptable numbers too
        ok = kind in "iuf"
    if not ok:
        wanted = {"b": "true/false", "i": "integers", "u": "integers"}.get(dtype.kind, "numbers")
        raise ProtocolError(f"{where}: 'data' must hold {wanted} for this datatype")
    target = dtype.newbyteorder("=")
    if dtype.kind in "iu":
        info = np.iinfo(target)
        if array.size and (int(array.min()) < info.min or int(array.max()) > info.max):
            raise ProtocolError(f"{where}: a value in 'data' is out of range for {target}")
    with np.errstate(over="ignore"):
        return array.astype(target).reshape(shape)


def _decode_tensors(
    entries: Any, binary: memoryview, where: str, *, required: bool
) -> dict[str, npt.NDArray[Any]]:
    """Decode the ``inputs``/``outputs`` list of a request or response."""
    if entries is None and not required:
        entries = []
    if not isinstance(entries, list) or (required and not entries):
        raise ProtocolError(f"'{where}' must be a non-empty list of tensors, got {entries!r}"[:300])
    tensors: dict[str, npt.NDArray[Any]] = {}
    offset = 0
    for position, entry in enumerate(entries):
        label = f"{where}[{position}]"
        if not isinstance(entry, dict):
            raise ProtocolError(f"{label} must be a JSON object")
        name = entry.get("name")
        if not isinstance(name, str) or not name:
            raise ProtocolError(f"{label}: 'name' must be a non-empty string")
        label = f"{where[:-1]} {name!r}"
        if name in tensors:
            raise ProtocolError(f"{label} appears twice")
        dtype = _dtype_for(entry.get("datatype"), label)
        shape = _shape(entry.get("shape"), label)
        params = _parameters(entry, label)
        size = params.get("binary_data_size")
        if size is not None:
            if "data" in entry:
                raise ProtocolError(f"{label} has both 'data' and parameters.binary_data_size")
            if isinstance(size, bool) or not isinstance(size, int) or size < 0:
                raise ProtocolError(
                    f"{label}: parameters.binary_data_size must be a non-negative integer"
                )
            expected = math.prod(shape) * dtype.itemsize
            if size != expected:
                raise ProtocolError(
                    f"{label}: binary_data_size is {size} bytes, but shape {shape} of "
                    f"{entry['datatype']} needs {expected}"
                )
            if offset + size > len(binary):
                raise ProtocolError(
                    f"{label}: the body ends {offset + size - len(binary)} bytes early "
                    f"({len(binary)} bytes follow the JSON header)"
                )
            tensors[name] = _from_wire(binary[offset : offset + size], dtype, shape)
            offset += size
        elif "data" in entry:
            tensors[name] = _tensor_from_json(entry["data"], dtype, shape, label)
        else:
            raise ProtocolError(f"{label} has neither 'data' nor parameters.binary_data_size")
    if offset != len(binary):
        raise ProtocolError(
            f"{len(binary)} bytes follow the JSON header, but the tensors declare {offset}; "
            f"check {HEADER_LENGTH} and each binary_data_size"
        )
    return tensors


def _encode_tensors(
    arrays: Mapping[str, npt.NDArray[Any]], binary: set[str] | frozenset[str]
) -> tuple[list[dict[str, Any]], list[bytes]]:
    entries: list[dict[str, Any]] = []
    chunks: list[bytes] = []
    for name, value in arrays.items():
        array = np.asarray(value)
        entry: dict[str, Any] = {
            "name": name,
            "datatype": datatype_of(array),
            "shape": list(array.shape),
        }
        if name in binary:
            raw = _to_wire(array)
            entry["parameters"] = {"binary_data_size": len(raw)}
            chunks.append(raw)
        else:
            entry["data"] = _json_list(array)
        entries.append(entry)
    return entries, chunks


def _assemble(header: dict[str, Any], chunks: list[bytes]) -> tuple[bytes, dict[str, str]]:
    head = _dumps(header)
    if not chunks:
        return head, {"Content-Type": JSON_CONTENT_TYPE}
    return b"".join([head, *chunks]), {
        "Content-Type": BINARY_CONTENT_TYPE,
        HEADER_LENGTH: str(len(head)),
    }


def parse_header_length(value: str | None) -> int | None:
    """Parse the ``Inference-Header-Content-Length`` HTTP header (None when absent)."""
    if value is None:
        return None
    try:
        length = int(value.strip())
    except ValueError:
        raise ProtocolError(f"{HEADER_LENGTH} must be an integer, got {value[:40]!r}") from None
    if length < 0:
        raise ProtocolError(f"{HEADER_LENGTH} must not be negative, got {length}")
    return length


# --- requests --------------------------------------------------------------------------


def encode_infer_request(
    inputs: Mapping[str, npt.NDArray[Any]],
    *,
    outputs: list[str] | None,
    binary: bool = True,
    request_id: str | None = None,
) -> tuple[bytes, dict[str, str]]:
    """Encode an inference request; return ``(body, http_headers)``.

    With ``binary`` every input travels as raw bytes after the JSON header and every
    requested output (or, if ``outputs`` is None, every output) is asked for in binary;
    otherwise everything is JSON. The headers hold ``Content-Type`` and, for binary
    bodies, ``Inference-Header-Content-Length``.
    """
    if not inputs:
        raise ProtocolError("an inference request needs at least one input")
    names = set(inputs) if binary else set()
    entries, chunks = _encode_tensors(inputs, names)
    header: dict[str, Any] = {}
    if request_id is not None:
        header["id"] = request_id
    header["inputs"] = entries
    if outputs is not None:
        header["outputs"] = [{"name": n, "parameters": {"binary_data": binary}} for n in outputs]
    elif binary:
        header["parameters"] = {"binary_data_output": True}
    return _assemble(header, chunks)


def decode_infer_request(body: bytes, header_length: int | None) -> InferRequest:
    """Decode an inference request body (``header_length`` from the HTTP header, or None).

    Raises ProtocolError for anything malformed: bad JSON, unknown datatype, a shape that
    does not match the data, binary sizes that do not add up to the body.
    """
    header, binary = _parse_header(body, header_length)
    request_id = header.get("id")
    if request_id is not None and not isinstance(request_id, str):
        raise ProtocolError(f"'id' must be a string, got {request_id!r}"[:200])
    params = _parameters(header, "the request")
    binary_default = _bool_param(params, "binary_data_output", "the request")
    inputs = _decode_tensors(header.get("inputs"), binary, "inputs", required=True)

    raw_outputs = header.get("outputs")
    outputs: list[str] | None = None
    wanted_binary: set[str] = set()
    if raw_outputs is not None:
        if not isinstance(raw_outputs, list):
            raise ProtocolError("'outputs' must be a list of {\"name\": ...} objects")
        outputs = []
        for position, entry in enumerate(raw_outputs):
            if not isinstance(entry, dict) or not isinstance(entry.get("name"), str):
                raise ProtocolError(f"outputs[{position}] must be an object with a string 'name'")
            name = entry["name"]
            out_params = _parameters(entry, f"output {name!r}")
            if "binary_data" in out_params:
                if _bool_param(out_params, "binary_data", f"output {name!r}"):
                    wanted_binary.add(name)
            elif binary_default:
                wanted_binary.add(name)
            outputs.append(name)
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
) -> tuple[bytes, dict[str, str]]:
    """Encode an inference response; return ``(body, http_headers)``.

    Outputs named in ``binary_outputs`` travel as raw little-endian bytes after the JSON
    header, in the order of ``outputs``; the rest as JSON ``data``.
    """
    entries, chunks = _encode_tensors(outputs, binary_outputs)
    header: dict[str, Any] = {"model_name": model_name, "model_version": model_version}
    if request_id is not None:
        header["id"] = request_id
    header["outputs"] = entries
    return _assemble(header, chunks)


def decode_infer_response(body: bytes, header_length: int | None) -> dict[str, npt.NDArray[Any]]:
    """Decode an inference response body into ``{output name: array}``.

    Raises ProtocolError for a malformed body, or with the server's message for an error
    body (``{"error": "..."}``).
    """
    header, binary = _parse_header(body, header_length)
    if "error" in header and "outputs" not in header:
        raise ProtocolError(f"the server answered with an error: {header['error']}")
    return _decode_tensors(header.get("outputs"), binary, "outputs", required=True)


def encode_error(message: str) -> bytes:
    """The KServe v2 error body ``{"error": message}``."""
    return _dumps({"error": message})


__all__ = [
    "BINARY_CONTENT_TYPE",
    "DATATYPES",
    "HEADER_LENGTH",
    "JSON_CONTENT_TYPE",
    "InferRequest",
    "ProtocolError",
    "datatype_of",
    "decode_infer_request",
    "decode_infer_response",
    "encode_error",
    "encode_infer_request",
    "encode_infer_response",
    "parse_header_length",
]
