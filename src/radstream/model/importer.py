"""Register an existing ONNX classifier with RadStream: check it, label it, copy it in.

``import_model`` is what ``radstream model import`` runs. It refuses a model whose graph
cannot work with the declared preprocessing and labels, so that a mismatch is found once,
at import, rather than on every study.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort

from radstream.errors import ModelFileInvalid
from radstream.model.files import write_atomically
from radstream.model.labels import TXRV_LABELS
from radstream.model.metadata import info_from_model, write_metadata

TXRV_LABELS_ALIAS = "txrv18"
"""``labels`` value meaning TorchXRayVision's 18 outputs (``TXRV_LABELS``)."""

CHANNELS = 1
_SAFE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}")


def resolve_labels(labels: str | Sequence[str]) -> tuple[str, ...]:
    """Turn the ``labels`` argument of ``import_model`` into a label tuple.

    ``"txrv18"`` means ``TXRV_LABELS``; a string with a comma is a comma-separated list;
    any other string names a text file with one label per line (blank lines and lines
    starting with ``#`` are skipped). A sequence is taken as the labels themselves.
    Raises ModelFileInvalid for a label file that cannot be read and ValueError for an
    empty or repeating list.
    """
    if isinstance(labels, str):
        text = labels.strip()
        if text == TXRV_LABELS_ALIAS:
            return TXRV_LABELS
        if "," in text:
            parsed = [part.strip() for part in text.split(",")]
            result = tuple(part for part in parsed if part)
        else:
            path = Path(text).expanduser()
            try:
                content = path.read_text(encoding="utf-8-sig")
            except FileNotFoundError:
                raise ModelFileInvalid(
                    f"label file {path} does not exist; pass {TXRV_LABELS_ALIAS!r}, a "
                    "comma-separated list, or a file with one label per line",
                    path=str(path),
                ) from None
            except (OSError, UnicodeDecodeError) as exc:
                raise ModelFileInvalid(
                    f"label file {path} cannot be read as UTF-8 text ({exc})", path=str(path)
                ) from exc
            lines = (line.strip() for line in content.splitlines())
            result = tuple(line for line in lines if line and not line.startswith("#"))
    else:
        result = tuple(str(label).strip() for label in labels)
    if not result or not all(result):
        raise ValueError(f"labels must be a non-empty list of non-empty names, got {labels!r}")
    repeated = sorted({label for label in result if result.count(label) > 1})
    if repeated:
        raise ValueError(f"labels must be unique; repeated: {', '.join(repeated)}")
    return result


def _dims(value_info: onnx.ValueInfoProto) -> list[int | str | None]:
    """Static sizes as ints, symbolic ones by name (or None when unnamed)."""
    dims: list[int | str | None] = []
    for d in value_info.type.tensor_type.shape.dim:
        if d.HasField("dim_value"):
            dims.append(d.dim_value)
        elif d.HasField("dim_param"):
            dims.append(d.dim_param)
        else:
            dims.append(None)
    return dims


def _show(dims: Sequence[int | str | None]) -> str:
    return "[" + ", ".join("?" if d is None else str(d) for d in dims) + "]"


def _check_graph(model: onnx.ModelProto, source: str, *, n_labels: int, size: int) -> None:
    """Input must be float ``[N, 1, size, size]``; output ``[N, n_labels]``."""
    initializers = {init.name for init in model.graph.initializer}
    inputs = [i for i in model.graph.input if i.name not in initializers]
    if len(inputs) != 1:
        raise ModelFileInvalid(
            f"model file {source}: expected exactly one graph input (the image batch), found "
            f"{len(inputs)}: {[i.name for i in inputs]}",
            path=source,
        )
    graph_input = inputs[0]
    elem = graph_input.type.tensor_type.elem_type
    if elem != onnx.TensorProto.FLOAT:
        raise ModelFileInvalid(
            f"model file {source}: input {graph_input.name!r} has element type "
            f"{onnx.TensorProto.DataType.Name(elem)}, RadStream sends float32 (FLOAT)",
            path=source,
        )
    dims_in = _dims(graph_input)
    expected_in = [CHANNELS, size, size]
    if len(dims_in) != 4 or any(
        isinstance(d, int) and d != e for d, e in zip(dims_in[1:], expected_in, strict=True)
    ):
        raise ModelFileInvalid(
            f"model file {source}: input {graph_input.name!r} has shape {_show(dims_in)}, "
            f"expected [N, {CHANNELS}, {size}, {size}] (one grey channel, {size}x{size}; "
            "pass --size if the model takes another size)",
            path=source,
        )
    if not model.graph.output:
        raise ModelFileInvalid(f"model file {source}: the graph has no output", path=source)
    graph_output = model.graph.output[0]
    dims_out = _dims(graph_output)
    if len(dims_out) != 2 or (isinstance(dims_out[1], int) and dims_out[1] != n_labels):
        raise ModelFileInvalid(
            f"model file {source}: output {graph_output.name!r} has shape {_show(dims_out)}, "
            f"expected [N, {n_labels}] for the {n_labels} labels given",
            path=source,
        )


def _smoke_run(data: bytes, source: str, *, n_labels: int, size: int) -> None:
    """Run one blank image through ONNX Runtime; checks what static shapes could not."""
    options = ort.SessionOptions()
    options.log_severity_level = 3
    try:
        session = ort.InferenceSession(
            data, sess_options=options, providers=["CPUExecutionProvider"]
        )
        name = session.get_inputs()[0].name
        outputs = session.run(None, {name: np.zeros((1, CHANNELS, size, size), np.float32)})
    except Exception as exc:
        raise ModelFileInvalid(
            f"model file {source}: ONNX Runtime {ort.__version__} cannot run it on a "
            f"[1, {CHANNELS}, {size}, {size}] float32 batch ({type(exc).__name__}: {exc})",
            path=source,
        ) from exc
    shape = list(np.asarray(outputs[0]).shape)
    if shape != [1, n_labels]:
        raise ModelFileInvalid(
            f"model file {source}: for a batch of 1 the output has shape {shape}, expected "
            f"[1, {n_labels}] for the {n_labels} labels given",
            path=source,
        )


def import_model(
    src: Path,
    models_dir: Path,
    *,
    labels: str | Sequence[str] = TXRV_LABELS_ALIAS,
    input_range: tuple[float, float] = (-1024, 1024),
    size: int = 224,
    name: str | None = None,
    version: str = "1",
) -> Path:
    """Copy the ONNX model ``src`` into ``models_dir`` with RadStream metadata; return its path.

    ``labels`` names the model's outputs in order (see ``resolve_labels``), ``input_range``
    the pixel range the model expects, ``size`` its square input side. The model must take
    one float32 input ``[N, 1, size, size]`` (N symbolic or fixed) and its first output
    must be ``[N, len(labels)]``; one blank image is run through ONNX Runtime to confirm.
    The result is ``models_dir / "{name}-v{version}.onnx"`` (``name`` defaults to the file
    stem), a single file (external weights are folded in), written atomically.

    Raises ModelFileInvalid when ``src`` is missing, not ONNX, or does not fit the labels
    and size; ValueError for unusable arguments (empty labels, bad range or name).
    """
    source = str(src)
    if isinstance(size, bool) or not isinstance(size, int) or size < 1:
        raise ValueError(f"size must be a positive integer, got {size!r}")
    low, high = (float(v) for v in input_range)
    if not (np.isfinite(low) and np.isfinite(high) and low < high):
        raise ValueError(
            f"input_range must be (min, max) with finite min < max, got {input_range!r}"
        )
    model_name = name if name is not None else Path(src).stem
    if not _SAFE_NAME.fullmatch(model_name):
        raise ValueError(
            f"model name {model_name!r} must be 1-128 of A-Z a-z 0-9 . _ - (it names the file); "
            "pass name=..."
        )
    if not _SAFE_NAME.fullmatch(version):
        raise ValueError(f"version {version!r} must be 1-128 of A-Z a-z 0-9 . _ -")
    label_tuple = resolve_labels(labels)

    if not Path(src).is_file():
        raise ModelFileInvalid(f"model file {source} does not exist", path=source)
    try:
        model = onnx.load(source)
    except Exception as exc:  # protobuf DecodeError and friends
        raise ModelFileInvalid(
            f"model file {source} is not a valid ONNX model ({type(exc).__name__}: {exc})",
            path=source,
        ) from exc
    _check_graph(model, source, n_labels=len(label_tuple), size=size)

    write_metadata(
        model,
        name=model_name,
        version=version,
        labels=label_tuple,
        input_size=size,
        input_min=low,
        input_max=high,
        channels=CHANNELS,
    )
    # Weights loaded from external files are stored inline from here on.
    for tensor in model.graph.initializer:
        if tensor.data_location == onnx.TensorProto.EXTERNAL:
            tensor.data_location = onnx.TensorProto.DEFAULT
            del tensor.external_data[:]
    try:
        data = model.SerializeToString(deterministic=True)
    except ValueError as exc:  # over protobuf's 2 GiB limit
        raise ModelFileInvalid(
            f"model file {source} is too large for a single-file ONNX model ({exc})", path=source
        ) from exc
    dest = Path(models_dir) / f"{model_name}-v{version}.onnx"
    # The same checks the pipeline makes when it loads the file, before anything is written.
    info_from_model(model, sha256=hashlib.sha256(data).hexdigest(), path=str(dest))
    _smoke_run(data, source, n_labels=len(label_tuple), size=size)
    write_atomically(dest, data)
    return dest


__all__ = ["TXRV_LABELS_ALIAS", "import_model", "resolve_labels"]
