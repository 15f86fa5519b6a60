"""Run an ONNX model in-process with ONNX Runtime on the CPU."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import onnxruntime as ort

from radstream.errors import ModelFileInvalid, ModelOutputInvalid, ModelUnavailable
from radstream.model.metadata import ModelInfo, read_model_file

PROVIDER = "CPUExecutionProvider"


def _ort_errors(*names: str) -> tuple[type[BaseException], ...]:
    """ONNX Runtime's exception classes by name, skipping any a given version lacks."""
    try:
        from onnxruntime.capi import onnxruntime_pybind11_state as state
    except ImportError:  # pragma: no cover - layout of every release since 1.0
        return ()
    found = (getattr(state, name, None) for name in names)
    return tuple(cls for cls in found if isinstance(cls, type) and issubclass(cls, BaseException))


# Errors that say the file itself is wrong: retrying cannot help, so they are not transient.
_FILE_ERRORS = _ort_errors(
    "InvalidGraph", "InvalidProtobuf", "NotImplemented", "InvalidArgument", "Fail", "NoSuchFile"
)


class OnnxModel:
    """A loaded ONNX model plus its ModelInfo; satisfies ``ModelClient``.

    ``predict_logits`` may be called from several threads at once (ONNX Runtime sessions
    are thread-safe for ``run``).
    """

    def __init__(self, session: Any, info: ModelInfo) -> None:
        """Wrap an existing session; use ``OnnxModel.load`` to create one from a file."""
        self._session = session
        self._info = info

    @classmethod
    def load(cls, path: Path, *, intra_op_threads: int = 1) -> OnnxModel:
        """Load the ONNX file at ``path`` for CPU inference.

        One inter-op thread and sequential execution, since RadStream scales out with worker
        processes rather than with threads inside one inference; ``intra_op_threads`` sets
        the threads one inference may use (0 lets ONNX Runtime use every core).

        Raises ModelFileInvalid when the file is missing, lacks RadStream metadata, or
        ONNX Runtime rejects the graph; ModelUnavailable when the runtime cannot load it
        for other reasons (memory, no CPU provider).
        """
        if isinstance(intra_op_threads, bool) or not isinstance(intra_op_threads, int):
            raise TypeError(f"intra_op_threads must be an int, got {intra_op_threads!r}")
        if intra_op_threads < 0:
            raise ValueError(f"intra_op_threads must be >= 0, got {intra_op_threads}")
        info, data = read_model_file(Path(path))
        if PROVIDER not in ort.get_available_providers():
            raise ModelUnavailable(
                f"ONNX Runtime {ort.__version__} has no {PROVIDER}; reinstall onnxruntime",
                path=info.path,
            )

        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        options.intra_op_num_threads = intra_op_threads
        options.inter_op_num_threads = 1
        # Warnings (e.g. about unused initialisers) would flood worker logs for every load.
        options.log_severity_level = 3
        try:
            # From the bytes already hashed, so info.sha256 names exactly what runs.
            session = ort.InferenceSession(data, sess_options=options, providers=[PROVIDER])
        except _FILE_ERRORS as exc:
            raise ModelFileInvalid(
                f"ONNX Runtime {ort.__version__} cannot load model file {info.path}: {exc}",
                path=info.path,
            ) from exc
        except Exception as exc:
            raise ModelUnavailable(
                f"ONNX Runtime could not load model file {info.path} ({type(exc).__name__}: {exc})",
                path=info.path,
            ) from exc

        input_names = [i.name for i in session.get_inputs()]
        output_names = [o.name for o in session.get_outputs()]
        if input_names != [info.input_name] or info.output_name not in output_names:
            raise ModelFileInvalid(
                f"model file {info.path}: the session has inputs {input_names} and outputs "
                f"{output_names}, expected input {info.input_name!r} and output "
                f"{info.output_name!r}",
                path=info.path,
            )
        return cls(session, info)

    @property
    def info(self) -> ModelInfo:
        """Labels, input contract and identity of the loaded model."""
        return self._info

    def _check_batch(self, batch: npt.NDArray[Any]) -> npt.NDArray[np.float32]:
        """Return ``batch`` as contiguous float32 after checking it fits the model input."""
        info = self._info
        array = np.asarray(batch)
        expected = f"[N, {info.channels}, {info.input_size}, {info.input_size}]"
        if not (np.issubdtype(array.dtype, np.floating) or np.issubdtype(array.dtype, np.integer)):
            raise ValueError(f"batch must hold float32 pixel values, got dtype {array.dtype}")
        if (
            array.ndim != 4
            or array.shape[0] < 1
            or array.shape[1:] != (info.channels, info.input_size, info.input_size)
        ):
            raise ValueError(
                f"batch has shape {list(array.shape)}, but model {info.name} v{info.version} "
                f"expects {expected} with N >= 1"
            )
        array = np.ascontiguousarray(array, dtype=np.float32)
        # A NaN pixel would come back as NaN logits and be blamed on the model.
        if not np.isfinite(array).all():
            raise ValueError("batch contains NaN or infinite pixel values")
        return array

    def predict_logits(self, batch: npt.NDArray[np.float32]) -> npt.NDArray[np.float32]:
        """Return float32 logits ``[N, len(info.labels)]`` for a batch ``[N, C, S, S]``.

        Raises ValueError if the batch has the wrong shape or non-finite values,
        ModelOutputInvalid if the output is wrongly shaped or not finite, ModelUnavailable
        if ONNX Runtime fails for a transient reason and ModelFileInvalid if it fails
        because of the graph.
        """
        array = self._check_batch(batch)
        info = self._info
        try:
            outputs = self._session.run([info.output_name], {info.input_name: array})
        except _FILE_ERRORS as exc:
            raise ModelFileInvalid(
                f"model {info.name} v{info.version} failed on a valid batch: {exc}",
                path=info.path,
            ) from exc
        except Exception as exc:
            raise ModelUnavailable(
                f"inference with model {info.name} v{info.version} failed "
                f"({type(exc).__name__}: {exc})",
                path=info.path,
            ) from exc

        logits = np.asarray(outputs[0])
        expected = (array.shape[0], len(info.labels))
        if logits.shape != expected:
            raise ModelOutputInvalid(
                f"model {info.name} v{info.version} returned shape {list(logits.shape)}, "
                f"expected {list(expected)} (batch size x {len(info.labels)} labels)",
                path=info.path,
            )
        if not np.isfinite(logits).all():
            bad = int(np.count_nonzero(~np.isfinite(logits)))
            raise ModelOutputInvalid(
                f"model {info.name} v{info.version} returned {bad} non-finite logit(s)",
                path=info.path,
            )
        return logits.astype(np.float32, copy=False)

    def __repr__(self) -> str:
        info = self._info
        return f"OnnxModel({info.name!r} v{info.version}, sha256={info.sha256[:12]})"
