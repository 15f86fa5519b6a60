"""Which model file the settings point at: the user's, or the cached stand-in."""

from __future__ import annotations

from pathlib import Path

from radstream.errors import ModelFileInvalid
from radstream.model.client import ModelClient
from radstream.settings import Settings


def resolve_model_path(settings: Settings) -> Path:
    """``model.path`` if set (it must exist), else the stand-in, built on first use."""
    if settings.model.path is not None:
        path = settings.model.path.expanduser()
        if not path.is_file():
            raise ModelFileInvalid(f"model file {path} does not exist")
        return path
    # The builder needs ONNX; only an in-process model (or a tool) gets here.
    from radstream.model.builder import ensure_standin

    return ensure_standin(settings.models_dir)


def load_model_client(settings: Settings) -> ModelClient:
    """The model the pipeline calls: a KServe v2 endpoint if configured, else in process.

    In process, ``model.runtime`` and ``model.precision`` choose ONNX Runtime or OpenVINO
    and fp32, bf16 or int8 (see ``radstream.model.backends``); a reduced-precision model
    without a passing fidelity report is refused unless ``model.allow_unverified``.

    With an endpoint, a local model file (``model.path``), when set, supplies the metadata a
    server such as Triton does not publish (labels, input range).
    """
    model = settings.model
    if model.endpoint:
        from radstream.model.circuit import CircuitBreaker
        from radstream.model.kserve_client import KServeModelClient
        from radstream.model.metadata import read_model_info

        return KServeModelClient(
            model.endpoint,
            model.endpoint_model,
            token=model.token,
            timeout_s=model.timeout_s,
            retries=model.retries,
            breaker=CircuitBreaker(
                failure_threshold=model.breaker_failures, reset_after_s=model.breaker_reset_s
            ),
            fallback_info=read_model_info(model.path) if model.path else None,
        )
    # ONNX Runtime (or OpenVINO) is loaded only here, when the model runs in this process.
    from radstream.model.backends import load_backend

    # model.precision, model.runtime and the fidelity gate are applied in one place.
    return load_backend(
        resolve_model_path(settings),
        precision=model.precision,
        runtime=model.runtime,
        intra_op_threads=model.intra_op_threads,
        allow_unverified=model.allow_unverified,
    )
