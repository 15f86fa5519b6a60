"""KServe v2 / Open Inference Protocol serving: the wire codec and the model server.

``radstream.serving.protocol`` is pure and cheap to import (clients use it alone); the
server (``ServeConfig``, ``serve``, ``running_server``, ``ServingApp``) lives in
``radstream.serving.server`` and is imported from here lazily, on first use, so that
importing the codec does not pull in Starlette, uvicorn and prometheus_client.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from radstream.serving.protocol import (
    InferRequest,
    ProtocolError,
    decode_infer_request,
    decode_infer_response,
    encode_infer_request,
    encode_infer_response,
)

if TYPE_CHECKING:
    from radstream.serving.server import (
        QueueFull,
        ServeConfig,
        ServingApp,
        running_server,
        serve,
    )

_SERVER_NAMES = frozenset({"QueueFull", "ServeConfig", "ServingApp", "running_server", "serve"})


def __getattr__(name: str) -> Any:
    if name in _SERVER_NAMES:
        from radstream.serving import server

        return getattr(server, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


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
