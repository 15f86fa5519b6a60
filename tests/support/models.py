"""Tiny ONNX classifiers, small enough to build per test, for the model and serving tests.

Both shapes the model tests use: :func:`conv_classifier` (Conv 3x3 -> GlobalAveragePool ->
Flatten -> Gemm, like the stand-in DenseNet in miniature) and :func:`pool_classifier` (no
convolution; every weight chosen, so its outputs can be worked out by hand). Neither has
RadStream metadata until :func:`tagged` writes it.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from radstream.model.metadata import write_metadata

OPSET = 17
IR_VERSION = 8  # what the pinned onnxruntime reads; newer onnx writes a newer IR by default


def _model(graph: onnx.GraphProto) -> onnx.ModelProto:
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)])
    model.ir_version = IR_VERSION
    return model


def conv_classifier(
    *,
    size: int = 32,
    classes: int = 18,
    channels: int = 1,
    features: int = 8,
    seed: int = 1,
    bias: Sequence[float] | None = None,
    output_dims: Sequence[str | int] | None = None,
    input_name: str = "x",
    output_name: str = "out",
) -> onnx.ModelProto:
    """Conv 3x3 (channels -> features) -> GlobalAveragePool -> Flatten -> Gemm (-> classes).

    Weights are drawn from ``seed`` (conv first, then Gemm), so a model is the same every
    time it is built with the same arguments. ``bias`` defaults to zeros.
    """
    rng = np.random.default_rng(seed)
    conv_w = (rng.standard_normal((features, channels, 3, 3)) / 1024).astype(np.float32)
    gemm_w = rng.standard_normal((classes, features)).astype(np.float32)
    gemm_b = np.asarray(bias if bias is not None else np.zeros(classes), np.float32)
    nodes = [
        helper.make_node("Conv", [input_name, "cw"], ["c"], kernel_shape=[3, 3], pads=[1, 1, 1, 1]),
        helper.make_node("GlobalAveragePool", ["c"], ["p"]),
        helper.make_node("Flatten", ["p"], ["f"], axis=1),
        helper.make_node("Gemm", ["f", "gw", "gb"], [output_name], transB=1),
    ]
    graph = helper.make_graph(
        nodes,
        "conv_classifier",
        [helper.make_tensor_value_info(input_name, TensorProto.FLOAT, ["N", channels, size, size])],
        [
            helper.make_tensor_value_info(
                output_name, TensorProto.FLOAT, list(output_dims or ["N", classes])
            )
        ],
        initializer=[
            numpy_helper.from_array(conv_w, "cw"),
            numpy_helper.from_array(gemm_w, "gw"),
            numpy_helper.from_array(gemm_b, "gb"),
        ],
    )
    return _model(graph)


def pool_classifier(
    *,
    size: int = 8,
    classes: int = 3,
    output_dims: Sequence[str | int] | None = None,
    weight_value: float | None = None,
    op: str = "GlobalAveragePool",
) -> onnx.ModelProto:
    """[N, 1, size, size] -> ``op`` -> Flatten -> Gemm -> [N, classes], bias zero.

    The Gemm weights are 0.0, 0.1, 0.2, … (or all ``weight_value``), so class ``i`` scores
    ``i / 10`` times the pooled pixel.
    """
    weight = (np.arange(classes).reshape(classes, 1) / 10).astype(np.float32)
    if weight_value is not None:
        weight[:] = weight_value
    nodes = [
        helper.make_node(op, ["x"], ["pooled"]),
        helper.make_node("Flatten", ["pooled"], ["flat"], axis=1),
        helper.make_node("Gemm", ["flat", "w", "b"], ["y"], transB=1),
    ]
    graph = helper.make_graph(
        nodes,
        "tiny",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 1, size, size])],
        [
            helper.make_tensor_value_info(
                "y", TensorProto.FLOAT, list(output_dims or ["N", classes])
            )
        ],
        initializer=[
            numpy_helper.from_array(weight, "w"),
            numpy_helper.from_array(np.zeros(classes, np.float32), "b"),
        ],
    )
    return _model(graph)


def tagged(
    model: onnx.ModelProto,
    *,
    labels: Sequence[str],
    input_size: int,
    name: str = "tiny",
    version: str = "1",
    input_min: float = -1024,
    input_max: float = 1024,
    channels: int = 1,
) -> onnx.ModelProto:
    """``model`` with RadStream's metadata written into it (in place; also returned)."""
    write_metadata(
        model,
        name=name,
        version=version,
        labels=tuple(labels),
        input_size=input_size,
        input_min=input_min,
        input_max=input_max,
        channels=channels,
    )
    return model


def save(model: onnx.ModelProto, path: Path) -> Path:
    """Write ``model`` to ``path``; returns the path."""
    onnx.save(model, str(path))
    return path
