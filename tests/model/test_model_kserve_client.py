"""Tests for the KServe v2 model client and its circuit breaker, over real HTTP on 127.0.0.1.

One test runs against the project's own server (``radstream.serving.running_server``). The
fault tests use ``StandInServer`` below, written as a stand-in for that server before it
landed and kept because it has switches the real server does not: answer the next
requests with a given status (503, 502, 400, ...), close the connection mid-response,
corrupt the output, leave out the RadStream metadata parameters, stop and start again on
the same port. It is a minimal Starlette + uvicorn app speaking the KServe v2 protocol with
Triton's binary extension (through ``radstream.kserve``) and running a real ONNX
model through ``OnnxModel``. Servers bind 127.0.0.1 on an ephemeral port, and every fixture
stops them, pass or fail.
"""

from __future__ import annotations

import json
import socket
import threading
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import pytest
import uvicorn
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from starlette.types import Receive, Scope, Send

from radstream.backoff import Backoff
from radstream.errors import ModelFileInvalid, ModelOutputInvalid, ModelUnavailable
from radstream.kserve import (
    HEADER_LENGTH,
    ProtocolError,
    decode_infer_request,
    encode_error,
    encode_infer_response,
    parse_header_length,
    parse_retry_after,
)
from radstream.model import TXRV_LABELS, ModelClient, OnnxModel, read_model_info
from radstream.model.circuit import CircuitBreaker
from radstream.model.kserve_client import KServeModelClient, ModelRequestRejected
from support.clocks import FakeClock
from support.models import conv_classifier, save, tagged
from support.waiting import wait_until

TINY_SIZE = 16
TINY_LABELS = ("Alpha", "Beta", "Gamma")

# Starts servers on 127.0.0.1 (see tests/support/slow.py): `make test-fast` leaves it out.
pytestmark = pytest.mark.slow


# --- a tiny model and the stand-in server ------------------------------------------------


def write_tiny_model(path: Path) -> Path:
    """Conv 3x3 (1->4) -> GlobalAveragePool -> Flatten -> Gemm (4->3), with metadata."""
    model = conv_classifier(
        size=TINY_SIZE,
        classes=len(TINY_LABELS),
        features=4,
        seed=7,
        bias=(0.1, -0.2, 0.3),
        input_name="image",
        output_name="scores",
    )
    return save(tagged(model, labels=TINY_LABELS, input_size=TINY_SIZE, version="2"), path)


class _TruncatedResponse(Response):
    """Promises 1000 bytes, sends 10 and ends: uvicorn then closes the connection."""

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [(b"content-length", b"1000"), (b"content-type", b"application/json")],
            }
        )
        await send({"type": "http.response.body", "body": b'{"outputs"', "more_body": False})


class StandInServer:
    """KServe v2 endpoint for one OnnxModel, with fault switches (see the module docstring)."""

    def __init__(
        self, model: OnnxModel, *, name: str = "m", token: str | None = None, publish: bool = True
    ) -> None:
        self.model = model
        self.name = name
        self.token = token
        self.publish = publish  # publish radstream.* parameters in the metadata
        self.faults: list[int | str] = []  # per request: an HTTP status, or "close"
        self.retry_after: str | None = None
        self.corrupt: str | None = None  # "nan" or "shape"
        self.requests = 0
        self.infer_requests = 0
        self.binary_requests = 0
        self.auth: list[str | None] = []
        self._lock = threading.Lock()
        self._port = 0
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None
        self._socket: socket.socket | None = None
        self.app = Starlette(
            routes=[
                Route(f"/v2/models/{name}", self._metadata, methods=["GET"]),
                Route(f"/v2/models/{name}/infer", self._infer, methods=["POST"]),
            ]
        )

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._port}"

    def start(self) -> None:
        """Listen on 127.0.0.1 (the same port again after a stop) and wait until serving."""
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("127.0.0.1", self._port))
        self._port = sock.getsockname()[1]
        config = uvicorn.Config(
            self.app,
            log_level="critical",
            access_log=False,
            http="h11",
            lifespan="off",
            timeout_graceful_shutdown=1,
        )
        server = uvicorn.Server(config)
        thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
        self._server, self._thread, self._socket = server, thread, sock
        thread.start()
        try:
            wait_until(
                lambda: server.started or not thread.is_alive(),
                "the stand-in server to start",
                timeout_s=10,
                interval_s=0.005,
            )
        except BaseException:  # pytest.fail's exception is not an Exception
            self.stop()
            raise
        if not server.started:  # the thread ended without serving
            self.stop()
            raise RuntimeError("the stand-in server did not start")

    def stop(self) -> None:
        """Stop serving and close the listening socket (idempotent)."""
        if self._server is not None:
            self._server.should_exit = True
        if self._thread is not None:
            self._thread.join(timeout=10)
        if self._socket is not None:
            self._socket.close()
        self._server = self._thread = self._socket = None

    def _admit(self, request: Request) -> Response | None:
        """Count the request and apply the token check and the next queued fault."""
        with self._lock:
            self.requests += 1
            self.auth.append(request.headers.get("authorization"))
            fault = self.faults.pop(0) if self.faults else None
        if (
            self.token is not None
            and request.headers.get("authorization") != f"Bearer {self.token}"
        ):
            return Response(encode_error("missing or wrong bearer token"), status_code=401)
        if fault == "close":
            return _TruncatedResponse()
        if isinstance(fault, int):
            headers = {"Retry-After": self.retry_after} if self.retry_after is not None else {}
            message = "model is busy" if fault == 503 else f"injected fault {fault}: input rejected"
            return Response(encode_error(message), status_code=fault, headers=headers)
        return None

    async def _metadata(self, request: Request) -> Response:
        refused = self._admit(request)
        if refused is not None:
            return refused
        info = self.model.info
        body: dict[str, Any] = {
            "name": self.name,
            "versions": [info.version],
            "platform": "onnxruntime_onnx",
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
        }
        if self.publish:
            body["parameters"] = {
                "radstream.name": info.name,
                "radstream.version": info.version,
                "radstream.labels": json.dumps(list(info.labels)),
                "radstream.input_size": str(info.input_size),
                "radstream.input_range": f"{info.input_min:g},{info.input_max:g}",
                "radstream.channels": str(info.channels),
                "radstream.sha256": info.sha256,
            }
        return JSONResponse(body)

    async def _infer(self, request: Request) -> Response:
        refused = self._admit(request)
        if refused is not None:
            return refused
        info = self.model.info
        raw = await request.body()
        try:
            length = parse_header_length(request.headers.get(HEADER_LENGTH))
            decoded = decode_infer_request(raw, length)
        except ProtocolError as exc:
            return Response(encode_error(exc.message), status_code=400)
        with self._lock:
            self.infer_requests += 1
            self.binary_requests += length is not None
        logits = await run_in_threadpool(self.model.predict_logits, decoded.inputs[info.input_name])
        if self.corrupt == "nan":
            logits = logits.copy()
            logits[0, 0] = np.nan
        elif self.corrupt == "shape":
            logits = logits[:, :-1]
        body, headers = encode_infer_response(
            self.name,
            info.version,
            {info.output_name: logits},
            binary_outputs=decoded.binary_set([info.output_name]),
            request_id=decoded.id,
        )
        return Response(body, headers=headers)


# --- fixtures ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def tiny_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_tiny_model(tmp_path_factory.mktemp("tiny") / "tiny.onnx")


@pytest.fixture(scope="module")
def tiny(tiny_path: Path) -> OnnxModel:
    return OnnxModel.load(tiny_path)


@pytest.fixture
def serve() -> Iterator[Callable[..., StandInServer]]:
    """Start stand-in servers; every one is stopped when the test ends, pass or fail."""
    started: list[StandInServer] = []

    def start(model: OnnxModel, **kwargs: Any) -> StandInServer:
        server = StandInServer(model, **kwargs)
        started.append(server)
        server.start()
        return server

    yield start
    for server in started:
        server.stop()


@pytest.fixture
def connect() -> Iterator[Callable[..., KServeModelClient]]:
    """Fast-failing clients (small timeouts and backoff), closed at the end of the test."""
    clients: list[KServeModelClient] = []

    def make(server: StandInServer, **kwargs: Any) -> KServeModelClient:
        options: dict[str, Any] = {
            "timeout_s": 5.0,
            "connect_timeout_s": 0.5,
            "retries": 3,
            "backoff_base_s": 0.01,
            "backoff_max_s": 0.05,
        }
        options.update(kwargs)
        client = KServeModelClient(server.url, server.name, **options)
        clients.append(client)
        return client

    yield make
    for client in clients:
        client.close()


def films(n: int, size: int, seed: int = 0) -> npt.NDArray[np.float32]:
    rng = np.random.default_rng(seed)
    return rng.uniform(-1024, 1024, (n, 1, size, size)).astype(np.float32)


# --- the client over HTTP ---------------------------------------------------------------


def test_matches_the_in_process_model_over_binary_http(
    standin_model: Path, serve: Callable[..., StandInServer], connect: Callable[..., Any]
) -> None:
    local = OnnxModel.load(standin_model)
    server = serve(local, name="densenet121")
    client = connect(server)
    assert isinstance(client, ModelClient)

    batch = films(2, 224)
    remote = client.predict_logits(batch)
    np.testing.assert_allclose(remote, local.predict_logits(batch), rtol=0, atol=1e-5)
    assert remote.dtype == np.float32
    assert remote.shape == (2, len(TXRV_LABELS))
    info = client.info
    assert info.labels == local.info.labels
    assert (info.name, info.version, info.sha256) == (
        local.info.name,
        local.info.version,
        local.info.sha256,
    )
    assert (info.input_size, info.input_min, info.input_max, info.channels) == (224, -1024, 1024, 1)
    assert info.path == f"{server.url}/v2/models/densenet121"
    # Metadata once, then one binary inference request.
    assert (server.requests, server.infer_requests, server.binary_requests) == (2, 1, 1)


def test_against_the_project_server(standin_model: Path) -> None:
    """The real ``radstream.serving`` server: same logits, its metadata, its bearer token."""
    from radstream.serving import ServeConfig, running_server

    local = OnnxModel.load(standin_model)
    config = ServeConfig(model_path=standin_model, name="dn121", port=0, token="t0ken")
    with running_server(config, ready_timeout_s=60) as url:
        with KServeModelClient(url, "dn121", token="t0ken") as client:
            batch = films(3, 224, seed=4)
            np.testing.assert_allclose(
                client.predict_logits(batch), local.predict_logits(batch), rtol=0, atol=1e-5
            )
            info = client.info
            assert (info.labels, info.sha256, info.name, info.version) == (
                local.info.labels,
                local.info.sha256,
                local.info.name,
                local.info.version,
            )
            assert (info.input_name, info.output_name) == ("input", "logits")
        with (
            KServeModelClient(url, "dn121") as anonymous,
            pytest.raises(ModelRequestRejected, match="HTTP 401"),
        ):
            anonymous.predict_logits(batch)


def test_503_twice_then_success_is_retried(
    tiny: OnnxModel, serve: Callable[..., StandInServer], connect: Callable[..., Any]
) -> None:
    server = serve(tiny)
    client = connect(server, retries=3)
    assert client.info.labels == TINY_LABELS  # the metadata request: 1
    server.faults = [503, 503]
    batch = films(3, TINY_SIZE)
    np.testing.assert_allclose(client.predict_logits(batch), tiny.predict_logits(batch), atol=1e-6)
    assert server.requests == 1 + 3
    assert client.breaker.state == "closed"


def test_retry_after_is_honoured_up_to_backoff_max(
    tiny: OnnxModel, serve: Callable[..., StandInServer], connect: Callable[..., Any]
) -> None:
    server = serve(tiny)
    waits: list[float] = []
    client = connect(server, retries=2, backoff_max_s=0.15, sleep=waits.append)
    client.info  # noqa: B018 - fetch the metadata before injecting faults
    server.faults, server.retry_after = [503, 503], "30"
    client.predict_logits(films(1, TINY_SIZE))
    assert waits == [0.15, 0.15]  # two waits capped at backoff_max_s, not 30 s
    assert server.requests == 1 + 3


def test_connection_closed_mid_response_and_502_504_are_retried(
    tiny: OnnxModel, serve: Callable[..., StandInServer], connect: Callable[..., Any]
) -> None:
    server = serve(tiny)
    client = connect(server, retries=3)
    client.info  # noqa: B018
    server.faults = ["close", 502, 504]
    client.predict_logits(films(1, TINY_SIZE))
    assert server.requests == 1 + 4


def test_server_down_gives_unavailable_then_the_breaker_fails_fast_and_recovers(
    tiny: OnnxModel, serve: Callable[..., StandInServer], connect: Callable[..., Any]
) -> None:
    server = serve(tiny)
    clock = FakeClock(start=0.0)
    breaker = CircuitBreaker(failure_threshold=3, reset_after_s=0.5, clock=clock)
    waits: list[float] = []
    client = connect(server, retries=2, breaker=breaker, sleep=waits.append)
    batch = films(1, TINY_SIZE)
    client.predict_logits(batch)
    server.stop()

    with pytest.raises(ModelUnavailable, match=r"failed 3 attempt\(s\) at inference") as down:
        client.predict_logits(batch)
    assert down.value.retryable and down.value.code == "MODEL_UNAVAILABLE"
    assert breaker.state == "open"
    assert len(waits) == 2  # backoff between the three attempts

    server.start()  # back on the same port, but the circuit is still open
    before = server.requests
    with pytest.raises(ModelUnavailable, match="circuit open: the model endpoint failed 3 times"):
        client.predict_logits(batch)
    assert server.requests == before  # no network attempt
    assert len(waits) == 2  # and no wait: it fails fast

    clock.advance(0.55)  # past reset_after_s: one trial request is let through, and it succeeds
    np.testing.assert_allclose(client.predict_logits(batch), tiny.predict_logits(batch), atol=1e-6)
    assert breaker.state == "closed"
    assert server.requests == before + 1


def test_metadata_fetch_is_retried_and_not_cached_while_down(
    tiny: OnnxModel, serve: Callable[..., StandInServer], connect: Callable[..., Any]
) -> None:
    server = serve(tiny)
    server.stop()
    client = connect(server, retries=1)
    with pytest.raises(ModelUnavailable, match="at model metadata"):
        client.info  # noqa: B018
    server.start()
    assert client.info.labels == TINY_LABELS


def test_400_is_not_retried_and_carries_the_server_text(
    tiny: OnnxModel, serve: Callable[..., StandInServer], connect: Callable[..., Any]
) -> None:
    server = serve(tiny)
    client = connect(server, retries=3)
    client.info  # noqa: B018
    server.faults = [400]
    with pytest.raises(ModelRequestRejected, match="HTTP 400: injected fault 400") as rejected:
        client.predict_logits(films(1, TINY_SIZE))
    assert rejected.value.code == "MODEL_REQUEST_REJECTED"
    assert not rejected.value.retryable
    assert server.requests == 1 + 1
    assert client.breaker.state == "closed"


def test_other_5xx_is_unavailable_without_retrying(
    tiny: OnnxModel, serve: Callable[..., StandInServer], connect: Callable[..., Any]
) -> None:
    server = serve(tiny)
    client = connect(server, retries=3)
    client.info  # noqa: B018
    server.faults = [500]
    with pytest.raises(ModelUnavailable, match="HTTP 500"):
        client.predict_logits(films(1, TINY_SIZE))
    assert server.requests == 1 + 1


def test_bearer_token_is_sent(
    tiny: OnnxModel, serve: Callable[..., StandInServer], connect: Callable[..., Any]
) -> None:
    server = serve(tiny, token="s3cret")
    client = connect(server, token="s3cret")
    client.predict_logits(films(1, TINY_SIZE))
    assert server.auth == ["Bearer s3cret", "Bearer s3cret"]
    assert "s3cret" not in repr(client)

    anonymous = connect(server)
    with pytest.raises(ModelRequestRejected, match=r"HTTP 401.*check model\.token"):
        anonymous.predict_logits(films(1, TINY_SIZE))


def test_unknown_model_is_rejected(
    tiny: OnnxModel, serve: Callable[..., StandInServer], connect: Callable[..., Any]
) -> None:
    server = serve(tiny)
    client = KServeModelClient(server.url, "no-such-model", retries=3)
    try:
        with pytest.raises(ModelRequestRejected, match=r"HTTP 404.*endpoint_model"):
            client.info  # noqa: B018
    finally:
        client.close()
    assert server.requests == 0  # Starlette's router answered 404 before our handler


def test_metadata_without_radstream_parameters_uses_fallback_or_txrv_defaults(
    tiny: OnnxModel,
    tiny_path: Path,
    standin_model: Path,
    serve: Callable[..., StandInServer],
    connect: Callable[..., Any],
) -> None:
    server = serve(tiny, publish=False)
    with_fallback = connect(server, fallback_info=read_model_info(tiny_path))
    info = with_fallback.info
    assert info.labels == TINY_LABELS
    assert (info.name, info.version, info.sha256) == ("tiny", "2", tiny.info.sha256)
    assert (info.input_name, info.output_name, info.input_size) == ("image", "scores", TINY_SIZE)

    # Without a fallback: TorchXRayVision defaults, which the 3-output model contradicts.
    with pytest.raises(ModelFileInvalid, match=r"18 labels are declared"):
        connect(server).info  # noqa: B018

    standin = serve(OnnxModel.load(standin_model), name="triton", publish=False)
    info = connect(standin).info
    assert info.labels == TXRV_LABELS
    assert (info.input_size, info.input_min, info.input_max, info.channels) == (224, -1024, 1024, 1)
    assert (info.name, info.version, info.sha256) == ("triton", "1", "")


def test_bad_outputs_are_model_output_invalid(
    tiny: OnnxModel, serve: Callable[..., StandInServer], connect: Callable[..., Any]
) -> None:
    server = serve(tiny)
    client = connect(server)
    server.corrupt = "nan"
    with pytest.raises(ModelOutputInvalid, match="non-finite"):
        client.predict_logits(films(1, TINY_SIZE))
    server.corrupt = "shape"
    with pytest.raises(ModelOutputInvalid, match=r"shape \[2, 2\], expected \[2, 3\]"):
        client.predict_logits(films(2, TINY_SIZE))


def test_bad_batches_fail_before_any_request(
    tiny: OnnxModel, serve: Callable[..., StandInServer], connect: Callable[..., Any]
) -> None:
    server = serve(tiny)
    client = connect(server)
    client.info  # noqa: B018
    with pytest.raises(ValueError, match="expects"):
        client.predict_logits(films(1, TINY_SIZE + 1))
    nan = films(1, TINY_SIZE)
    nan[0, 0, 0, 0] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        client.predict_logits(nan)
    assert server.requests == 1


def test_backoff_is_the_shared_full_jitter_and_capped() -> None:
    draws = iter([0.0, 0.5, 0.999, 0.5, 0.5, 0.5])
    client = KServeModelClient(
        "http://127.0.0.1:9",
        "m",
        backoff_base_s=0.1,
        backoff_max_s=0.5,
        rng=lambda: next(draws),
    )
    try:
        assert client.backoff == Backoff(base_s=0.1, max_s=0.5)
        # Retry k waits ceiling(k) * u: ceilings 0.1, 0.2, 0.4, 0.5, 0.5, ...
        delays = [client.delay(retry) for retry in range(1, 7)]
        assert delays == pytest.approx([0.0, 0.1, 0.3996, 0.25, 0.25, 0.25])
        # Retry-After wins over the draw, capped at backoff_max_s.
        assert client.delay(1, 30.0) == 0.5
        assert client.delay(1, 0.2) == 0.2
    finally:
        client.close()


def test_retry_after_header_parsing() -> None:
    now = datetime(2015, 10, 21, 7, 28, 0, tzinfo=UTC)
    assert parse_retry_after("2") == 2.0
    assert parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT", now=now) == 0.0
    assert parse_retry_after("Wed, 21 Oct 2015 07:28:05 GMT", now=now) == 5.0
    assert parse_retry_after("Wed, 21 Oct 2015 07:27:00 GMT", now=now) == 0.0  # in the past
    assert parse_retry_after("soon") is None
    assert parse_retry_after(None) is None


# --- the circuit breaker, on a fake clock -----------------------------------------------


def test_breaker_opens_after_threshold_and_fails_fast() -> None:
    clock = FakeClock(start=100.0)
    breaker = CircuitBreaker(failure_threshold=3, reset_after_s=10.0, clock=clock)
    for _ in range(2):
        breaker.before_call()
        breaker.record_failure()
    assert breaker.state == "closed"
    breaker.record_success()  # a success resets the count
    assert breaker.consecutive_failures == 0
    for _ in range(3):
        breaker.before_call()
        breaker.record_failure()
    assert breaker.state == "open"
    clock.advance(4.0)
    with pytest.raises(ModelUnavailable) as opened:
        breaker.before_call()
    assert opened.value.message == (
        "circuit open: the model endpoint failed 3 times in a row; retrying after 6.0 s"
    )
    assert opened.value.retryable


def test_breaker_half_open_allows_one_trial_then_closes_or_reopens() -> None:
    clock = FakeClock(start=100.0)
    breaker = CircuitBreaker(failure_threshold=1, reset_after_s=10.0, clock=clock)
    breaker.record_failure()
    assert breaker.state == "open"
    clock.advance(10.0)
    breaker.before_call()  # the trial
    assert breaker.state == "half-open"
    with pytest.raises(ModelUnavailable):
        breaker.before_call()  # only one trial at a time
    breaker.record_failure()  # the trial failed: open for another 10 s
    assert breaker.state == "open"
    clock.advance(9.9)
    with pytest.raises(ModelUnavailable):
        breaker.before_call()
    clock.advance(0.1)
    breaker.before_call()
    breaker.record_success()
    assert breaker.state == "closed"
    breaker.before_call()


def test_breaker_replaces_a_trial_that_never_reported() -> None:
    clock = FakeClock(start=100.0)
    breaker = CircuitBreaker(failure_threshold=1, reset_after_s=5.0, clock=clock)
    breaker.record_failure()
    clock.advance(5.0)
    breaker.before_call()  # a trial whose caller dies without reporting
    clock.advance(5.0)
    breaker.before_call()  # a new trial is allowed
    breaker.record_success()
    assert breaker.state == "closed"


def test_breaker_is_thread_safe() -> None:
    breaker = CircuitBreaker(failure_threshold=10_000, reset_after_s=1.0)

    def hammer() -> None:
        for _ in range(1000):
            breaker.before_call()
            breaker.record_failure()

    threads = [threading.Thread(target=hammer) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert breaker.consecutive_failures == 4000
    assert breaker.state == "closed"


def test_breaker_rejects_bad_settings() -> None:
    with pytest.raises(ValueError, match="failure_threshold"):
        CircuitBreaker(failure_threshold=0)
    with pytest.raises(ValueError, match="reset_after_s"):
        CircuitBreaker(reset_after_s=0)
