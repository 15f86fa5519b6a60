"""Models: labels, metadata, the stand-in DenseNet121 builder and ONNX Runtime inference.

Importing this package loads neither ONNX nor ONNX Runtime: a pipeline that calls a
remote endpoint (``radstream.model.kserve_client``) never needs them. ``OnnxModel.load``
imports ONNX Runtime, ``read_model_info`` imports ONNX when it reads a file, and the
stand-in builder (which needs ONNX at the top) is imported on first use of its names.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

from radstream.model.client import ModelClient
from radstream.model.labels import (
    CHEXPERT_LABELS,
    NO_FINDING_RULE,
    TXRV_LABELS,
    sigmoid,
    to_chexpert,
)
from radstream.model.metadata import ModelInfo, read_model_info
from radstream.model.runtime import OnnxModel

if TYPE_CHECKING:
    from radstream.model.builder import build_standin_densenet121, ensure_standin

# Names whose module imports ONNX at the top: loaded on first access.
_LAZY = {
    "build_standin_densenet121": "radstream.model.builder",
    "ensure_standin": "radstream.model.builder",
}


def __getattr__(name: str) -> object:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value: object = getattr(importlib.import_module(module), name)
    globals()[name] = value  # later lookups skip __getattr__
    return value


__all__ = [
    "CHEXPERT_LABELS",
    "NO_FINDING_RULE",
    "TXRV_LABELS",
    "ModelClient",
    "ModelInfo",
    "OnnxModel",
    "build_standin_densenet121",
    "ensure_standin",
    "read_model_info",
    "sigmoid",
    "to_chexpert",
]
