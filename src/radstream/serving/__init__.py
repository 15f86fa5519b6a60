"""The KServe v2 / Open Inference Protocol model server behind ``radstream model serve``.

The wire codec lives in ``radstream.kserve`` (shared with the client); its main names are
re-exported here. The server (``ServeConfig``, ``serve``, ``running_server``,
``ServingApp``, ``QueueFull``) is imported from here lazily, on first use, so that
importing this package does not pull in Starlette, uvicorn and prometheus_client.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

from radstream.kserve import (
    InferRequest,
    ProtocolError,
    decode_infer_request,
    decode_infer_response,
    encode_infer_request,
    encode_infer_response,
)

if TYPE_CHECKING:
    from radstream.serving.app import ServingApp
    from radstream.serving.config import ServeConfig
    from radstream.serving.scheduler import QueueFull
    from radstream.serving.server import running_server, serve

_LAZY = {
    "QueueFull": "radstream.serving.scheduler",
    "ServeConfig": "radstream.serving.config",
    "ServingApp": "radstream.serving.app",
    "running_server": "radstream.serving.server",
    "serve": "radstream.serving.server",
}


def __getattr__(name: str) -> object:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)


__all__ = [
    "InferRequest",
    "ProtocolError",
    "QueueFull",
    "ServeConfig",
    "ServingApp",
    "decode_infer_request",
    "decode_infer_response",
    "encode_infer_request",
    "encode_infer_response",
    "running_server",
    "serve",
]
