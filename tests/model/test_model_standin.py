"""Tests for the stand-in DenseNet121 builder and OnnxModel on it (real ONNX Runtime)."""

from __future__ import annotations

import hashlib
import threading
from collections import Counter
from pathlib import Path

import numpy as np
import numpy.typing as npt
import onnx
import pytest

import radstream.model.builder as builder
from radstream.errors import ModelFileInvalid
from radstream.model import (
    TXRV_LABELS,
    ModelClient,
    ModelInfo,
    OnnxModel,
    build_standin_densenet121,
    ensure_standin,
    read_model_info,
    sigmoid,
    to_chexpert,
)

# torchvision's densenet121 has 7,978,856 parameters with 3 input channels and 1000
# classes; TorchXRayVision's has 1 input channel and 18 classes.
TXRV_DENSENET121_PARAMS = 7_978_856 - 64 * 2 * 49 - (1024 * 1000 + 1000) + (1024 * 18 + 18)


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, ModelInfo]:
    path = tmp_path_factory.mktemp("standin") / "densenet.onnx"
    return path, build_standin_densenet121(path, seed=0)


@pytest.fixture(scope="module")
def model(built: tuple[Path, ModelInfo]) -> OnnxModel:
    return OnnxModel.load(built[0], intra_op_threads=1)


@pytest.fixture(scope="module")
def graph(built: tuple[Path, ModelInfo]) -> onnx.GraphProto:
    return onnx.load(str(built[0])).graph


def film(seed: int) -> npt.NDArray[np.float32]:
    """A smooth synthetic 'film' scaled to [-1024, 1024], shape [1, 224, 224]."""
    rng = np.random.default_rng(seed)
    coarse = rng.standard_normal((15, 15))
    image = np.kron(coarse, np.ones((16, 16)))[:224, :224]
    image = image / np.abs(image).max()
    scaled: npt.NDArray[np.float32] = (image * 1024).astype(np.float32)[None]
    return scaled


def test_metadata_round_trips(built: tuple[Path, ModelInfo]) -> None:
    path, info = built
    assert info == read_model_info(path)
    assert info.name == "densenet121-standin"
    assert info.version == "1"
    assert info.labels == TXRV_LABELS
    assert (info.input_size, info.channels) == (224, 1)
    assert (info.input_min, info.input_max) == (-1024.0, 1024.0)
    assert (info.input_name, info.output_name) == ("input", "logits")
    assert info.sha256 == hashlib.sha256(path.read_bytes()).hexdigest()


def test_single_image_gives_modest_finite_logits(model: OnnxModel) -> None:
    assert isinstance(model, ModelClient)
    logits = model.predict_logits(film(1)[None])
    assert logits.shape == (1, 18)
    assert logits.dtype == np.float32
    assert np.all(np.isfinite(logits))
    # Untrained but not saturated: probabilities stay away from 0 and 1, and differ.
    assert np.abs(logits).max() < 8
    assert logits.std() > 0.3
    chexpert = to_chexpert(sigmoid(logits[0]))
    assert chexpert["Support Devices"] is None


def test_extreme_inputs_stay_finite(model: OnnxModel) -> None:
    rng = np.random.default_rng(5)
    batch = np.stack(
        [
            np.zeros((1, 224, 224), np.float32),
            np.full((1, 224, 224), -1024, np.float32),
            np.full((1, 224, 224), 1024, np.float32),
            rng.uniform(-1024, 1024, (1, 224, 224)).astype(np.float32),
        ]
    )
    logits = model.predict_logits(batch)
    assert np.all(np.isfinite(logits))
    assert np.abs(logits).max() < 15


def test_batch_equals_single_calls(model: OnnxModel) -> None:
    batch = np.stack([film(s) for s in (2, 3, 4)])
    together = model.predict_logits(batch)
    assert together.shape == (3, 18)
    one_by_one = np.concatenate([model.predict_logits(batch[i : i + 1]) for i in range(3)])
    np.testing.assert_allclose(together, one_by_one, atol=1e-5, rtol=0)
    assert not np.allclose(together[0], together[1])  # outputs depend on the image


@pytest.mark.parametrize(
    "shape",
    [(1, 1, 223, 224), (1, 3, 224, 224), (1, 224, 224), (0, 1, 224, 224), (1, 1, 224, 224, 1)],
)
def test_wrong_input_shape_is_value_error(model: OnnxModel, shape: tuple[int, ...]) -> None:
    with pytest.raises(ValueError, match=r"expects \[N, 1, 224, 224\]"):
        model.predict_logits(np.zeros(shape, np.float32))


def test_non_finite_input_is_value_error(model: OnnxModel) -> None:
    batch = np.zeros((1, 1, 224, 224), np.float32)
    batch[0, 0, 5, 5] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        model.predict_logits(batch)


def test_seed_determines_bytes(built: tuple[Path, ModelInfo], tmp_path: Path) -> None:
    path, info = built
    same = build_standin_densenet121(tmp_path / "same.onnx", seed=0)
    other = build_standin_densenet121(tmp_path / "other.onnx", seed=1)
    assert (tmp_path / "same.onnx").read_bytes() == path.read_bytes()
    assert same.sha256 == info.sha256
    assert other.sha256 != info.sha256


def test_txrv_layout(graph: onnx.GraphProto) -> None:
    ops = Counter(node.op_type for node in graph.node)
    assert ops["Conv"] == 120
    assert ops["Gemm"] == 1
    assert ops["BatchNormalization"] == 121
    assert ops["Concat"] == 6 + 12 + 24 + 16
    assert ops["AveragePool"] == 3
    assert ops["MaxPool"] == 1

    producer = {out: node for node in graph.node for out in node.output}
    gap = next(node for node in graph.node if node.op_type == "GlobalAveragePool")
    relu = producer[gap.input[0]]
    assert relu.op_type == "Relu"
    norm5 = producer[relu.input[0]]
    assert norm5.op_type == "BatchNormalization"
    assert norm5.input[1] == "features.norm5.weight"

    dims = graph.input[0].type.tensor_type.shape.dim
    assert dims[0].dim_param  # dynamic batch
    assert [d.dim_value for d in dims[1:]] == [1, 224, 224]

    shapes = {t.name: tuple(t.dims) for t in graph.initializer}
    assert shapes["features.conv0.weight"] == (64, 1, 7, 7)
    assert shapes["features.denseblock1.denselayer1.conv1.weight"] == (128, 64, 1, 1)
    assert shapes["features.denseblock1.denselayer1.conv2.weight"] == (32, 128, 3, 3)
    assert shapes["features.transition3.conv.weight"] == (512, 1024, 1, 1)
    assert shapes["features.norm5.weight"] == (1024,)
    assert shapes["classifier.weight"] == (18, 1024)
    params = sum(
        int(np.prod(dims))
        for name, dims in shapes.items()
        if not name.endswith(("running_mean", "running_var"))
    )
    assert params == TXRV_DENSENET121_PARAMS


def test_ensure_standin_builds_once(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    models = tmp_path / "models"
    path = ensure_standin(models)
    assert path == models / "densenet121-standin-v1.onnx"
    mtime = path.stat().st_mtime_ns

    def must_not_build(*args: object, **kwargs: object) -> ModelInfo:
        raise AssertionError("ensure_standin rebuilt a cached model")

    monkeypatch.setattr(builder, "build_standin_densenet121", must_not_build)
    assert ensure_standin(models) == path
    assert path.stat().st_mtime_ns == mtime


def test_ensure_standin_concurrent_callers(tmp_path: Path) -> None:
    results: list[Path] = []
    errors: list[BaseException] = []

    def call() -> None:
        try:
            results.append(ensure_standin(tmp_path))
        except BaseException as exc:  # collected, asserted below
            errors.append(exc)

    threads = [threading.Thread(target=call) for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors
    assert len(set(results)) == 1
    assert read_model_info(results[0]).name == "densenet121-standin"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["densenet121-standin-v1.onnx"]


def test_standin_without_metadata_is_invalid(built: tuple[Path, ModelInfo], tmp_path: Path) -> None:
    stripped = onnx.load(str(built[0]))
    del stripped.metadata_props[:]
    path = tmp_path / "stripped.onnx"
    path.write_bytes(stripped.SerializeToString())
    with pytest.raises(ModelFileInvalid, match=r"radstream\.name"):
        OnnxModel.load(path)
