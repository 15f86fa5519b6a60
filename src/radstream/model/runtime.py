"""Run an ONNX model in-process with ONNX Runtime on the CPU.

ONNX Runtime is imported by ``OnnxModel.load``, not by importing this module, so that
``radstream.model`` can name ``OnnxModel`` without loading the runtime.
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import numpy.typing as npt

from radstream.errors import ModelFileInvalid, ModelUnavailable
from radstream.model.client import checked_batch, checked_logits
from radstream.model.fidelity import check_gate
from radstream.model.metadata import ModelInfo, read_model_file

if TYPE_CHECKING:
    from onnxruntime import InferenceSession

PROVIDER = "CPUExecutionProvider"


def _ort_errors(*names: str) -> tuple[type[BaseException], ...]:
    """ONNX Runtime's exception classes by name, skipping any a given version lacks."""
    try:
        from onnxruntime.capi import onnxruntime_pybind11_state as state
    except ImportError:  # pragma: no cover - layout of every release since 1.0
        return ()
    found = (getattr(state, name, None) for name in names)
    return tuple(cls for cls in found if isinstance(cls, type) and issubclass(cls, BaseException))


@functools.cache
def _file_errors() -> tuple[type[BaseException], ...]:
    """Errors that say the file itself is wrong: retrying cannot help, so not transient."""
    return _ort_errors(
        "InvalidGraph", "InvalidProtobuf", "NotImplemented", "InvalidArgument", "Fail", "NoSuchFile"
    )


class OnnxModel:
    """A loaded ONNX model plus its ModelInfo; satisfies ``ModelClient``.

    ``predict_logits`` may be called from several threads at once (ONNX Runtime sessions
    are thread-safe for ``run``).
    """

    def __init__(self, session: InferenceSession, info: ModelInfo) -> None:
        """Wrap an existing session; use ``OnnxModel.load`` to create one from a file."""
        self._session = session
        self._info = info

    @classmethod
    def load(
        cls, path: Path, *, intra_op_threads: int = 1, allow_unverified: bool = False
    ) -> OnnxModel:
        """Load the ONNX file at ``path`` for CPU inference.

        One inter-op thread and sequential execution, since RadStream scales out with worker
        processes rather than with threads inside one inference; ``intra_op_threads`` sets
        the threads one inference may use (0 lets ONNX Runtime use every core).

        A reduced-precision file (int8) must carry a passing fidelity report in its metadata
        unless ``allow_unverified``; fp32 files load as before.

        Raises ModelFileInvalid when the file is missing, lacks RadStream metadata, is an
        unverified reduced-precision model, or ONNX Runtime rejects the graph; ModelUnavailable when the runtime cannot load it
        for other reasons (memory, no CPU provider).
        """
        if isinstance(intra_op_threads, bool) or not isinstance(intra_op_threads, int):
            raise TypeError(f"intra_op_threads must be an int, got {intra_op_threads!r}")
        if intra_op_threads < 0:
            raise ValueError(f"intra_op_threads must be >= 0, got {intra_op_threads}")
        info, data = read_model_file(Path(path))
        check_gate(info, info.precision, allow_unverified=allow_unverified)
        import onnxruntime as ort  # here, not at the top: see the module docstring

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
        except _file_errors() as exc:
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

    def predict_logits(self, batch: npt.NDArray[np.float32]) -> npt.NDArray[np.float32]:
        """Return float32 logits ``[N, len(info.labels)]`` for a batch ``[N, C, S, S]``.

        Raises ValueError if the batch has the wrong shape or non-finite values,
        ModelOutputInvalid if the output is wrongly shaped or not finite, ModelUnavailable
        if ONNX Runtime fails for a transient reason and ModelFileInvalid if it fails
        because of the graph.
        """
        info = self._info
        array = checked_batch(batch, info)
        try:
            outputs = self._session.run([info.output_name], {info.input_name: array})
        except _file_errors() as exc:
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

        return checked_logits(
            outputs[0],
            batch_size=array.shape[0],
            labels=len(info.labels),
            source=f"model {info.name} v{info.version}",
            path=info.path,
        )

    def __repr__(self) -> str:
        info = self._info
        return f"OnnxModel({info.name!r} v{info.version}, sha256={info.sha256[:12]})"
