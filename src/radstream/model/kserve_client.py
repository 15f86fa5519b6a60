"""A ``ModelClient`` that runs the model behind a KServe v2 / Triton HTTP endpoint.

Stages call ``predict_logits`` as they would on the in-process ``OnnxModel``; this client
sends the batch as a binary tensor (Triton's binary extension of the KServe v2 protocol)
over one keep-alive HTTP/1.1 connection pool, and returns the logits.

Failure handling, from the inside out:

* **Retries.** 503 and 429 (honouring ``Retry-After`` up to ``backoff_max_s``), 502, 504,
  connection errors and timeouts are retried up to ``retries`` times with RadStream's one
  backoff (``radstream.backoff.Backoff``, full jitter): before retry k a random wait in
  ``[0, min(backoff_max_s, backoff_base_s * 2**(k-1)))``.
  Other 4xx answers are never retried: they raise ``ModelRequestRejected`` (not retryable)
  with the server's error text. Other 5xx answers raise ``ModelUnavailable`` at once.
* **Circuit breaker.** Every attempt goes through a ``CircuitBreaker``. After
  ``failure_threshold`` failed attempts in a row it opens, and calls fail immediately with
  ``ModelUnavailable`` (no network attempt) until ``reset_after_s`` have passed; then one
  trial request decides whether it closes again. A breaker may be shared by several
  clients of the same endpoint.
* **Executor.** ``ModelUnavailable`` is transient: when retries are exhausted or the circuit
  is open, the pipeline's executor retries the stage later with its own backoff.

``info`` comes from the model metadata endpoint ``GET /v2/models/{name}``, fetched on first
use (through the same retries and breaker) and read by
``radstream.model.endpoint_metadata``; ``fallback_info`` fills in what a stock Triton does
not publish.

The wire format is ``radstream.kserve``'s; this module never imports the server.
"""

from __future__ import annotations

import random
import threading
import time
import uuid
from collections.abc import Callable, Mapping
from typing import ClassVar, Literal

import httpx
import numpy as np
import numpy.typing as npt

from radstream.backoff import Backoff, Random
from radstream.errors import (
    ConfigInvalid,
    ModelFileInvalid,
    ModelOutputInvalid,
    ModelUnavailable,
    RadStreamError,
)
from radstream.kserve import (
    HEADER_LENGTH,
    RETRY_AFTER,
    ProtocolError,
    decode_infer_response,
    encode_infer_request,
    error_message,
    infer_path,
    model_path,
    parse_header_length,
    parse_retry_after,
)
from radstream.model.circuit import CircuitBreaker
from radstream.model.client import checked_batch, checked_logits
from radstream.model.endpoint_metadata import info_from_endpoint_metadata
from radstream.model.metadata import ModelInfo

# Answers that mean "not now": retried with backoff.
RETRY_STATUSES = frozenset({429, 502, 503, 504})
# Statuses whose Retry-After header is honoured (capped at backoff_max_s).
_RETRY_AFTER_STATUSES = frozenset({429, 503})
# Server error text kept in exception messages.
_MAX_ERROR_TEXT = 500

Method = Literal["GET", "POST"]
Sleep = Callable[[float], None]


class ModelRequestRejected(RadStreamError):
    """The model endpoint refused the request (HTTP 4xx): sending it again cannot help."""

    code: ClassVar[str] = "MODEL_REQUEST_REJECTED"
    retryable: ClassVar[bool] = False
    hint: ClassVar[str] = (
        "The model endpoint refused the request; check model.endpoint, model.endpoint_model "
        "and model.token, and that the served model matches its declared input."
    )


class _Attempt:
    """How one failed attempt went: what to report and how long the server asked to wait."""

    __slots__ = ("problem", "retry_after_s", "status")

    def __init__(self, problem: str, status: int | None, retry_after_s: float | None) -> None:
        self.problem = problem
        self.status = status
        self.retry_after_s = retry_after_s


def _error_text(response: httpx.Response) -> str:
    """The server's error message: ``{"error": ...}`` of a KServe body, else the text."""
    try:
        text = response.text
    except Exception:  # undecodable bytes
        return f"<{len(response.content)} bytes>"
    message = error_message(text)
    text = " ".join((text if message is None else message).split())
    return text[:_MAX_ERROR_TEXT] if text else "(empty body)"


class KServeModelClient:
    """``ModelClient`` over HTTP for a model served with the KServe v2 protocol.

    Thread-safe: one ``httpx.Client`` (keep-alive connection pool) serves every call.
    Close it with ``close()`` or use it as a context manager.
    """

    def __init__(
        self,
        base_url: str,
        model_name: str,
        *,
        token: str | None = None,
        timeout_s: float = 10.0,
        connect_timeout_s: float = 2.0,
        retries: int = 3,
        backoff_base_s: float = 0.05,
        backoff_max_s: float = 1.0,
        breaker: CircuitBreaker | None = None,
        fallback_info: ModelInfo | None = None,
        model_version: str | None = None,
        rng: Random | None = None,
        sleep: Sleep = time.sleep,
    ) -> None:
        """Talk to ``{base_url}/v2/models/{model_name}``; nothing is sent until first use.

        ``timeout_s`` bounds each read, write and pool wait, ``connect_timeout_s`` each
        connection attempt; ``retries`` is the number of retries after the first attempt.
        ``token`` is sent as ``Authorization: Bearer``. ``model_version`` targets
        ``/versions/{v}`` (default: the server's choice). ``rng`` (uniform in [0, 1)) draws
        the backoff jitter and ``sleep`` waits; tests pin both. Raises ConfigInvalid for an
        unusable URL or model name and ValueError for out-of-range numbers.
        """
        url = base_url.strip().rstrip("/")
        if not url.startswith(("http://", "https://")):
            raise ConfigInvalid(
                f"model endpoint {base_url!r} must be an http:// or https:// URL "
                "(e.g. http://127.0.0.1:8000)"
            )
        if not model_name or "/" in model_name:
            raise ConfigInvalid(f"model name {model_name!r} must be a non-empty name without '/'")
        if isinstance(retries, bool) or not isinstance(retries, int) or retries < 0:
            raise ValueError(f"retries must be an integer >= 0, got {retries!r}")
        for label, value in (
            ("timeout_s", timeout_s),
            ("connect_timeout_s", connect_timeout_s),
            ("backoff_max_s", backoff_max_s),
        ):
            if not value > 0:
                raise ValueError(f"{label} must be > 0, got {value!r}")
        if not backoff_base_s >= 0:
            raise ValueError(f"backoff_base_s must be >= 0, got {backoff_base_s!r}")

        self._base_url = url
        self._model_name = model_name
        self._model_version = model_version
        self._metadata_path = model_path(model_name, model_version)
        self._infer_path = infer_path(model_name, model_version)
        self._retries = retries
        self._backoff = Backoff(base_s=float(backoff_base_s), max_s=float(backoff_max_s))
        self._breaker = breaker if breaker is not None else CircuitBreaker()
        self._fallback = fallback_info
        self._info: ModelInfo | None = None
        self._info_lock = threading.Lock()
        self._rng: Random = rng if rng is not None else random.Random().random
        self._sleep = sleep

        headers = {"Accept": "application/json, application/octet-stream"}
        if token:
            headers["Authorization"] = f"Bearer {token}"
        try:
            self._client = httpx.Client(
                base_url=url,
                headers=headers,
                timeout=httpx.Timeout(timeout_s, connect=connect_timeout_s),
                http1=True,
                http2=False,
                follow_redirects=False,
                # Idle connections are dropped before uvicorn's 5 s keep-alive timeout closes
                # them from the other side, which would cost a failed attempt.
                limits=httpx.Limits(keepalive_expiry=4.0),
                # No proxies or certificates from the environment: the endpoint is named
                # explicitly, and a proxy variable must not reroute it.
                trust_env=False,
            )
        except httpx.InvalidURL as exc:
            raise ConfigInvalid(f"model endpoint {base_url!r} is not a valid URL: {exc}") from exc

    # --- public ------------------------------------------------------------------------

    @property
    def endpoint(self) -> str:
        """The model's URL, ``{base_url}/v2/models/{name}[/versions/{v}]``."""
        return self._base_url + self._metadata_path

    @property
    def backoff(self) -> Backoff:
        """The backoff between retries (``Retry-After`` overrides it, capped at its max)."""
        return self._backoff

    @property
    def breaker(self) -> CircuitBreaker:
        """The circuit breaker every request goes through."""
        return self._breaker

    @property
    def info(self) -> ModelInfo:
        """Labels, input contract and identity; fetched from the endpoint on first use.

        Raises ModelUnavailable when the endpoint cannot be reached (nothing is cached, so
        the next use tries again), ModelRequestRejected when it refuses (e.g. unknown
        model), ModelFileInvalid when its metadata contradicts itself or the fallback.
        """
        info = self._info
        if info is not None:
            return info
        with self._info_lock:
            if self._info is None:
                response = self._request("GET", self._metadata_path, what="model metadata")
                self._info = self._info_from_metadata(response)
            return self._info

    def predict_logits(self, batch: npt.NDArray[np.float32]) -> npt.NDArray[np.float32]:
        """Return float32 logits ``[N, len(info.labels)]`` for a batch ``[N, C, S, S]``.

        Raises ValueError for a batch of the wrong shape or with non-finite values,
        ModelUnavailable when the endpoint cannot answer now (after retries, or at once
        while the circuit is open), ModelRequestRejected when it refuses the request and
        ModelOutputInvalid when the answer is malformed, wrongly shaped or not finite.
        """
        info = self.info
        array = checked_batch(batch, info)
        body, headers = encode_infer_request(
            {info.input_name: array},
            outputs=[info.output_name],
            binary=True,
            request_id=uuid.uuid4().hex,
        )
        response = self._request(
            "POST", self._infer_path, what="inference", content=body, headers=headers
        )
        try:
            header_length = parse_header_length(response.headers.get(HEADER_LENGTH))
            outputs = decode_infer_response(response.content, header_length)
        except ProtocolError as exc:
            raise ModelOutputInvalid(
                f"model endpoint {self.endpoint} sent an undecodable inference response: "
                f"{exc.message}",
                endpoint=self.endpoint,
            ) from exc
        if info.output_name not in outputs:
            raise ModelOutputInvalid(
                f"model endpoint {self.endpoint} answered without output {info.output_name!r} "
                f"(it sent {sorted(outputs)})",
                endpoint=self.endpoint,
            )
        return checked_logits(
            outputs[info.output_name],
            batch_size=array.shape[0],
            labels=len(info.labels),
            source=f"model endpoint {self.endpoint}",
            endpoint=self.endpoint,
        )

    def close(self) -> None:
        """Close the connection pool; the client cannot be used afterwards."""
        self._client.close()

    def __enter__(self) -> KServeModelClient:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"KServeModelClient({self.endpoint!r}, breaker={self._breaker.state})"

    # --- HTTP with retries and the breaker -------------------------------------------

    def _request(
        self,
        method: Method,
        path: str,
        *,
        what: str,
        content: bytes | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> httpx.Response:
        """Send with retries through the breaker; return a 2xx response or raise typed."""
        url = self._base_url + path
        attempts = self._retries + 1
        last: _Attempt | None = None
        for attempt in range(attempts):
            # Raises ModelUnavailable without a network attempt while the circuit is open.
            self._breaker.before_call()
            outcome = self._attempt(method, path, url, what, content, headers)
            if isinstance(outcome, httpx.Response):
                return outcome
            last = outcome
            self._breaker.record_failure()
            if attempt + 1 < attempts:
                self._sleep(self.delay(attempt + 1, outcome.retry_after_s))
        assert last is not None  # attempts >= 1
        raise ModelUnavailable(
            f"model endpoint {url} failed {attempts} attempt(s) at {what}; last: {last.problem}",
            endpoint=url,
            attempts=attempts,
            status=last.status,
        )

    def _attempt(
        self,
        method: Method,
        path: str,
        url: str,
        what: str,
        content: bytes | None,
        headers: Mapping[str, str] | None,
    ) -> httpx.Response | _Attempt:
        """One request: a 2xx response, a retryable failure, or a raised final error."""
        try:
            response = self._client.request(method, path, content=content, headers=headers)
        except httpx.TimeoutException as exc:
            return _Attempt(f"timed out ({type(exc).__name__}: {exc})", None, None)
        except (httpx.UnsupportedProtocol, httpx.ProxyError) as exc:
            self._breaker.record_success()  # a configuration error, not an endpoint failure
            raise ConfigInvalid(f"model endpoint {url}: {exc}") from exc
        except httpx.TransportError as exc:
            return _Attempt(
                f"no answer ({type(exc).__name__}: {exc or 'connection failed'})", None, None
            )

        status = response.status_code
        if 200 <= status < 300:
            self._breaker.record_success()
            return response
        text = _error_text(response)
        if status in RETRY_STATUSES:
            retry_after = (
                parse_retry_after(response.headers.get(RETRY_AFTER))
                if status in _RETRY_AFTER_STATUSES
                else None
            )
            return _Attempt(f"HTTP {status}: {text}", status, retry_after)
        if status >= 500:
            self._breaker.record_failure()
            raise ModelUnavailable(
                f"model endpoint {url} failed at {what} with HTTP {status}: {text}",
                endpoint=url,
                status=status,
            )
        # The endpoint is up and answering; the request itself is wrong.
        self._breaker.record_success()
        advice = ""
        if status in (401, 403):
            advice = " (check model.token)"
        elif status == 404:
            advice = f" (is model {self._model_name!r} loaded there? check model.endpoint_model)"
        raise ModelRequestRejected(
            f"model endpoint {url} rejected the {what} request with HTTP {status}: {text}{advice}",
            endpoint=url,
            status=status,
        )

    def delay(self, retry: int, retry_after_s: float | None = None) -> float:
        """The wait before retry number ``retry`` (1-based).

        The server's ``Retry-After`` when it sent one, else the backoff's full-jitter draw;
        never above ``backoff_max_s`` either way.
        """
        if retry_after_s is not None:
            return min(retry_after_s, self._backoff.max_s)
        return self._backoff.delay(retry, self._rng)

    # --- metadata ----------------------------------------------------------------------

    def _info_from_metadata(self, response: httpx.Response) -> ModelInfo:
        try:
            meta: object = response.json()
        except ValueError:
            raise ModelFileInvalid(
                f"model endpoint {self.endpoint}: the model metadata is not JSON",
                path=self.endpoint,
                endpoint=self.endpoint,
            ) from None
        return info_from_endpoint_metadata(
            meta,
            source=self.endpoint,
            model_name=self._model_name,
            model_version=self._model_version,
            fallback=self._fallback,
        )


__all__ = ["RETRY_STATUSES", "KServeModelClient", "ModelRequestRejected"]
