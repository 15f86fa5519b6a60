"""The ASGI application of the model server: Starlette routes over the scheduler.

Endpoints (Open Inference Protocol, as Triton serves it; see ``radstream.kserve`` for the
body format): ``GET /v2``, ``/v2/health/live``, ``/v2/health/ready``,
``/v2/models/{name}[/versions/1]``, ``/v2/models/{name}[/versions/1]/ready``,
``POST /v2/models/{name}[/versions/1]/infer`` and ``GET /metrics`` (Prometheus).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import numpy as np
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from starlette.applications import Starlette
from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from starlette.types import Receive, Scope, Send

from radstream import __version__
from radstream.errors import ModelUnavailable, RadStreamError, error_from_exception
from radstream.kserve import (
    HEADER_LENGTH,
    InferRequest,
    ProtocolError,
    datatype_of,
    decode_infer_request,
    encode_infer_response,
    parse_header_length,
)
from radstream.kserve.metadata import (
    PARAM_CHANNELS,
    PARAM_INPUT_RANGE,
    PARAM_INPUT_SIZE,
    PARAM_LABELS,
    PARAM_MODEL_NAME,
    PARAM_MODEL_VERSION,
    PARAM_SHA256,
    PLATFORM_ONNX,
    ModelMetadata,
    ServerMetadata,
)
from radstream.kserve.wire import BINARY_EXTENSION
from radstream.logs import get_logger
from radstream.model.metadata import ModelInfo, format_range, read_model_info
from radstream.serving.config import MODEL_VERSION, ServeConfig, body_limit
from radstream.serving.http import (
    ASGIApp,
    BearerAuth,
    BodyBudget,
    BodyTimeout,
    BodyTooLarge,
    error_response,
    read_body,
    status_for,
)
from radstream.serving.metrics import Metrics, Stats
from radstream.serving.scheduler import Float32Array, Scheduler

logger = get_logger(__name__)

# A JSON body larger than this is parsed off the event loop.
_THREADED_PARSE_BYTES = 1 << 20

BODY_BUDGET_BYTES = 256 * 1024 * 1024
"""Request bodies (read or inflated) the server holds at once, at least; 503 beyond."""


def model_metadata(name: str, info: ModelInfo) -> ModelMetadata:
    """What ``GET /v2/models/{name}`` answers: the graph's tensors and the input contract."""
    return {
        "name": name,
        "versions": [MODEL_VERSION],
        "platform": PLATFORM_ONNX,
        "inputs": [
            {
                "name": info.input_name,
                "datatype": "FP32",
                "shape": [-1, info.channels, info.input_size, info.input_size],
            }
        ],
        "outputs": [
            {"name": info.output_name, "datatype": "FP32", "shape": [-1, len(info.labels)]}
        ],
        "parameters": {
            PARAM_LABELS: json.dumps(list(info.labels)),
            PARAM_INPUT_RANGE: format_range(info.input_min, info.input_max),
            PARAM_INPUT_SIZE: str(info.input_size),
            PARAM_CHANNELS: str(info.channels),
            PARAM_MODEL_NAME: info.name,
            PARAM_MODEL_VERSION: info.version,
            PARAM_SHA256: info.sha256,
        },
    }


class ServingApp:
    """The ASGI application of the model server (Starlette routes, optional bearer auth).

    Reads the model's metadata at construction (raising ModelFileInvalid for a bad file);
    instances start with the ASGI lifespan and stop with it.
    """

    def __init__(
        self,
        config: ServeConfig,
        *,
        on_fatal: Callable[[RadStreamError], None] | None = None,
    ) -> None:
        self.config = config
        self.info: ModelInfo = read_model_info(Path(config.model_path))
        self.stats = Stats()
        self.fatal_error: RadStreamError | None = None
        self.on_fatal = on_fatal
        self._scheduler: Scheduler | None = None
        self.registry = CollectorRegistry(auto_describe=False)
        self.registry.register(Metrics(self))
        self._metadata = model_metadata(config.name, self.info)
        # The largest body read (sent or inflated; 413 above it): what a full batch of
        # JSON needs, so a compression bomb or a stalled upload holds little memory.
        info = self.info
        self.body_limit = body_limit(
            config.max_batch_size, info.channels * info.input_size * info.input_size
        )
        # Bodies held at once, by all requests together: a burst of large uploads gets
        # 503s rather than the server's memory.
        self.bodies = BodyBudget(max(BODY_BUDGET_BYTES, 2 * self.body_limit))
        routes = [
            Route("/v2", self._server_metadata, methods=["GET"]),
            Route("/v2/health/live", self._live, methods=["GET"]),
            Route("/v2/health/ready", self._ready, methods=["GET"]),
            Route("/v2/models/{name}", self._metadata_endpoint, methods=["GET"]),
            Route("/v2/models/{name}/versions/{version}", self._metadata_endpoint, methods=["GET"]),
            Route("/v2/models/{name}/ready", self._model_ready, methods=["GET"]),
            Route("/v2/models/{name}/versions/{version}/ready", self._model_ready, methods=["GET"]),
            Route("/v2/models/{name}/infer", self._infer, methods=["POST"]),
            Route("/v2/models/{name}/versions/{version}/infer", self._infer, methods=["POST"]),
            Route("/metrics", self._metrics, methods=["GET"]),
        ]
        starlette = Starlette(routes=routes, lifespan=self._lifespan)
        self._asgi: ASGIApp = starlette
        if config.token is not None:
            self._asgi = BearerAuth(starlette, config.token)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await self._asgi(scope, receive, send)

    # -- state (read by /metrics, by running_server, from any thread) ---------------------

    @property
    def model_name(self) -> str:
        """The served model name."""
        return self.config.name

    @property
    def ready(self) -> bool:
        """Whether at least one instance is loaded (safe to read from any thread)."""
        scheduler = self._scheduler
        return scheduler is not None and not scheduler.closing and scheduler.loaded > 0

    @property
    def instances(self) -> int:
        """Instances loaded."""
        scheduler = self._scheduler
        return 0 if scheduler is None else scheduler.loaded

    @property
    def busy_instances(self) -> int:
        """Instances running a batch."""
        scheduler = self._scheduler
        return 0 if scheduler is None else scheduler.busy

    @property
    def target_instances(self) -> int:
        """Instances wanted (the autoscaler's target)."""
        scheduler = self._scheduler
        return 0 if scheduler is None else scheduler.target

    @property
    def queue_depth(self) -> int:
        """Requests waiting in the queue."""
        scheduler = self._scheduler
        return 0 if scheduler is None else len(scheduler.pending)

    def _fatal(self, error: RadStreamError) -> None:
        self.fatal_error = error
        if self.on_fatal is not None:
            self.on_fatal(error)

    @contextlib.asynccontextmanager
    async def _lifespan(self, _app: Starlette) -> AsyncIterator[None]:
        scheduler = Scheduler(self.config, self.stats, self._fatal)
        self._scheduler = scheduler
        await scheduler.start()
        try:
            yield
        finally:
            await scheduler.close()

    def _unknown_model(self, request: Request) -> Response | None:
        name = request.path_params["name"]
        version = request.path_params.get("version")
        if name != self.config.name:
            return error_response(
                f"unknown model {name!r}; this server serves {self.config.name!r}", 404
            )
        if version is not None and version != MODEL_VERSION:
            return error_response(
                f"unknown version {version!r} of model {name!r}; available: [{MODEL_VERSION!r}]",
                404,
            )
        return None

    # -- endpoints ----------------------------------------------------------------------

    async def _server_metadata(self, _request: Request) -> Response:
        metadata: ServerMetadata = {
            "name": "radstream",
            "version": __version__,
            "extensions": [BINARY_EXTENSION],
        }
        return JSONResponse(metadata)

    async def _live(self, _request: Request) -> Response:
        return Response(status_code=200)

    async def _ready(self, _request: Request) -> Response:
        if self.ready:
            return Response(status_code=200)
        return error_response("no model instance is loaded yet", 503, retry_after=True)

    async def _metadata_endpoint(self, request: Request) -> Response:
        return self._unknown_model(request) or JSONResponse(self._metadata)

    async def _model_ready(self, request: Request) -> Response:
        unknown = self._unknown_model(request)
        if unknown is not None:
            return unknown
        return await self._ready(request)

    async def _metrics(self, _request: Request) -> Response:
        return Response(generate_latest(self.registry), media_type=CONTENT_TYPE_LATEST)

    async def _infer(self, request: Request) -> Response:
        unknown = self._unknown_model(request)
        if unknown is not None:
            return unknown
        arrived = time.monotonic()
        try:
            response = await self._infer_inner(request)
        except BodyTooLarge as exc:
            self.stats.failure["BAD_REQUEST"] += 1
            return error_response(
                f"{exc} (inflated, for a compressed body): more than a batch of "
                f"--max-batch-size={self.config.max_batch_size} images needs",
                413,
                close=True,
            )
        except BodyTimeout as exc:
            self.stats.failure["BAD_REQUEST"] += 1
            return error_response(str(exc), 408, close=True)
        except ClientDisconnect:
            self.stats.failure["BAD_REQUEST"] += 1
            return error_response("the client disconnected before sending the whole body", 400)
        except Exception as exc:
            error = error_from_exception(exc)
            status, reason = status_for(error)
            self.stats.failure[reason] += 1
            if status == 500:
                # Unexpected: keep the traceback in the log, the client gets the message.
                logger.error("inference failed: %s", error, exc_info=exc)
            return error_response(error.message, status, retry_after=status == 503)
        self.stats.success += 1
        self.stats.request_us += (time.monotonic() - arrived) * 1e6
        return response

    async def _infer_inner(self, request: Request) -> Response:
        scheduler = self._scheduler
        if scheduler is None:
            raise ModelUnavailable("the model server is starting")
        header_length = parse_header_length(request.headers.get(HEADER_LENGTH))
        with self.bodies.hold() as hold:
            body = await read_body(
                request, limit=self.body_limit, deadline_s=self.config.body_timeout_s, hold=hold
            )
            if header_length is None and len(body) > _THREADED_PARSE_BYTES:
                # A big JSON body takes a while to parse: keep the event loop free meanwhile.
                decoded = await asyncio.to_thread(
                    decode_infer_request, body, header_length, check=self._check_input
                )
            else:
                decoded = decode_infer_request(body, header_length, check=self._check_input)
            del body
            images = self._images(decoded)
        logits = await scheduler.submit(images)
        output = self.info.output_name
        payload, headers = encode_infer_response(
            self.config.name,
            MODEL_VERSION,
            {output: logits},
            binary_outputs=decoded.binary_set([output]),
            request_id=decoded.id,
        )
        return Response(payload, 200, headers=headers)

    def _check_input(self, name: str, datatype: str, shape: list[int]) -> None:
        """Refuse an input from its declared name, datatype and shape, before its data is
        decoded: above all a batch larger than ``max_batch_size``, which would make an
        instance keep the memory of that batch for good."""
        info = self.info
        if name != info.input_name:
            raise ProtocolError(
                f"model {self.config.name!r} takes exactly one input {info.input_name!r}, "
                f"got {name!r}"
            )
        if datatype != "FP32":
            raise ProtocolError(f"input {info.input_name!r} must be FP32, got {datatype}")
        expected = [info.channels, info.input_size, info.input_size]
        if len(shape) != 4 or shape[0] < 1 or shape[1:] != expected:
            raise ProtocolError(
                f"input {info.input_name!r} has shape {shape}, expected "
                f"[N, {info.channels}, {info.input_size}, {info.input_size}] with N >= 1"
            )
        limit = self.config.max_batch_size
        if shape[0] > limit:
            raise ProtocolError(
                f"input {info.input_name!r} holds a batch of {shape[0]} images, more than "
                f"this server's --max-batch-size={limit}; send at most {limit} per request"
            )

    def _images(self, request: InferRequest) -> Float32Array:
        info = self.info
        if list(request.inputs) != [info.input_name]:
            raise ProtocolError(
                f"model {self.config.name!r} takes exactly one input {info.input_name!r}, "
                f"got {list(request.inputs)}"
            )
        if request.outputs:
            unknown = [name for name in request.outputs if name != info.output_name]
            if unknown:
                raise ProtocolError(
                    f"model {self.config.name!r} has no output {unknown[0]!r}; "
                    f"its output is {info.output_name!r}"
                )
        images = request.inputs[info.input_name]
        if images.dtype != np.float32:
            raise ProtocolError(
                f"input {info.input_name!r} must be FP32, got {datatype_of(images)}"
            )
        expected = (info.channels, info.input_size, info.input_size)
        if images.ndim != 4 or images.shape[0] < 1 or tuple(images.shape[1:]) != expected:
            raise ProtocolError(
                f"input {info.input_name!r} has shape {list(images.shape)}, expected "
                f"[N, {info.channels}, {info.input_size}, {info.input_size}] with N >= 1"
            )
        if not np.isfinite(images).all():
            raise ProtocolError(f"input {info.input_name!r} contains NaN or infinite values")
        checked: Float32Array = images
        return checked


__all__ = ["BODY_BUDGET_BYTES", "ServingApp", "model_metadata"]
