"""The metadata endpoints of the KServe v2 protocol and the parameters RadStream publishes.

``GET /v2`` answers ``ServerMetadata``; ``GET /v2/models/{name}`` answers ``ModelMetadata``.
RadStream's server puts the model's input contract into the model metadata's
``parameters`` under the names below (``PARAM_*``), as strings; its client reads them
back, and also understands the ``radstream.``-prefixed names of the ONNX file and the
wrapped values (``{"string_param": ...}``) that KServe and Triton write.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TypedDict

PLATFORM_ONNX = "onnxruntime_onnx"
"""``platform`` of an ONNX model, as Triton names it."""

PARAM_LABELS = "labels"
"""JSON list of the output labels, in order."""
PARAM_INPUT_RANGE = "input_range"
"""``min,max`` of the pixel values the model expects."""
PARAM_INPUT_SIZE = "input_size"
PARAM_CHANNELS = "channels"
PARAM_MODEL_NAME = "model_name"
"""The model's own name (the served name may differ)."""
PARAM_MODEL_VERSION = "model_version"
PARAM_SHA256 = "sha256"
PARAM_OUTPUT_NAME = "output_name"
"""Which output holds the logits, when a model has several."""

# Wrappers KServe and Triton put around a parameter value ("string_param", "int64_param",
# "string_value", ...): one key ending like this around the value.
_WRAPPER_SUFFIXES = ("_param", "_value")


class TensorMetadata(TypedDict):
    """One input or output of ``ModelMetadata`` (``-1`` for a variable dimension)."""

    name: str
    datatype: str
    shape: list[int]


class ModelMetadata(TypedDict):
    """The answer to ``GET /v2/models/{name}``."""

    name: str
    versions: list[str]
    platform: str
    inputs: list[TensorMetadata]
    outputs: list[TensorMetadata]
    parameters: dict[str, str]


class ServerMetadata(TypedDict):
    """The answer to ``GET /v2``."""

    name: str
    version: str
    extensions: list[str]


def parameter(params: Mapping[str, object], *names: str) -> object:
    """The first of ``names`` present in ``params``, unwrapped; None if none is present.

    KServe and Triton write parameters either as plain JSON values or wrapped as
    ``{"string_param": ...}`` / ``{"string_value": ...}`` / ``{"int64_param": ...}``;
    the wrapper is removed.
    """
    for name in names:
        if name in params:
            value = params[name]
            if isinstance(value, dict) and len(value) == 1:
                ((wrapped_key, wrapped),) = value.items()
                if isinstance(wrapped_key, str) and wrapped_key.endswith(_WRAPPER_SUFFIXES):
                    return wrapped
            return value
    return None


__all__ = [
    "PARAM_CHANNELS",
    "PARAM_INPUT_RANGE",
    "PARAM_INPUT_SIZE",
    "PARAM_LABELS",
    "PARAM_MODEL_NAME",
    "PARAM_MODEL_VERSION",
    "PARAM_OUTPUT_NAME",
    "PARAM_SHA256",
    "PLATFORM_ONNX",
    "ModelMetadata",
    "ServerMetadata",
    "TensorMetadata",
    "parameter",
]
