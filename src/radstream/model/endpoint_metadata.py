"""ModelInfo from a KServe v2 endpoint's model metadata (``GET /v2/models/{name}``).

RadStream's own server publishes the model's ``radstream.*`` metadata there as
``parameters`` (see ``radstream.kserve.metadata``); a server that does not (a stock Triton)
gets it from ``fallback`` (typically read from the same ONNX file the server loads), or
else TorchXRayVision defaults: ``TXRV_LABELS``, 224 x 224, one channel, [-1024, 1024].
Whatever the source, the result goes through the same checks as a model file's metadata.
"""

from __future__ import annotations

import json
from collections.abc import Mapping

from radstream.errors import ModelFileInvalid
from radstream.kserve.metadata import (
    PARAM_CHANNELS,
    PARAM_INPUT_RANGE,
    PARAM_INPUT_SIZE,
    PARAM_LABELS,
    PARAM_MODEL_NAME,
    PARAM_MODEL_VERSION,
    PARAM_OUTPUT_NAME,
    PARAM_SHA256,
    parameter,
)
from radstream.model.labels import TXRV_LABELS
from radstream.model.metadata import (
    KEY_CHANNELS,
    KEY_INPUT_RANGE,
    KEY_INPUT_SIZE,
    KEY_LABELS,
    KEY_NAME,
    KEY_VERSION,
    PREFIX,
    DeclaredModel,
    ModelInfo,
    format_range,
    parse_metadata,
)

DEFAULT_INPUT_SIZE = 224
DEFAULT_INPUT_MIN = -1024.0
DEFAULT_INPUT_MAX = 1024.0
DEFAULT_CHANNELS = 1

# Each RadStream field and the parameter names it may be published under: the file's
# ``radstream.`` key, the bare key, and the name RadStream's server writes.
_NAMES: dict[str, tuple[str, ...]] = {
    "labels": (PREFIX + "labels", PARAM_LABELS),
    "input_range": (PREFIX + "input_range", PARAM_INPUT_RANGE),
    "input_size": (PREFIX + "input_size", PARAM_INPUT_SIZE),
    "channels": (PREFIX + "channels", PARAM_CHANNELS),
    "name": (PREFIX + "name", "name", PARAM_MODEL_NAME),
    "version": (PREFIX + "version", "version", PARAM_MODEL_VERSION),
    "sha256": (PREFIX + "sha256", PARAM_SHA256),
    "output_name": (PREFIX + "output_name", PARAM_OUTPUT_NAME),
}


def _text(params: Mapping[str, object], field: str) -> str | None:
    """A published field as the text the ONNX metadata would hold; None if absent."""
    value = parameter(params, *_NAMES[field])
    if value is None:
        return None
    if isinstance(value, str):
        return value
    if isinstance(value, list | tuple):
        if len(value) == 2 and all(isinstance(v, int | float) for v in value):
            return format_range(value[0], value[1])  # an input range
        return json.dumps(list(value))
    return str(value)


def _declared(
    params: Mapping[str, object],
    meta: Mapping[str, object],
    in_dims: list[object],
    *,
    source: str,
    fallback: ModelInfo | None,
    model_name: str,
    model_version: str | None,
) -> tuple[DeclaredModel, str]:
    """The declared contract (published, else fallback, else defaults) and the sha256."""
    published = any(_text(params, key) is not None for key in ("labels", "input_range"))
    # Each field: the server's RadStream parameters, else the fallback, else defaults.
    source_info = None if published else fallback

    def static(index: int) -> int | None:
        dim = in_dims[index] if len(in_dims) == 4 else None
        return dim if isinstance(dim, int) and dim > 0 else None

    labels = _text(params, "labels") or json.dumps(
        list(source_info.labels if source_info else TXRV_LABELS)
    )
    input_range = _text(params, "input_range") or (
        format_range(source_info.input_min, source_info.input_max)
        if source_info
        else format_range(DEFAULT_INPUT_MIN, DEFAULT_INPUT_MAX)
    )
    size = _text(params, "input_size") or str(
        source_info.input_size if source_info else static(2) or DEFAULT_INPUT_SIZE
    )
    channels = _text(params, "channels") or str(
        source_info.channels if source_info else static(1) or DEFAULT_CHANNELS
    )
    versions = meta.get("versions")
    server_version = (
        model_version
        or (str(versions[-1]) if isinstance(versions, list) and versions else None)
        or "1"
    )
    name = _text(params, "name") or (
        source_info.name if source_info else str(meta.get("name") or model_name)
    )
    version = _text(params, "version") or (source_info.version if source_info else server_version)
    sha256 = _text(params, "sha256") or (source_info.sha256 if source_info else "")
    props = {
        KEY_NAME: name,
        KEY_VERSION: version,
        KEY_LABELS: labels,
        KEY_INPUT_SIZE: size,
        KEY_INPUT_RANGE: input_range,
        KEY_CHANNELS: channels,
    }
    return parse_metadata(props, source=source), sha256


def info_from_endpoint_metadata(
    meta: object,
    *,
    source: str,
    model_name: str,
    model_version: str | None = None,
    fallback: ModelInfo | None = None,
) -> ModelInfo:
    """Check a parsed model metadata answer and turn it into the model's ModelInfo.

    ``source`` (the endpoint URL) names the model in messages and becomes ``info.path``;
    ``model_name`` and ``model_version`` are what the client asked for, used when the
    server does not say. Raises ModelFileInvalid when the metadata is malformed or
    contradicts itself (an input shape that is not the declared one, say).
    """

    def invalid(problem: str) -> ModelFileInvalid:
        return ModelFileInvalid(f"model endpoint {source}: {problem}", path=source, endpoint=source)

    if not isinstance(meta, dict):
        raise invalid("the model metadata is not a JSON object")
    inputs, outputs = meta.get("inputs"), meta.get("outputs")
    if not isinstance(inputs, list) or not isinstance(outputs, list) or not outputs:
        raise invalid("the model metadata lacks its 'inputs' and 'outputs' lists")
    if len(inputs) != 1 or not isinstance(inputs[0], dict):
        raise invalid(f"expected exactly one input (the image batch), found {len(inputs)}")
    raw_params = meta.get("parameters")
    params: Mapping[str, object] = raw_params if isinstance(raw_params, dict) else {}

    graph_input = inputs[0]
    in_shape = graph_input.get("shape")
    in_dims: list[object] = in_shape if isinstance(in_shape, list) else []
    declared, sha256 = _declared(
        params,
        meta,
        in_dims,
        source=source,
        fallback=fallback,
        model_name=model_name,
        model_version=model_version,
    )

    input_name = graph_input.get("name")
    if not isinstance(input_name, str) or not input_name:
        raise invalid("the input has no name")
    if graph_input.get("datatype") != "FP32":
        raise invalid(
            f"input {input_name!r} has datatype {graph_input.get('datatype')!r}; "
            "RadStream sends FP32"
        )
    expected_in = [declared.channels, declared.input_size, declared.input_size]
    if len(in_dims) != 4 or any(
        isinstance(d, int) and d >= 0 and d != e
        for d, e in zip(in_dims[1:], expected_in, strict=True)
    ):
        raise invalid(
            f"input {input_name!r} has shape {in_shape}, but the model is declared as "
            f"[N, {expected_in[0]}, {expected_in[1]}, {expected_in[2]}]"
        )

    names = [o.get("name") for o in outputs if isinstance(o, dict)]
    preferred = _text(params, "output_name") or (fallback.output_name if fallback else None)
    output_name = preferred if preferred in names else names[0] if names else None
    if not isinstance(output_name, str) or not output_name:
        raise invalid("the first output has no name")
    output = next(o for o in outputs if isinstance(o, dict) and o.get("name") == output_name)
    out_shape = output.get("shape")
    n_labels = len(declared.labels)
    if (
        not isinstance(out_shape, list)
        or len(out_shape) != 2
        or (isinstance(out_shape[1], int) and out_shape[1] >= 0 and out_shape[1] != n_labels)
    ):
        raise invalid(
            f"output {output_name!r} has shape {out_shape}, but {n_labels} labels are "
            f"declared, so [N, {n_labels}] is expected"
        )
    return declared.info(input_name=input_name, output_name=output_name, sha256=sha256, path=source)


__all__ = [
    "DEFAULT_CHANNELS",
    "DEFAULT_INPUT_MAX",
    "DEFAULT_INPUT_MIN",
    "DEFAULT_INPUT_SIZE",
    "info_from_endpoint_metadata",
]
