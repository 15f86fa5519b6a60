"""Tensors on the wire: JSON ``data`` lists and Triton's binary tensor extension.

* A JSON body holds each tensor's values in ``data``, flattened in row-major order (a
  nested list of the right shape is also accepted when decoding).
* With the binary extension the body is a JSON header followed by the raw little-endian
  bytes of each binary tensor, in the order the header lists them. The length of the JSON
  header travels in the HTTP header ``Inference-Header-Content-Length``; each binary tensor
  carries ``parameters.binary_data_size``.

Decoding reads untrusted JSON, so it takes plain ``object`` values and checks each one;
encoding writes the typed shapes below (``TensorEntry``).
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Mapping
from typing import Any, NotRequired, TypedDict

import numpy as np
import numpy.typing as npt

from radstream.kserve.wire import (
    DATATYPES,
    HEADER_LENGTH,
    MAX_DIMS,
    MAX_ELEMENTS,
    ProtocolError,
)

Tensors = dict[str, npt.NDArray[Any]]
"""Decoded tensors by name, in the order the message lists them."""

JsonObject = dict[str, object]
"""A parsed, not yet checked JSON object (the JSON part of a body)."""

ShapeCheck = Callable[[str, str, list[int]], None]
"""Called with (name, datatype, shape) of each tensor before its data is decoded; raises
ProtocolError to refuse it (a server bounds the batch this way, before allocating)."""


class TensorParameters(TypedDict, total=False):
    """``parameters`` of a tensor entry (binary extension)."""

    binary_data_size: int
    binary_data: bool


class TensorEntry(TypedDict):
    """One entry of the ``inputs`` of a request or the ``outputs`` of a response."""

    name: str
    datatype: str
    shape: list[int]
    data: NotRequired[list[bool | int | float]]
    parameters: NotRequired[TensorParameters]


def datatype_of(array: npt.NDArray[Any]) -> str:
    """The KServe datatype name of a numpy array; raises ProtocolError if it has none."""
    kind = array.dtype
    for name, dtype in DATATYPES.items():
        if kind.kind == dtype.kind and kind.itemsize == dtype.itemsize:
            return name
    raise ProtocolError(
        f"numpy dtype {kind} has no KServe v2 datatype; use one of {sorted(DATATYPES)}"
    )


def _dtype_for(datatype: object, where: str) -> np.dtype[Any]:
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


def _json_list(array: npt.NDArray[Any]) -> list[bool | int | float]:
    """Row-major flat list of Python scalars (float32 values survive a JSON round trip)."""
    flat: list[bool | int | float] = np.asarray(array).reshape(-1).tolist()
    return flat


def dumps(obj: Mapping[str, object]) -> bytes:
    """Compact UTF-8 JSON of a message header or error body."""
    # allow_nan keeps NaN/Infinity as JSON extensions, which tritonclient's rapidjson and
    # Python's json both read; strict JSON has no spelling for them.
    return json.dumps(obj, separators=(",", ":"), allow_nan=True).encode("utf-8")


def _shape(value: object, where: str) -> list[int]:
    if not isinstance(value, list) or not all(
        isinstance(d, int) and not isinstance(d, bool) and d >= 0 for d in value
    ):
        shown = repr(value)
        if len(shown) > 80:
            shown = shown[:80] + "..."
        raise ProtocolError(
            f"{where}: 'shape' must be a list of non-negative integers, got {shown}"
        )
    dims: list[int] = list(value)
    if len(dims) > MAX_DIMS:
        raise ProtocolError(f"{where}: shape has {len(dims)} dimensions, at most {MAX_DIMS}")
    # A zero dimension makes the element count 0, but numpy still refuses a shape whose
    # other dimensions overflow its index type: bound those too, and each one alone.
    count = 1
    for dim in dims:
        if dim > MAX_ELEMENTS:
            raise ProtocolError(f"{where}: shape dimension {dim} is too large")
        if dim:
            count *= dim
            if count > MAX_ELEMENTS:
                raise ProtocolError(
                    f"{where}: shape {dims} has more than {MAX_ELEMENTS} elements, too many"
                )
    return dims


def parameters_of(obj: Mapping[str, object], where: str) -> JsonObject:
    """The ``parameters`` object of a message or tensor entry ({} when absent)."""
    params = obj.get("parameters", {})
    if params is None:
        return {}
    if not isinstance(params, dict):
        raise ProtocolError(f"{where}: 'parameters' must be a JSON object, got {params!r}")
    return params


def bool_parameter(params: Mapping[str, object], key: str, where: str) -> bool:
    """A boolean parameter (False when absent); ProtocolError when it is not a boolean."""
    value = params.get(key, False)
    if not isinstance(value, bool):
        raise ProtocolError(f"{where}: parameters.{key} must be true or false, got {value!r}")
    return value


def split_body(body: bytes, header_length: int | None) -> tuple[JsonObject, memoryview]:
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
    except ValueError as exc:
        # Python refuses to convert integers of more than 4,300 digits (a ValueError that
        # is not a JSONDecodeError): a hostile body, not a server fault.
        message = f"the JSON part of the body holds an unusable number ({exc})"
        raise ProtocolError(message[:300]) from None
    if not isinstance(header, dict):
        raise ProtocolError(
            f"the JSON part of the body must be an object, got {type(header).__name__}"
        )
    return header, view[header_length:]


def _tensor_from_json(
    data: object, dtype: np.dtype[Any], shape: list[int], where: str
) -> npt.NDArray[Any]:
    """Check and convert a JSON ``data`` list (flat or nested, row-major)."""
    if not isinstance(data, list):
        raise ProtocolError(f"{where}: 'data' must be a JSON list, got {type(data).__name__}")
    expected = math.prod(shape)
    if data and not isinstance(data[0], list) and len(data) != expected:
        # A flat list of the wrong length is refused before numpy copies it.
        raise ProtocolError(
            f"{where}: 'data' holds {len(data)} values, but shape {shape} needs {expected}"
        )
    try:
        array = np.asarray(data)
    except (ValueError, TypeError, OverflowError):
        raise ProtocolError(f"{where}: 'data' is a ragged or mixed-type list") from None
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


def _binary_tensor(
    entry: Mapping[str, object],
    size: object,
    binary: memoryview,
    offset: int,
    label: str,
    dtype: np.dtype[Any],
    shape: list[int],
) -> npt.NDArray[Any]:
    """The tensor of a binary entry, from ``binary[offset:]`` after checking its size."""
    if "data" in entry:
        raise ProtocolError(f"{label} has both 'data' and parameters.binary_data_size")
    if isinstance(size, bool) or not isinstance(size, int) or size < 0:
        raise ProtocolError(f"{label}: parameters.binary_data_size must be a non-negative integer")
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
    return _from_wire(binary[offset : offset + size], dtype, shape)


def decode_tensors(
    entries: object,
    binary: memoryview,
    where: str,
    *,
    required: bool,
    check: ShapeCheck | None = None,
) -> Tensors:
    """Decode the ``inputs``/``outputs`` list of a request or response.

    ``check`` sees each tensor's name, datatype and shape before its data is decoded.
    """
    if entries is None and not required:
        entries = []
    if not isinstance(entries, list) or (required and not entries):
        raise ProtocolError(f"'{where}' must be a non-empty list of tensors, got {entries!r}"[:300])
    tensors: Tensors = {}
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
        if check is not None:
            check(name, str(entry["datatype"]), shape)
        size = parameters_of(entry, label).get("binary_data_size")
        if size is not None:
            tensors[name] = _binary_tensor(entry, size, binary, offset, label, dtype, shape)
            offset += tensors[name].nbytes
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


def encode_tensors(
    arrays: Mapping[str, npt.NDArray[Any]], binary: set[str] | frozenset[str]
) -> tuple[list[TensorEntry], list[bytes]]:
    """Entries for ``arrays`` and the raw bytes of those named in ``binary``, in order."""
    entries: list[TensorEntry] = []
    chunks: list[bytes] = []
    for name, value in arrays.items():
        array = np.asarray(value)
        entry: TensorEntry = {
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


__all__ = [
    "JsonObject",
    "ShapeCheck",
    "TensorEntry",
    "TensorParameters",
    "Tensors",
    "bool_parameter",
    "datatype_of",
    "decode_tensors",
    "dumps",
    "encode_tensors",
    "parameters_of",
    "split_body",
]
