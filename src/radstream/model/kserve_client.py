"""A ``ModelClient`` that runs the model behind a KServe v2 / Triton HTTP endpoint.

Stages call ``predict_logits`` as they would on the in-process ``OnnxModel``; this client
sends the batch as a binary tensor (Triton's binary extension of the KServe v2 protocol)
over one keep-alive HTTP/1.1 connection pool, and returns the logits.

Failure handling, from the inside out:

* **Retries.** 503 and 429 (honouring ``Retry-After`` up to ``backoff_max_s``), 502, 504,
  connection errors and timeouts are retried up to ``retries`` times with full-jitter
  exponential backoff: a random wait in ``[0, min(backoff_max_s, backoff_base_s * 2**k)]``.
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
use (through the same retries and breaker). RadStream's own server publishes the model's
``radstream.*`` metadata there as ``parameters``; a server that does not (a stock Triton)
gets it from ``fallback_info`` (typically read from the same ONNX file the server loads),
or else TorchXRayVision defaults: ``TXRV_LABELS``, 224 x 224, one channel, [-1024, 1024].
"""

from __future__ import annotations

import email.utils
import json
import math
import random
import threading
import time
import uuid
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any, ClassVar
from urllib.parse import quote

import httpx
import numpy as np
import numpy.typing as npt

from radstream.errors import (
    ConfigInvalid,
    ModelFileInvalid,
    ModelOutputInvalid,
    ModelUnavailable,
    RadStreamError,
)
from radstream.model.circuit import CircuitBreaker
from radstream.model.client import checked_batch, checked_logits
from radstream.model.labels import TXRV_LABELS
from radstream.model.metadata import (
    KEY_CHANNELS,
    KEY_INPUT_RANGE,
    KEY_INPUT_SIZE,
    KEY_LABELS,
    KEY_NAME,
    KEY_VERSION,
    PREFIX,
    ModelInfo,
    _format_number,
    _parse_metadata,
)
from radstream.serving.protocol import (
    HEADER_LENGTH,
    ProtocolError,
    decode_infer_response,
    encode_infer_request,
    parse_header_length,
)

# Answers that mean "not now": retried with backoff.
RETRY_STATUSES = frozenset({429, 502, 503, 504})
# Statuses whose Retry-After header is honoured (capped at backoff_max_s).
_RETRY_AFTER_STATUSES = frozenset({429, 503})
# Server error text kept in exception messages.
_MAX_ERROR_TEXT = 500

DEFAULT_INPUT_SIZE = 224
DEFAULT_INPUT_MIN = -1024.0
DEFAULT_INPUT_MAX = 1024.0
DEFAULT_CHANNELS = 1


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
    try:
        body = json.loads(text)
    except ValueError:
        body = None
    if isinstance(body, dict) and isinstance(body.get("error"), str):
        text = body["error"]
    text = " ".join(text.split())
    return text[:_MAX_ERROR_TEXT] if text else "(empty body)"


def _retry_after_s(value: str | None) -> float | None:
    """Seconds from a ``Retry-After`` header (delta-seconds or HTTP date); None if absent."""
    if value is None:
        return None
    value = value.strip()
    try:
        seconds = float(value)
    except ValueError:
        try:
            when = email.utils.parsedate_to_datetime(value)
        except (TypeError, ValueError):
            return None
        if when.tzinfo is None:
            when = when.replace(tzinfo=UTC)
        seconds = (when - datetime.now(UTC)).total_seconds()
    if not math.isfinite(seconds):
        return None
    return max(0.0, seconds)


# Other spellings of a parameter: RadStream's server writes ``model_name``/``model_version``.
_PARAM_ALIASES: dict[str, tuple[str, ...]] = {
    "name": ("model_name",),
    "version": ("model_version",),
}


def _param(params: Mapping[str, Any], key: str) -> Any:
    """A RadStream parameter by ``radstream.key``, bare ``key`` or an alias; None if absent.

    KServe and Triton write parameters either as plain JSON values or wrapped as
    ``{"string_param": ...}`` / ``{"string_value": ...}`` / ``{"int64_param": ...}``;
    the wrapper is removed.
    """
    for name in (PREFIX + key, key, *_PARAM_ALIASES.get(key, ())):
        if name in params:
            value = params[name]
            if isinstance(value, dict) and len(value) == 1:
                (wrapped_key, wrapped), *_ = value.items()
                if wrapped_key.endswith(("_param", "_value")):
                    return wrapped
            return value
    return None


def _as_text(value: Any) -> str | None:
    if value is None:
        return None
    if isinstance(value, str):
        return value
    if isinstance(value, list | tuple):
        if len(value) == 2 and all(isinstance(v, int | float) for v in value):
            return f"{_format_number(value[0])},{_format_number(value[1])}"  # an input range
        return json.dumps(list(value))
    return str(value)


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
    ) -> None:
        """Talk to ``{base_url}/v2/models/{model_name}``; nothing is sent until first use.

        ``timeout_s`` bounds each read, write and pool wait, ``connect_timeout_s`` each
        connection attempt; ``retries`` is the number of retries after the first attempt.
        ``token`` is sent as ``Authorization: Bearer``. ``model_version`` targets
        ``/versions/{v}`` (default: the server's choice). Raises ConfigInvalid for an
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
        model_path = f"/v2/models/{quote(model_name, safe='')}"
        if model_version is not None:
            model_path += f"/versions/{quote(model_version, safe='')}"
        self._metadata_path = model_path
        self._infer_path = model_path + "/infer"
        self._retries = retries
        self._backoff_base_s = float(backoff_base_s)
        self._backoff_max_s = float(backoff_max_s)
        self._breaker = breaker if breaker is not None else CircuitBreaker()
        self._fallback = fallback_info
        self._info: ModelInfo | None = None
        self._info_lock = threading.Lock()
        self._rng = random.Random()
        self._sleep = time.sleep

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

    def _request(self, method: str, path: str, *, what: str, **kwargs: Any) -> httpx.Response:
        """Send with retries through the breaker; return a 2xx response or raise typed."""
        url = self._base_url + path
        attempts = self._retries + 1
        last: _Attempt | None = None
        for attempt in range(attempts):
            # Raises ModelUnavailable without a network attempt while the circuit is open.
            self._breaker.before_call()
            outcome = self._attempt(method, path, url, what, **kwargs)
            if isinstance(outcome, httpx.Response):
                return outcome
            last = outcome
            self._breaker.record_failure()
            if attempt + 1 < attempts:
                self._sleep(self._delay(attempt, outcome.retry_after_s))
        assert last is not None  # attempts >= 1
        raise ModelUnavailable(
            f"model endpoint {url} failed {attempts} attempt(s) at {what}; last: {last.problem}",
            endpoint=url,
            attempts=attempts,
            status=last.status,
        )

    def _attempt(
        self, method: str, path: str, url: str, what: str, **kwargs: Any
    ) -> httpx.Response | _Attempt:
        """One request: a 2xx response, a retryable failure, or a raised final error."""
        try:
            response = self._client.request(method, path, **kwargs)
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
                _retry_after_s(response.headers.get("Retry-After"))
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

    def _delay(self, attempt: int, retry_after_s: float | None) -> float:
        """Full jitter, or the server's Retry-After; never above backoff_max_s."""
        if retry_after_s is not None:
            return min(retry_after_s, self._backoff_max_s)
        ceiling = min(self._backoff_max_s, self._backoff_base_s * (2.0**attempt))
        return self._rng.uniform(0.0, ceiling)

    # --- metadata ----------------------------------------------------------------------

    def _info_from_metadata(self, response: httpx.Response) -> ModelInfo:
        source = self.endpoint

        def invalid(problem: str) -> ModelFileInvalid:
            return ModelFileInvalid(
                f"model endpoint {source}: {problem}", path=source, endpoint=source
            )

        try:
            meta = response.json()
        except ValueError:
            raise invalid("the model metadata is not JSON") from None
        if not isinstance(meta, dict):
            raise invalid("the model metadata is not a JSON object")
        inputs, outputs = meta.get("inputs"), meta.get("outputs")
        if not isinstance(inputs, list) or not isinstance(outputs, list) or not outputs:
            raise invalid("the model metadata lacks its 'inputs' and 'outputs' lists")
        if len(inputs) != 1 or not isinstance(inputs[0], dict):
            raise invalid(f"expected exactly one input (the image batch), found {len(inputs)}")
        params = meta.get("parameters")
        params = params if isinstance(params, dict) else {}
        fallback = self._fallback
        published = any(_param(params, key) is not None for key in ("labels", "input_range"))

        graph_input = inputs[0]
        in_shape = graph_input.get("shape")
        in_dims = in_shape if isinstance(in_shape, list) else []

        def static(index: int) -> int | None:
            dim = in_dims[index] if len(in_dims) == 4 else None
            return dim if isinstance(dim, int) and dim > 0 else None

        # Each field: the server's RadStream parameters, else the fallback, else defaults.
        source_info = None if published else fallback
        labels = _as_text(_param(params, "labels")) or json.dumps(
            list(source_info.labels if source_info else TXRV_LABELS)
        )
        input_range = _as_text(_param(params, "input_range")) or (
            f"{_format_number(source_info.input_min)},{_format_number(source_info.input_max)}"
            if source_info
            else f"{_format_number(DEFAULT_INPUT_MIN)},{_format_number(DEFAULT_INPUT_MAX)}"
        )
        size = _as_text(_param(params, "input_size")) or str(
            source_info.input_size if source_info else static(2) or DEFAULT_INPUT_SIZE
        )
        channels = _as_text(_param(params, "channels")) or str(
            source_info.channels if source_info else static(1) or DEFAULT_CHANNELS
        )
        versions = meta.get("versions")
        server_version = (
            self._model_version
            or (str(versions[-1]) if isinstance(versions, list) and versions else None)
            or "1"
        )
        name = _as_text(_param(params, "name")) or (
            source_info.name if source_info else str(meta.get("name") or self._model_name)
        )
        version = _as_text(_param(params, "version")) or (
            source_info.version if source_info else server_version
        )
        sha256 = _as_text(_param(params, "sha256")) or (source_info.sha256 if source_info else "")
        props = {
            KEY_NAME: name,
            KEY_VERSION: version,
            KEY_LABELS: labels,
            KEY_INPUT_SIZE: size,
            KEY_INPUT_RANGE: input_range,
            KEY_CHANNELS: channels,
        }
        parsed = _parse_metadata(props, source=source)

        input_name = graph_input.get("name")
        if not isinstance(input_name, str) or not input_name:
            raise invalid("the input has no name")
        if graph_input.get("datatype") != "FP32":
            raise invalid(
                f"input {input_name!r} has datatype {graph_input.get('datatype')!r}; "
                "RadStream sends FP32"
            )
        expected_in = [parsed["channels"], parsed["input_size"], parsed["input_size"]]
        if len(in_dims) != 4 or any(
            isinstance(d, int) and d >= 0 and d != e
            for d, e in zip(in_dims[1:], expected_in, strict=True)
        ):
            raise invalid(
                f"input {input_name!r} has shape {in_shape}, but the model is declared as "
                f"[N, {expected_in[0]}, {expected_in[1]}, {expected_in[2]}]"
            )

        names = [o.get("name") for o in outputs if isinstance(o, dict)]
        preferred = _as_text(_param(params, "output_name")) or (
            fallback.output_name if fallback else None
        )
        output_name = preferred if preferred in names else names[0] if names else None
        if not isinstance(output_name, str) or not output_name:
            raise invalid("the first output has no name")
        output = next(o for o in outputs if isinstance(o, dict) and o.get("name") == output_name)
        out_shape = output.get("shape")
        n_labels = len(parsed["labels"])
        if (
            not isinstance(out_shape, list)
            or len(out_shape) != 2
            or (isinstance(out_shape[1], int) and out_shape[1] >= 0 and out_shape[1] != n_labels)
        ):
            raise invalid(
                f"output {output_name!r} has shape {out_shape}, but {n_labels} labels are "
                f"declared, so [N, {n_labels}] is expected"
            )
        return ModelInfo(
            **parsed,
            input_name=input_name,
            output_name=output_name,
            sha256=sha256,
            path=source,
        )

    # --- checks ------------------------------------------------------------------------


__all__ = ["RETRY_STATUSES", "KServeModelClient", "ModelRequestRejected"]
