"""Models: labels, metadata, the stand-in DenseNet121 builder and ONNX Runtime inference."""

from radstream.model.builder import build_standin_densenet121, ensure_standin
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
