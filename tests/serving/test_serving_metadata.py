"""The model metadata the server publishes is what the client reads back (no server run)."""

from __future__ import annotations

import json
from dataclasses import replace

import pytest

from radstream.errors import ModelFileInvalid
from radstream.kserve.metadata import parameter
from radstream.model import TXRV_LABELS, ModelInfo
from radstream.model.endpoint_metadata import info_from_endpoint_metadata
from radstream.serving.app import model_metadata
from support.fakes import fake_model_info

URL = "http://127.0.0.1:8000/v2/models/served"
INFO = fake_model_info(
    name="densenet121-standin",
    version="3",
    labels=("Alpha", "Beta", "Gamma"),
    input_size=64,
    input_min=-1.5,
    input_max=2.0,
    input_name="image",
    output_name="scores",
    sha256="ab" * 32,
    path="/models/standin.onnx",
)


def _over_the_wire(info: ModelInfo) -> object:
    return json.loads(json.dumps(model_metadata("served", info)))


def test_published_metadata_round_trips_to_the_same_model_info() -> None:
    read = info_from_endpoint_metadata(_over_the_wire(INFO), source=URL, model_name="served")
    assert read == replace(INFO, path=URL)


def test_published_metadata_wins_over_the_fallback() -> None:
    other = replace(INFO, labels=TXRV_LABELS, input_size=224, sha256="cd" * 32)
    read = info_from_endpoint_metadata(
        _over_the_wire(INFO), source=URL, model_name="served", fallback=other
    )
    assert read.labels == INFO.labels and read.sha256 == INFO.sha256


def test_a_stock_server_gets_the_fallback_contract() -> None:
    meta = model_metadata("served", INFO)
    meta["parameters"] = {}
    read = info_from_endpoint_metadata(meta, source=URL, model_name="served", fallback=INFO)
    assert read == replace(INFO, path=URL)


def test_metadata_that_contradicts_itself_is_refused() -> None:
    meta = model_metadata("served", INFO)
    meta["outputs"][0]["shape"] = [-1, 5]  # three labels are declared
    with pytest.raises(ModelFileInvalid, match=r"\[N, 3\] is expected"):
        info_from_endpoint_metadata(meta, source=URL, model_name="served")


def test_wrapped_parameters_are_unwrapped() -> None:
    params = {
        "radstream.labels": {"string_param": '["A"]'},
        "input_size": {"int64_param": 16},
        "other": {"a": 1, "b": 2},
    }
    assert parameter(params, "radstream.labels", "labels") == '["A"]'
    assert parameter(params, "radstream.input_size", "input_size") == 16
    assert parameter(params, "other") == {"a": 1, "b": 2}  # not a wrapper: kept as is
    assert parameter(params, "missing") is None
