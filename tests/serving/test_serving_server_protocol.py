"""The KServe v2 codec: round trips, validation, and byte-level agreement with tritonclient."""

from __future__ import annotations

import json
from typing import Any

import numpy as np
import pytest

from radstream.errors import InvalidInputError, RadStreamError
from radstream.kserve import (
    HEADER_LENGTH,
    ProtocolError,
    datatype_of,
    decode_infer_request,
    decode_infer_response,
    encode_infer_request,
    encode_infer_response,
    parse_header_length,
)

tc_http = pytest.importorskip("tritonclient.http")

RNG = np.random.default_rng(7)

SAMPLES: dict[str, np.ndarray] = {
    "FP32": RNG.standard_normal((2, 3, 4)).astype(np.float32),
    "FP16": RNG.standard_normal((3, 5)).astype(np.float16),
    "FP64": RNG.standard_normal((4,)),
    "INT64": RNG.integers(-(2**40), 2**40, size=(2, 2), dtype=np.int64),
    "INT32": RNG.integers(-(2**30), 2**30, size=(5,), dtype=np.int32),
    "INT8": RNG.integers(-128, 127, size=(3,), dtype=np.int8),
    "UINT8": RNG.integers(0, 255, size=(2, 3), dtype=np.uint8),
    "BOOL": np.array([[True, False, True], [False, False, True]]),
}


def _header_length(headers: dict[str, str]) -> int | None:
    value = headers.get(HEADER_LENGTH)
    return None if value is None else int(value)


def _assert_same(a: np.ndarray, b: np.ndarray) -> None:
    assert a.dtype == b.dtype
    assert a.shape == b.shape
    np.testing.assert_array_equal(a, b)


def test_protocol_error_is_a_typed_invalid_input() -> None:
    err = ProtocolError("bad")
    assert isinstance(err, InvalidInputError)
    assert isinstance(err, RadStreamError)
    assert err.code == "KSERVE_BAD_REQUEST"
    assert not err.retryable


@pytest.mark.parametrize("binary", [True, False])
def test_request_round_trip_every_datatype(binary: bool) -> None:
    body, headers = encode_infer_request(
        SAMPLES, outputs=["out", "other"], binary=binary, request_id="r-1"
    )
    assert (HEADER_LENGTH in headers) is binary
    request = decode_infer_request(body, _header_length(headers))
    assert request.id == "r-1"
    assert list(request.inputs) == list(SAMPLES)
    for name, array in SAMPLES.items():
        _assert_same(request.inputs[name], array)
    assert request.outputs == ["out", "other"]
    assert request.binary_set(["out", "other", "x"]) == ({"out", "other"} if binary else set())


def test_request_without_outputs_asks_for_binary_everything() -> None:
    body, headers = encode_infer_request({"x": SAMPLES["FP32"]}, outputs=None)
    request = decode_infer_request(body, _header_length(headers))
    assert request.outputs is None
    assert request.wants_binary("anything")
    body, headers = encode_infer_request({"x": SAMPLES["FP32"]}, outputs=None, binary=False)
    request = decode_infer_request(body, _header_length(headers))
    assert not request.wants_binary("anything")


@pytest.mark.parametrize("binary", [True, False])
def test_response_round_trip(binary: bool) -> None:
    outputs = {"logits": SAMPLES["FP32"], "flags": SAMPLES["BOOL"], "ids": SAMPLES["INT64"]}
    names = set(outputs) if binary else set()
    body, headers = encode_infer_response("m", "1", outputs, binary_outputs=names, request_id="x")
    decoded = decode_infer_response(body, _header_length(headers))
    for name, array in outputs.items():
        _assert_same(decoded[name], array)
    head = json.loads(body[: _header_length(headers) or len(body)])
    assert head["model_name"] == "m"
    assert head["model_version"] == "1"
    assert head["id"] == "x"


def test_mixed_binary_and_json_response() -> None:
    outputs = {"a": SAMPLES["FP32"], "b": SAMPLES["UINT8"], "c": SAMPLES["FP16"]}
    body, headers = encode_infer_response(
        "m", "1", outputs, binary_outputs={"a", "c"}, request_id=None
    )
    decoded = decode_infer_response(body, _header_length(headers))
    for name, array in outputs.items():
        _assert_same(decoded[name], array)


def test_json_nested_data_is_accepted_row_major() -> None:
    x = np.arange(12, dtype=np.float32).reshape(2, 2, 3)
    doc = {"inputs": [{"name": "x", "shape": [2, 2, 3], "datatype": "FP32", "data": x.tolist()}]}
    request = decode_infer_request(json.dumps(doc).encode(), None)
    _assert_same(request.inputs["x"], x)
    doc["inputs"][0]["data"] = x.reshape(-1).tolist()
    _assert_same(decode_infer_request(json.dumps(doc).encode(), None).inputs["x"], x)


def test_json_float32_values_survive_exactly() -> None:
    x = RNG.standard_normal(1000).astype(np.float32)
    body, headers = encode_infer_request({"x": x}, outputs=None, binary=False)
    assert HEADER_LENGTH not in headers
    _assert_same(decode_infer_request(body, None).inputs["x"], x)


def test_big_endian_input_is_sent_little_endian() -> None:
    x = np.arange(6, dtype=">f4").reshape(2, 3)
    body, headers = encode_infer_request({"x": x}, outputs=None)
    n = _header_length(headers)
    assert n is not None
    assert body[n:] == np.arange(6, dtype="<f4").tobytes()
    decoded = decode_infer_request(body, n).inputs["x"]
    np.testing.assert_array_equal(decoded, x)


def _doc(**entry: Any) -> bytes:
    base: dict[str, Any] = {"name": "x", "shape": [2, 2], "datatype": "FP32"}
    base.update(entry)
    return json.dumps({"inputs": [base]}).encode()


@pytest.mark.parametrize(
    ("body", "header_length", "fragment"),
    [
        (b"not json", None, "not valid JSON"),
        (b"[1, 2]", None, "must be an object"),
        (b"\xff\xfe", None, "not UTF-8"),
        (b"{}", None, "'inputs' must be a non-empty list"),
        (json.dumps({"inputs": []}).encode(), None, "'inputs' must be a non-empty list"),
        (_doc(data=[1, 2, 3]), None, "holds 3 values, but shape [2, 2] needs 4"),
        (_doc(data=[[1, 2], [3]]), None, "ragged"),
        (_doc(data=["a", "b", "c", "d"]), None, "must hold numbers"),
        (_doc(data=[1, 2, 3, 4], datatype="BYTES"), None, "unsupported datatype 'BYTES'"),
        (_doc(data=[1.5, 2, 3, 4], datatype="INT32"), None, "must hold integers"),
        (_doc(data=[1, 2, 3, 2**40], datatype="INT32"), None, "out of range"),
        (_doc(data=[1, 0, 1, 0], datatype="BOOL"), None, "true/false"),
        (_doc(shape=[2, -1], data=[1, 2]), None, "non-negative integers"),
        (_doc(shape="2x2", data=[1, 2]), None, "non-negative integers"),
        (_doc(), None, "neither 'data' nor parameters.binary_data_size"),
        (_doc(data=5), None, "'data' must be a JSON list"),
        (_doc(parameters={"binary_data_size": 16}), None, "ends 16 bytes early"),
        (_doc(parameters={"binary_data_size": 12}), None, "binary_data_size is 12 bytes"),
        (_doc(data=[1, 2, 3, 4]), 10_000, "Inference-Header-Content-Length is 10000"),
        (_doc(data=[1, 2, 3, 4]), 0, "Inference-Header-Content-Length is 0"),
    ],
)
def test_bad_requests_raise_protocol_error(
    body: bytes, header_length: int | None, fragment: str
) -> None:
    with pytest.raises(ProtocolError) as caught:
        decode_infer_request(body, header_length)
    assert fragment in caught.value.message


def test_trailing_bytes_and_duplicates_are_refused() -> None:
    body, headers = encode_infer_request({"x": SAMPLES["FP32"]}, outputs=None)
    with pytest.raises(ProtocolError, match="follow the JSON header"):
        decode_infer_request(body + b"\0\0\0\0", _header_length(headers))
    doc = {
        "inputs": [
            {"name": "x", "shape": [1], "datatype": "FP32", "data": [1]},
            {"name": "x", "shape": [1], "datatype": "FP32", "data": [2]},
        ]
    }
    with pytest.raises(ProtocolError, match="appears twice"):
        decode_infer_request(json.dumps(doc).encode(), None)


def test_header_length_parsing() -> None:
    assert parse_header_length(None) is None
    assert parse_header_length(" 12 ") == 12
    with pytest.raises(ProtocolError):
        parse_header_length("twelve")
    with pytest.raises(ProtocolError):
        parse_header_length("-3")


def test_error_response_raises_with_server_message() -> None:
    with pytest.raises(ProtocolError, match="model is sad"):
        decode_infer_response(b'{"error": "model is sad"}', None)


def test_datatype_of_refuses_strings() -> None:
    assert datatype_of(np.zeros(1, np.float32)) == "FP32"
    with pytest.raises(ProtocolError):
        datatype_of(np.array(["a"]))


# --- byte-level agreement with tritonclient ------------------------------------------


def _triton_inputs(arrays: dict[str, np.ndarray], binary: bool) -> list[Any]:
    inputs = []
    for name, array in arrays.items():
        item = tc_http.InferInput(name, list(array.shape), datatype_of(array))
        item.set_data_from_numpy(array, binary_data=binary)
        inputs.append(item)
    return inputs


@pytest.mark.parametrize("binary", [True, False])
def test_we_decode_tritonclient_requests(binary: bool) -> None:
    outputs = [
        tc_http.InferRequestedOutput("logits", binary_data=True),
        tc_http.InferRequestedOutput("other", binary_data=False),
    ]
    body, json_size = tc_http.InferenceServerClient.generate_request_body(
        _triton_inputs(SAMPLES, binary), outputs=outputs, request_id="abc"
    )
    assert (json_size is not None) is binary
    request = decode_infer_request(body, json_size)
    assert request.id == "abc"
    for name, array in SAMPLES.items():
        _assert_same(request.inputs[name], array)
    assert request.outputs == ["logits", "other"]
    assert request.binary_set(["logits", "other"]) == {"logits"}


def test_tritonclient_without_outputs_wants_binary() -> None:
    body, json_size = tc_http.InferenceServerClient.generate_request_body(
        _triton_inputs({"x": SAMPLES["FP32"]}, True)
    )
    request = decode_infer_request(body, json_size)
    assert request.outputs is None
    assert request.wants_binary("logits")


def test_our_binary_request_matches_tritonclient_bytes() -> None:
    arrays = {"x": SAMPLES["FP32"], "y": SAMPLES["INT64"]}
    body, headers = encode_infer_request(arrays, outputs=None, request_id="q")
    theirs, json_size = tc_http.InferenceServerClient.generate_request_body(
        _triton_inputs(arrays, True), request_id="q"
    )
    n = _header_length(headers)
    assert n is not None and json_size is not None
    # Same binary payload, byte for byte, and equivalent JSON headers.
    assert body[n:] == theirs[json_size:]
    assert json.loads(body[:n]) == json.loads(theirs[:json_size])


@pytest.mark.parametrize("binary", [True, False])
def test_tritonclient_parses_our_responses(binary: bool) -> None:
    outputs = {n: SAMPLES[n] for n in ("FP32", "FP16", "INT64", "INT32", "UINT8", "BOOL")}
    names = set(outputs) if binary else {"FP32"}
    body, headers = encode_infer_response("m", "1", outputs, binary_outputs=names, request_id="z")
    result = tc_http.InferenceServerClient.parse_response_body(
        body, header_length=_header_length(headers)
    )
    assert result.get_response()["id"] == "z"
    for name, array in outputs.items():
        _assert_same(result.as_numpy(name), array)
