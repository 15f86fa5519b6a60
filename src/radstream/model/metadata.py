"""What RadStream needs to know about a model, stored inside the ONNX file itself.

Keeping labels, input size and input range in the file's ``metadata_props`` means a model
file cannot be paired with the wrong label list or preprocessing: the file is the single
source of truth, and its SHA-256 identifies exactly which weights produced a result.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from radstream.errors import ModelFileInvalid

if TYPE_CHECKING:
    # Only for annotations: onnx is imported where a file is actually read, so importing
    # radstream.model (or the KServe client, which needs ModelInfo) does not load it.
    import onnx

PREFIX = "radstream."
KEY_NAME = PREFIX + "name"
KEY_VERSION = PREFIX + "version"
KEY_LABELS = PREFIX + "labels"
KEY_INPUT_SIZE = PREFIX + "input_size"
KEY_INPUT_RANGE = PREFIX + "input_range"
KEY_CHANNELS = PREFIX + "channels"
KEY_TRAINED = PREFIX + "trained"
"""Optional: ``"false"`` marks weights that were never trained (the stand-in). Absent means
trained, so every model imported from elsewhere reads as trained."""
UNTRAINED_NOTE = "untrained stand-in model: these probabilities mean nothing"
"""The one line every command prints next to probabilities an untrained model produced."""
STANDIN_NAME = "densenet121-standin"
"""The name the untrained stand-in carries. A model reached through an endpoint that does
not publish ``radstream.trained`` is recognised as the stand-in by this name."""
KEY_PRECISION = PREFIX + "precision"
"""Optional: ``fp32`` (absent), ``bf16`` or ``int8``, what ``radstream model optimize`` made."""
KEY_RUNTIME = PREFIX + "runtime"
"""Optional: the runtime a reduced-precision file was made and checked for."""
KEY_FIDELITY = PREFIX + "fidelity"
"""Optional: the JSON fidelity report (``radstream.model.fidelity``) against the fp32 model."""
PRECISIONS: tuple[str, ...] = ("fp32", "bf16", "int8")
REQUIRED_KEYS: tuple[str, ...] = (
    KEY_NAME,
    KEY_VERSION,
    KEY_LABELS,
    KEY_INPUT_SIZE,
    KEY_INPUT_RANGE,
    KEY_CHANNELS,
)


@dataclass(frozen=True)
class ModelInfo:
    """Identity, labels and input contract of one model file.

    The input is float32 ``[N, channels, input_size, input_size]`` with pixel values scaled
    to ``[input_min, input_max]``; the output is ``[N, len(labels)]`` logits.
    """

    name: str
    version: str
    labels: tuple[str, ...]
    input_size: int
    input_min: float
    input_max: float
    channels: int
    input_name: str
    output_name: str
    sha256: str
    path: str
    trained: bool = True
    """What the file declares (``radstream.trained``); absent means True."""
    precision: str = "fp32"
    """What the file declares (``radstream.precision``); absent means fp32."""
    precision_runtime: str | None = None
    """The runtime a reduced-precision file was checked for (``radstream.runtime``)."""
    fidelity: str | None = None
    """The stored fidelity report, JSON (``radstream.fidelity``); None when absent."""

    @property
    def untrained(self) -> bool:
        """True when the probabilities mean nothing: the file says so, or it is the stand-in
        (known by name when the flag is missing: an endpoint that does not publish it, or a
        stand-in built before the flag existed)."""
        return not self.trained or self.name == STANDIN_NAME


@dataclass(frozen=True)
class DeclaredModel:
    """What the ``radstream.*`` metadata entries declare, checked and converted.

    The graph's input and output names and the file's hash are not declared there; add
    them with ``info`` to get the full ``ModelInfo``.
    """

    name: str
    version: str
    labels: tuple[str, ...]
    input_size: int
    input_min: float
    input_max: float
    channels: int
    trained: bool = True
    precision: str = "fp32"
    precision_runtime: str | None = None
    fidelity: str | None = None

    def info(self, *, input_name: str, output_name: str, sha256: str, path: str) -> ModelInfo:
        """The ModelInfo of a model that declares this, with its graph names and hash."""
        return ModelInfo(
            name=self.name,
            version=self.version,
            labels=self.labels,
            input_size=self.input_size,
            input_min=self.input_min,
            input_max=self.input_max,
            channels=self.channels,
            input_name=input_name,
            output_name=output_name,
            sha256=sha256,
            path=path,
            trained=self.trained,
            precision=self.precision,
            precision_runtime=self.precision_runtime,
            fidelity=self.fidelity,
        )


def format_number(value: float) -> str:
    """Write whole numbers without ``.0`` so the stored range reads ``-1024,1024``."""
    as_float = float(value)
    if as_float.is_integer():
        return str(int(as_float))
    return repr(as_float)


def write_metadata(
    model: onnx.ModelProto,
    *,
    name: str,
    version: str,
    labels: Sequence[str],
    input_size: int,
    input_min: float,
    input_max: float,
    channels: int,
    trained: bool = True,
) -> None:
    """Store RadStream's ``radstream.*`` keys in ``model.metadata_props``, in place.

    Existing ``radstream.*`` entries are replaced; other producers' entries are kept.
    Raises ValueError for values that ``read_model_info`` would refuse, so a bad file is
    never written in the first place.
    """
    values = {
        KEY_NAME: name,
        KEY_VERSION: version,
        KEY_LABELS: json.dumps(list(labels)),
        KEY_INPUT_SIZE: str(input_size),
        KEY_INPUT_RANGE: format_range(input_min, input_max),
        KEY_CHANNELS: str(channels),
    }
    if not trained:
        values[KEY_TRAINED] = "false"
    # Validate through the reader's own parser so writer and reader cannot drift apart.
    try:
        parse_metadata(values, source="metadata to write")
    except ModelFileInvalid as exc:
        raise ValueError(exc.message) from None

    kept = [(p.key, p.value) for p in model.metadata_props if not p.key.startswith(PREFIX)]
    del model.metadata_props[:]
    for key, value in [*kept, *values.items()]:
        entry = model.metadata_props.add()
        entry.key = key
        entry.value = value


def write_precision_metadata(
    model: onnx.ModelProto, *, precision: str, runtime: str, fidelity_json: str
) -> None:
    """Store the precision, runtime and fidelity report keys in place, keeping the others.

    ``write_metadata`` must have run first (or the model come from a file that has the
    ``radstream.*`` keys): these keys sit next to them. Raises ValueError for an unknown
    precision.
    """
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {', '.join(PRECISIONS)}, got {precision!r}")
    values = {KEY_PRECISION: precision, KEY_RUNTIME: runtime, KEY_FIDELITY: fidelity_json}
    kept = [(p.key, p.value) for p in model.metadata_props if p.key not in values]
    del model.metadata_props[:]
    for key, value in [*kept, *values.items()]:
        entry = model.metadata_props.add()
        entry.key = key
        entry.value = value


def format_range(low: float, high: float) -> str:
    """An input range as stored and published: ``min,max`` (``-1024,1024``)."""
    return f"{format_number(low)},{format_number(high)}"


def _invalid(source: str, problem: str, **details: object) -> ModelFileInvalid:
    return ModelFileInvalid(f"model file {source}: {problem}", path=source, **details)


def parse_metadata(props: Mapping[str, str], *, source: str) -> DeclaredModel:
    """Check and convert the ``radstream.*`` entries; raises ModelFileInvalid naming the key.

    ``source`` names where the entries come from (a file, an endpoint) in the messages.
    """
    missing = [key for key in REQUIRED_KEYS if key not in props]
    if missing:
        raise _invalid(
            source,
            f"metadata key {missing[0]!r} is missing (missing: {', '.join(missing)}); "
            "RadStream needs name, version, labels, input size, input range and channels "
            "stored in the ONNX metadata_props",
            missing_keys=missing,
        )

    def text(key: str) -> str:
        value = props[key].strip()
        if not value:
            raise _invalid(source, f"metadata key {key!r} is empty", key=key)
        return value

    def positive_int(key: str) -> int:
        raw = text(key)
        try:
            number = int(raw)
        except ValueError:
            number = 0
        if number <= 0:
            raise _invalid(
                source, f"metadata key {key!r} must be a positive integer, got {raw!r}", key=key
            )
        return number

    raw_labels = text(KEY_LABELS)
    try:
        labels = json.loads(raw_labels)
    except json.JSONDecodeError:
        labels = None
    if (
        not isinstance(labels, list)
        or not labels
        or not all(isinstance(label, str) and label for label in labels)
    ):
        raise _invalid(
            source,
            f"metadata key {KEY_LABELS!r} must be a JSON list of non-empty strings, "
            f"got {raw_labels[:200]!r}",
            key=KEY_LABELS,
        )
    if len(set(labels)) != len(labels):
        raise _invalid(source, f"metadata key {KEY_LABELS!r} repeats a label", key=KEY_LABELS)

    raw_range = text(KEY_INPUT_RANGE)
    parts = raw_range.split(",")
    bounds: list[float] = []
    if len(parts) == 2:
        try:
            bounds = [float(part) for part in parts]
        except ValueError:
            bounds = []
    if len(bounds) != 2 or not all(math.isfinite(b) for b in bounds) or bounds[0] >= bounds[1]:
        raise _invalid(
            source,
            f"metadata key {KEY_INPUT_RANGE!r} must be 'min,max' with finite min < max "
            f"(e.g. '-1024,1024'), got {raw_range!r}",
            key=KEY_INPUT_RANGE,
        )

    raw_trained = props.get(KEY_TRAINED, "true").strip().lower()
    if raw_trained not in ("true", "false"):
        raise _invalid(
            source,
            f"metadata key {KEY_TRAINED!r} must be 'true' or 'false', got {raw_trained[:20]!r}",
            key=KEY_TRAINED,
        )
    precision = props.get(KEY_PRECISION, "fp32").strip().lower()
    if precision not in PRECISIONS:
        raise _invalid(
            source,
            f"metadata key {KEY_PRECISION!r} must be one of {', '.join(PRECISIONS)}, "
            f"got {precision[:20]!r}",
            key=KEY_PRECISION,
        )
    return DeclaredModel(
        name=text(KEY_NAME),
        version=text(KEY_VERSION),
        labels=tuple(labels),
        input_size=positive_int(KEY_INPUT_SIZE),
        input_min=bounds[0],
        input_max=bounds[1],
        channels=positive_int(KEY_CHANNELS),
        trained=raw_trained == "true",
        precision=precision,
        precision_runtime=props.get(KEY_RUNTIME) or None,
        fidelity=props.get(KEY_FIDELITY) or None,
    )


def _static_dims(value_info: onnx.ValueInfoProto) -> list[int | None]:
    """Dimensions of a graph input/output; None where symbolic (such as the batch size)."""
    dims = value_info.type.tensor_type.shape.dim
    return [d.dim_value if d.HasField("dim_value") else None for d in dims]


def info_from_model(model: onnx.ModelProto, *, sha256: str, path: str) -> ModelInfo:
    """Build ModelInfo from a loaded ModelProto, checking metadata against the graph.

    Raises ModelFileInvalid when a metadata key is missing or malformed, or when the graph's
    input/output shapes contradict the metadata.
    """
    props = {p.key: p.value for p in model.metadata_props}
    meta = parse_metadata(props, source=path)

    initializers = {init.name for init in model.graph.initializer}
    # Older exporters list weights as graph inputs too; only the rest are fed by callers.
    inputs = [i for i in model.graph.input if i.name not in initializers]
    if len(inputs) != 1:
        raise _invalid(
            path,
            f"expected exactly one graph input (the image batch), found {len(inputs)}: "
            f"{[i.name for i in inputs]}",
        )
    if not model.graph.output:
        raise _invalid(path, "the graph has no output")
    graph_input, graph_output = inputs[0], model.graph.output[0]

    expected_in = [None, meta.channels, meta.input_size, meta.input_size]
    dims_in = _static_dims(graph_input)
    clashes = [
        (d, e)
        for d, e in zip(dims_in, expected_in, strict=False)
        if d is not None and e is not None and d != e
    ]
    if len(dims_in) != 4 or clashes:
        raise _invalid(
            path,
            f"graph input {graph_input.name!r} has shape {dims_in}, but the metadata declares "
            f"[N, {meta.channels}, {meta.input_size}, {meta.input_size}]",
        )
    dims_out = _static_dims(graph_output)
    if len(dims_out) != 2 or (dims_out[1] is not None and dims_out[1] != len(meta.labels)):
        raise _invalid(
            path,
            f"graph output {graph_output.name!r} has shape {dims_out}, but the metadata "
            f"declares {len(meta.labels)} labels, so [N, {len(meta.labels)}] is expected",
        )

    return meta.info(
        input_name=graph_input.name, output_name=graph_output.name, sha256=sha256, path=path
    )


def read_model_file(path: Path) -> tuple[ModelInfo, bytes]:
    """Read the ONNX file at ``path`` once; return its ModelInfo and the exact bytes read.

    Loading a session from these bytes, rather than from the path again, guarantees that
    ``ModelInfo.sha256`` names the weights that actually run even if the file is replaced
    meanwhile. Raises ModelFileInvalid like ``read_model_info``, and also when the model
    keeps its weights in external data files (RadStream needs single-file models).
    """
    source = str(path)
    try:
        data = Path(path).read_bytes()
    except FileNotFoundError:
        raise _invalid(
            source,
            "does not exist; build the stand-in with `radstream model build` or import a model",
        ) from None
    except OSError as exc:
        raise _invalid(source, f"cannot be read ({exc.strerror or exc})") from exc
    if not data:
        raise _invalid(source, "is empty (0 bytes); the write was probably interrupted")
    import onnx  # here, not at the top: see the TYPE_CHECKING import

    try:
        model = onnx.load_model_from_string(data)
    except Exception as exc:  # protobuf raises DecodeError and, for some inputs, others
        raise _invalid(source, f"is not a valid ONNX model ({type(exc).__name__}: {exc})") from exc
    info = info_from_model(model, sha256=hashlib.sha256(data).hexdigest(), path=source)
    if any(t.data_location == onnx.TensorProto.EXTERNAL for t in model.graph.initializer):
        raise _invalid(
            source,
            "keeps weights in external data files; re-save it as one file with "
            "onnx.save(onnx.load(path), path, save_as_external_data=False)",
        )
    return info, data


def read_model_info(path: Path) -> ModelInfo:
    """Read the ModelInfo of the ONNX file at ``path`` without creating a session.

    The file is read once; its bytes give the SHA-256 and are parsed without loading
    external data. Raises ModelFileInvalid if the file is missing, unreadable, not ONNX, or
    a ``radstream.*`` metadata key is missing or malformed (the message names the key).
    """
    return read_model_file(path)[0]
