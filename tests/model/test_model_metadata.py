"""Tests for radstream.model.metadata and OnnxModel error paths, on tiny ONNX models."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import onnx
import pytest

from radstream.errors import ModelFileInvalid, ModelOutputInvalid
from radstream.model import ModelClient, OnnxModel, read_model_info
from radstream.model.metadata import KEY_TRAINED, REQUIRED_KEYS, STANDIN_NAME, write_metadata
from support.models import pool_classifier, save, tagged

LABELS = ("Alpha", "Beta", "Gamma")
SIZE = 8


def tag(model: onnx.ModelProto, labels: tuple[str, ...] = LABELS) -> onnx.ModelProto:
    """``model`` tagged as "tiny" version 3, with an input range whose top is not whole."""
    return tagged(model, labels=labels, input_size=SIZE, version="3", input_max=1024.5)


def test_round_trip(tmp_path: Path) -> None:
    model = pool_classifier(size=SIZE)
    model.metadata_props.add(key="other.tool", value="kept")
    path = save(tag(model), tmp_path / "tiny.onnx")
    info = read_model_info(path)
    assert info.name == "tiny"
    assert info.version == "3"
    assert info.labels == LABELS
    assert info.input_size == SIZE
    assert (info.input_min, info.input_max) == (-1024.0, 1024.5)
    assert info.channels == 1
    assert (info.input_name, info.output_name) == ("x", "y")
    assert info.sha256 == hashlib.sha256(path.read_bytes()).hexdigest()
    assert info.path == str(path)
    props = {p.key: p.value for p in onnx.load(str(path)).metadata_props}
    assert props["radstream.input_range"] == "-1024,1024.5"
    assert props["radstream.labels"] == '["Alpha", "Beta", "Gamma"]'
    assert props["other.tool"] == "kept"


def test_rewriting_metadata_replaces_keys() -> None:
    model = tag(tag(pool_classifier(size=SIZE)), labels=("A", "B", "C"))
    keys = [p.key for p in model.metadata_props]
    assert len(keys) == len(set(keys)) == len(REQUIRED_KEYS)


@pytest.mark.parametrize("key", REQUIRED_KEYS)
def test_missing_key_is_named(tmp_path: Path, key: str) -> None:
    model = tag(pool_classifier(size=SIZE))
    kept = [(p.key, p.value) for p in model.metadata_props if p.key != key]
    del model.metadata_props[:]
    for k, v in kept:
        model.metadata_props.add(key=k, value=v)
    path = save(model, tmp_path / "m.onnx")
    with pytest.raises(ModelFileInvalid, match=key.replace(".", r"\.")) as caught:
        read_model_info(path)
    assert caught.value.code == "MODEL_FILE_INVALID"


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("radstream.labels", "Alpha,Beta,Gamma"),
        ("radstream.labels", "[]"),
        ("radstream.labels", '["A", "A", "B"]'),
        ("radstream.input_size", "big"),
        ("radstream.input_size", "-3"),
        ("radstream.channels", "0"),
        ("radstream.input_range", "1024,-1024"),
        ("radstream.input_range", "-1024"),
        ("radstream.input_range", "nan,1"),
        ("radstream.name", "  "),
    ],
)
def test_malformed_key_is_named(tmp_path: Path, key: str, value: str) -> None:
    model = tag(pool_classifier(size=SIZE))
    for prop in model.metadata_props:
        if prop.key == key:
            prop.value = value
    path = save(model, tmp_path / "m.onnx")
    with pytest.raises(ModelFileInvalid, match=key.replace(".", r"\.")):
        read_model_info(path)


def test_write_metadata_refuses_bad_values() -> None:
    with pytest.raises(ValueError, match="input_range"):
        write_metadata(
            pool_classifier(size=SIZE),
            name="t",
            version="1",
            labels=LABELS,
            input_size=8,
            input_min=1,
            input_max=0,
            channels=1,
        )


def test_metadata_contradicting_graph(tmp_path: Path) -> None:
    path = save(
        tag(pool_classifier(size=SIZE, classes=4, output_dims=("N", 4))), tmp_path / "m.onnx"
    )
    with pytest.raises(ModelFileInvalid, match="3 labels"):
        read_model_info(path)


@pytest.mark.parametrize("content", [None, b"", b"this is not onnx at all \xff\x00"])
def test_unusable_files(tmp_path: Path, content: bytes | None) -> None:
    path = tmp_path / "model.onnx"
    if content is not None:
        path.write_bytes(content)
    with pytest.raises(ModelFileInvalid, match=r"model\.onnx"):
        read_model_info(path)
    with pytest.raises(ModelFileInvalid):
        OnnxModel.load(path)


def test_runtime_rejects_graph_it_cannot_run(tmp_path: Path) -> None:
    path = save(tag(pool_classifier(size=SIZE, op="NoSuchOperator")), tmp_path / "m.onnx")
    read_model_info(path)  # the metadata itself is fine
    with pytest.raises(ModelFileInvalid, match="cannot load"):
        OnnxModel.load(path)


def test_tiny_model_runs_and_satisfies_protocol(tmp_path: Path) -> None:
    model = OnnxModel.load(save(tag(pool_classifier(size=SIZE)), tmp_path / "m.onnx"))
    assert isinstance(model, ModelClient)
    batch = np.full((2, 1, SIZE, SIZE), 10.0, dtype=np.float64)  # float64 is cast
    logits = model.predict_logits(batch)  # type: ignore[arg-type]
    assert logits.dtype == np.float32
    np.testing.assert_allclose(logits, [[0.0, 1.0, 2.0]] * 2, atol=1e-6)


def test_non_finite_output_is_model_output_invalid(tmp_path: Path) -> None:
    model = OnnxModel.load(
        save(tag(pool_classifier(size=SIZE, weight_value=np.inf)), tmp_path / "m.onnx")
    )
    with pytest.raises(ModelOutputInvalid, match="non-finite"):
        model.predict_logits(np.ones((1, 1, SIZE, SIZE), np.float32))


def test_wrong_output_width_is_model_output_invalid(tmp_path: Path) -> None:
    # A symbolic output width passes the load-time check; the real width is caught per call.
    path = save(
        tag(pool_classifier(size=SIZE, classes=4, output_dims=("N", "M"))), tmp_path / "m.onnx"
    )
    model = OnnxModel.load(path)
    with pytest.raises(ModelOutputInvalid, match=r"expected \[1, 3\]"):
        model.predict_logits(np.ones((1, 1, SIZE, SIZE), np.float32))


def test_thread_count_is_validated(tmp_path: Path) -> None:
    path = save(tag(pool_classifier(size=SIZE)), tmp_path / "m.onnx")
    with pytest.raises(ValueError, match="intra_op_threads"):
        OnnxModel.load(path, intra_op_threads=-1)


def test_untrained_flag_round_trips_and_defaults_to_trained(tmp_path: Path) -> None:
    trained = read_model_info(save(tag(pool_classifier(size=SIZE)), tmp_path / "t.onnx"))
    assert (trained.trained, trained.untrained) == (True, False)
    model = tag(pool_classifier(size=SIZE))
    write_metadata(
        model,
        name="tiny",
        version="3",
        labels=LABELS,
        input_size=SIZE,
        input_min=-1024.0,
        input_max=1024.5,
        channels=1,
        trained=False,
    )
    props = {p.key: p.value for p in model.metadata_props}
    assert props[KEY_TRAINED] == "false"
    assert read_model_info(save(model, tmp_path / "u.onnx")).trained is False
    for prop in model.metadata_props:
        if prop.key == KEY_TRAINED:
            prop.value = "maybe"
    with pytest.raises(ModelFileInvalid, match=r"radstream\.trained"):
        read_model_info(save(model, tmp_path / "bad.onnx"))


def test_the_standin_name_alone_marks_a_model_untrained(tmp_path: Path) -> None:
    # A stand-in written before the flag existed, or described by an endpoint.
    model = pool_classifier(size=SIZE)
    write_metadata(
        model,
        name=STANDIN_NAME,
        version="1",
        labels=LABELS,
        input_size=SIZE,
        input_min=-1024.0,
        input_max=1024.0,
        channels=1,
    )
    info = read_model_info(save(model, tmp_path / "s.onnx"))
    assert (info.trained, info.untrained) == (True, True)
