"""Run an ONNX model in-process with OpenVINO on the CPU (the optional ``openvino`` extra).

OpenVINO can compute in bf16 on CPUs with AVX512_BF16 or AMX while the file keeps fp32
weights; ONNX Runtime's CPU provider cannot. OpenVINO is imported by ``OpenVinoModel.load``.
"""

from __future__ import annotations

import io
import threading
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from radstream.errors import ModelFileInvalid, ModelUnavailable
from radstream.model.client import checked_batch, checked_logits
from radstream.model.metadata import ModelInfo, read_model_file

INFERENCE_PRECISION = {"fp32": "f32", "bf16": "bf16"}
"""OpenVINO's ``INFERENCE_PRECISION_HINT`` for each precision it runs here."""


def openvino_available() -> bool:
    """True when the ``openvino`` package can be imported."""
    import importlib.util

    return importlib.util.find_spec("openvino") is not None


class OpenVinoModel:
    """A model compiled by OpenVINO for the CPU plus its ModelInfo; satisfies ``ModelClient``.

    One infer request, guarded by a lock: calls from several threads run one at a time.
    """

    def __init__(self, request: Any, info: ModelInfo, precision: str) -> None:
        """Wrap a compiled model's infer request; use ``OpenVinoModel.load``."""
        self._request = request
        self._info = info
        self._lock = threading.Lock()
        self.precision = precision

    @classmethod
    def load(cls, path: Path, *, precision: str = "fp32", threads: int = 1) -> OpenVinoModel:
        """Compile the ONNX file at ``path`` for the CPU, computing in ``precision``.

        Raises ModelUnavailable when OpenVINO is not installed, ModelFileInvalid when it
        rejects the file, ValueError for a precision it does not run here.
        """
        if precision not in INFERENCE_PRECISION:
            raise ValueError(f"OpenVINO runs fp32 or bf16 here, not {precision!r}")
        info, data = read_model_file(Path(path))
        try:
            # An optional extra: untyped where it is not installed (mypy runs without it).
            import openvino as ov  # type: ignore[import-not-found,unused-ignore]
        except ImportError as exc:
            raise ModelUnavailable(
                "model.runtime = openvino needs OpenVINO: pip install 'radstream[openvino]'",
                path=info.path,
            ) from exc
        core = ov.Core()
        try:
            # From the bytes already hashed, so info.sha256 names exactly what runs.
            model = core.read_model(io.BytesIO(data))
        except Exception as exc:
            raise ModelFileInvalid(
                f"OpenVINO cannot read model file {info.path}: {exc}", path=info.path
            ) from exc
        config = {
            "INFERENCE_PRECISION_HINT": INFERENCE_PRECISION[precision],
            "PERFORMANCE_HINT": "LATENCY",
            "NUM_STREAMS": 1,
            # RadStream runs one process per core; pinned, each process's thread would be
            # bound to the same first core.
            "ENABLE_CPU_PINNING": False,
            # 0 in RadStream's settings means "every core"; OpenVINO's default does that.
            **({"INFERENCE_NUM_THREADS": threads} if threads > 0 else {}),
        }
        try:
            compiled = core.compile_model(model, "CPU", config)
        except Exception as exc:
            raise ModelUnavailable(
                f"OpenVINO could not compile model file {info.path} ({type(exc).__name__}: {exc})",
                path=info.path,
            ) from exc
        return cls(compiled.create_infer_request(), info, precision)

    @property
    def info(self) -> ModelInfo:
        """Labels, input contract and identity of the loaded model."""
        return self._info

    def predict_logits(self, batch: npt.NDArray[np.float32]) -> npt.NDArray[np.float32]:
        """Return float32 logits ``[N, len(info.labels)]`` for a batch ``[N, C, S, S]``."""
        info = self._info
        array = checked_batch(batch, info)
        try:
            with self._lock:
                outputs = self._request.infer({0: array})
                logits = np.array(next(iter(outputs.values())), dtype=np.float32)
        except Exception as exc:
            raise ModelUnavailable(
                f"OpenVINO inference with model {info.name} v{info.version} failed "
                f"({type(exc).__name__}: {exc})",
                path=info.path,
            ) from exc
        return checked_logits(
            logits,
            batch_size=array.shape[0],
            labels=len(info.labels),
            source=f"model {info.name} v{info.version}",
            path=info.path,
        )

    def __repr__(self) -> str:
        info = self._info
        return f"OpenVinoModel({info.name!r} v{info.version}, {self.precision})"
