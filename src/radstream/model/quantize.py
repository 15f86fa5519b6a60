"""Make a reduced-precision model from an fp32 one, and prove it before writing it.

``optimize_model`` quantizes with ONNX Runtime's static post-training quantizer (QDQ format,
weights int8 per output channel, activations uint8 with ranges calibrated on the images the
user gives), or, for bf16, keeps the fp32 graph and marks it for a runtime that computes in
bf16 (OpenVINO). Either way the candidate is then compared with the fp32 model on images the
calibration did not see (``radstream.model.fidelity``); a candidate that fails the gate is
not written. A written file carries its precision, runtime and fidelity report in its
metadata, next to the ``radstream.*`` keys it inherits from the fp32 model.
"""

from __future__ import annotations

import logging
import os
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import numpy.typing as npt

from radstream.errors import ModelFileInvalid
from radstream.logs import get_logger
from radstream.model.fidelity import DEFAULT_MAX_DELTA, FidelityReport, compare_models
from radstream.model.metadata import read_model_file, write_precision_metadata
from radstream.model.runtime import OnnxModel

if TYPE_CHECKING:
    from onnxruntime.quantization import CalibrationDataReader

log = get_logger(__name__)

HOLDOUT_FRACTION = 0.25
"""Share of the calibration images kept back for the fidelity check (at least one)."""


class FidelityGateFailed(Exception):
    """The candidate's outputs are further from the fp32 model's than allowed."""

    def __init__(self, report: FidelityReport) -> None:
        """Keep the report that failed, for the caller to show."""
        super().__init__(
            f"max |Δp| {report.max_abs_delta:.4f} exceeds {report.threshold} on "
            f"{report.images} held-out image(s); nothing written"
        )
        self.report = report


@dataclass(frozen=True)
class OptimizeResult:
    """The file written and the fidelity report it carries."""

    path: Path
    precision: str
    runtime: str
    report: FidelityReport
    calibration_images: int


def split_holdout(count: int, fraction: float = HOLDOUT_FRACTION) -> tuple[list[int], list[int]]:
    """Indices of ``count`` images that calibrate, and of those held out (at least one).

    Held-out images are spread evenly over the list (every k-th), so that images given in
    groups (one folder per source or encoding, sorted by name) land on both sides. Raises
    ValueError with fewer than two images: one to calibrate and one to check.
    """
    if count < 2:
        raise ValueError(f"need at least 2 images (calibrate and hold out), got {count}")
    step = max(2, round(1 / fraction))
    held = [i for i in range(count) if i % step == step - 1] or [count - 1]
    kept = [i for i in range(count) if i not in set(held)]
    return kept, held


def _reader(input_name: str, tensors: Sequence[npt.NDArray[np.float32]]) -> CalibrationDataReader:
    """An ONNX Runtime calibration reader that feeds ``tensors`` one at a time."""
    from onnxruntime.quantization import CalibrationDataReader

    class _Reader(CalibrationDataReader):  # type: ignore[misc]
        def __init__(self) -> None:
            self._items = iter(tensors)

        def get_next(self) -> dict[str, npt.NDArray[np.float32]] | None:
            item = next(self._items, None)
            return None if item is None else {input_name: item}

    return _Reader()


def sensitive_nodes(path: Path) -> list[str]:
    """The first convolution and the classifier: kept in fp32.

    The first sees the raw input range (-1024..1024), the classifier maps features straight
    to logits; quantizing either costs the most fidelity for the least speed. On the
    stand-in, excluding them took the max |Δp| on the real chest X-ray from 0.034 to 0.023.
    """
    import onnx

    nodes = onnx.load_model(str(path), load_external_data=False).graph.node
    convs = [n.name for n in nodes if n.op_type == "Conv"]
    heads = [n.name for n in nodes if n.op_type in ("Gemm", "MatMul")]
    return convs[:1] + heads[-1:]


def quantize_int8_bytes(model_path: Path, calibration: Sequence[npt.NDArray[np.float32]]) -> bytes:
    """The int8 QDQ model (per-channel int8 weights, uint8 activations) as ONNX bytes.

    The fp32 graph is first shape-inferred and optimised (``quant_pre_process``), as ONNX
    Runtime recommends, so that the quantizer sees fused Conv+BN+ReLU patterns; the first
    convolution and the classifier stay fp32 (``sensitive_nodes``).
    """
    info, _ = read_model_file(model_path)
    root = logging.getLogger()
    level = root.level
    # The quantizer warns on the root logger for every BatchNormalization scale it leaves
    # alone (over a hundred lines for DenseNet121), none of them actionable.
    root.setLevel(max(level, logging.ERROR))
    try:
        return _quantize(model_path, info.input_name, calibration)
    finally:
        root.setLevel(level)


def _quantize(
    model_path: Path, input_name: str, calibration: Sequence[npt.NDArray[np.float32]]
) -> bytes:
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    with tempfile.TemporaryDirectory(prefix="radstream-quant-") as tmp:
        pre = Path(tmp) / "pre.onnx"
        out = Path(tmp) / "int8.onnx"
        quant_pre_process(str(model_path), str(pre), skip_symbolic_shape=True)
        quantize_static(
            str(pre),
            str(out),
            _reader(input_name, calibration),
            quant_format=QuantFormat.QDQ,
            per_channel=True,
            activation_type=QuantType.QUInt8,
            weight_type=QuantType.QInt8,
            calibrate_method=CalibrationMethod.MinMax,
            nodes_to_exclude=sensitive_nodes(pre),
        )
        return out.read_bytes()


def _with_metadata(data: bytes, *, precision: str, runtime: str, report: FidelityReport) -> bytes:
    import onnx

    model = onnx.load_model_from_string(data)
    write_precision_metadata(
        model, precision=precision, runtime=runtime, fidelity_json=report.to_json()
    )
    return bytes(model.SerializeToString())


def _copy_radstream_metadata(source: Path, data: bytes) -> bytes:
    """``data``'s model with the ``radstream.*`` keys of the model at ``source``."""
    import onnx

    origin = onnx.load_model(str(source), load_external_data=False)
    model = onnx.load_model_from_string(data)
    ours = [(p.key, p.value) for p in origin.metadata_props]
    keys = {k for k, _ in ours}
    kept = [(p.key, p.value) for p in model.metadata_props if p.key not in keys]
    del model.metadata_props[:]
    for key, value in [*kept, *ours]:
        entry = model.metadata_props.add()
        entry.key = key
        entry.value = value
    return bytes(model.SerializeToString())


def _write_atomically(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def optimize_model(
    model_path: Path,
    images: Sequence[npt.NDArray[np.float32]],
    out_path: Path,
    *,
    precision: str = "int8",
    runtime: str = "onnxruntime",
    max_delta: float = DEFAULT_MAX_DELTA,
) -> OptimizeResult:
    """Make ``precision`` from the fp32 model at ``model_path``, check it, write ``out_path``.

    ``images`` are preprocessed tensors ``[1, C, S, S]`` exactly as the pipeline feeds the
    model; ``split_holdout`` picks which calibrate and which (one in four, spread over the
    list) are held out for the fidelity check. Raises FidelityGateFailed (nothing written) when the candidate's max
    |Δp| on the held-out images exceeds ``max_delta``; ValueError for an unsupported
    precision/runtime pair or too few images; ModelFileInvalid when the source is not fp32.
    """
    from radstream.model.client import ModelClient
    from radstream.model.openvino_runtime import OpenVinoModel

    reference = OnnxModel.load(model_path)
    if reference.info.precision != "fp32":
        raise ModelFileInvalid(
            f"model file {model_path} is already {reference.info.precision}; optimize the fp32 "
            "model it came from",
            path=str(model_path),
        )
    kept, held = split_holdout(len(images))
    calibration, holdout = [images[i] for i in kept], [images[i] for i in held]
    if precision == "int8":
        if runtime != "onnxruntime":
            raise ValueError("int8 models are made and run with ONNX Runtime (runtime onnxruntime)")
        candidate_bytes = _copy_radstream_metadata(
            model_path, quantize_int8_bytes(model_path, calibration)
        )
    elif precision == "bf16":
        if runtime != "openvino":
            raise ValueError(
                "bf16 runs fast only with OpenVINO (runtime openvino): ONNX Runtime's CPU "
                "provider has no bf16 kernels for this model's convolutions"
            )
        # The weights stay fp32 in the file; OpenVINO computes in bf16 when told to.
        candidate_bytes = model_path.read_bytes()
    else:
        raise ValueError(f"precision must be int8 or bf16, got {precision!r}")

    with tempfile.TemporaryDirectory(prefix="radstream-cand-") as tmp:
        staged = Path(tmp) / "candidate.onnx"
        staged.write_bytes(candidate_bytes)
        # Loaded for what it is, before it has a report: checking it is the point here.
        candidate: ModelClient = (
            OnnxModel.load(staged, allow_unverified=True)
            if precision == "int8"
            else OpenVinoModel.load(staged, precision="bf16")
        )
        report = compare_models(reference, candidate, holdout, max_delta=max_delta)
    log.info(
        "fidelity checked",
        extra={
            "precision": precision,
            "max_abs_delta": report.max_abs_delta,
            "passed": report.passed,
        },
    )
    if not report.passed:
        raise FidelityGateFailed(report)
    _write_atomically(
        out_path,
        _with_metadata(candidate_bytes, precision=precision, runtime=runtime, report=report),
    )
    return OptimizeResult(
        path=out_path,
        precision=precision,
        runtime=runtime,
        report=report,
        calibration_images=len(calibration) if precision == "int8" else 0,
    )
