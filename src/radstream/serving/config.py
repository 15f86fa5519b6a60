"""Settings of one model server (``radstream model serve``) and its fixed constants."""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

from radstream.errors import ConfigInvalid
from radstream.kserve import MAX_BODY_BYTES

MODEL_VERSION = "1"
"""The only KServe model version this server has."""

INSTANCE_LOAD_TIMEOUT_S = 120.0
"""How long an instance may take to load the model before it counts as failed."""

MAX_BATCH_SIZE_LIMIT = 64
"""Highest ``max_batch_size`` accepted. An instance's memory grows with the largest batch
it has run (ONNX Runtime keeps its arena): about 12 MB per 224x224 image for DenseNet121,
so 64 images stay under 1 GB above the instance's baseline."""

JSON_BYTES_PER_VALUE = 32
"""Room per tensor value in a JSON body (``-1023.4567260742188, `` is 21 bytes)."""

BODY_SLACK_BYTES = 1 << 20
"""Room in a body for the JSON header, ids and parameters besides the tensor values."""

FD_RESERVE = 64
"""File descriptors kept free for the server itself (instance pipes, logs, the model)
when the connection cap is derived from the process's descriptor limit."""

ACCEPT_BACKLOG = 128
"""Listen backlog. asyncio accepts up to this many connections in one go before any of
them is counted (and the idle ones evicted), so the derived connection cap leaves room
for two such bursts."""

DEFAULT_MAX_CONNECTIONS = 1000
"""Connection cap when the descriptor limit allows it."""


@dataclass(frozen=True)
class ServeConfig:
    """Settings of one model server (``radstream model serve``).

    ``autoscale=(MIN, MAX)`` replaces the fixed ``instances`` count: the server starts
    ``instances`` clamped to MIN..MAX and scales within that range.

    Connection limits: ``max_connections`` open at once (None: derived from the descriptor
    limit, see ``connection_limit``), ``header_timeout_s`` to send a request head,
    ``body_timeout_s`` to send the body (408 after it), ``keep_alive_s`` idle between
    requests (rounded up to whole seconds, as uvicorn takes it).
    """

    model_path: Path
    name: str = "radstream-densenet121"
    host: str = "127.0.0.1"
    port: int = 8000
    max_batch_size: int = 8
    max_queue_delay_ms: float = 5.0
    max_queue: int = 64
    instances: int = 1
    autoscale: tuple[int, int] | None = None
    scale_up_delay_s: float = 1.0
    scale_down_delay_s: float = 10.0
    token: str | None = None
    intra_op_threads: int = 1
    precision: str = "fp32"
    """``model.precision``: as the pipeline's workers load the model (see model/backends)."""
    runtime: str = "onnxruntime"
    """``model.runtime``."""
    allow_unverified: bool = False
    """``model.allow_unverified``: a reduced-precision file needs a passing fidelity report."""
    max_connections: int | None = None
    header_timeout_s: float = 10.0
    body_timeout_s: float = 30.0
    keep_alive_s: float = 5.0

    def __post_init__(self) -> None:
        def bad(message: str) -> ConfigInvalid:
            return ConfigInvalid(f"serve: {message}")

        if not self.name or "/" in self.name or self.name.strip() != self.name:
            raise bad(f"model name must be non-empty without '/' or spaces, got {self.name!r}")
        if not 0 <= self.port <= 65535:
            raise bad(f"port must be 0..65535 (0 picks a free one), got {self.port}")
        positive = {
            "max_batch_size": self.max_batch_size,
            "max_queue": self.max_queue,
            "instances": self.instances,
        }
        for key, value in positive.items():
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise bad(f"{key} must be an integer >= 1, got {value!r}")
        if self.max_batch_size > MAX_BATCH_SIZE_LIMIT:
            raise bad(
                f"max_batch_size must be at most {MAX_BATCH_SIZE_LIMIT} (an instance keeps "
                f"the memory of its largest batch), got {self.max_batch_size}"
            )
        if self.max_connections is not None and (
            isinstance(self.max_connections, bool)
            or not isinstance(self.max_connections, int)
            or self.max_connections < 2
        ):
            raise bad(f"max_connections must be an integer >= 2, got {self.max_connections!r}")
        for key, number in {
            "max_queue_delay_ms": self.max_queue_delay_ms,
            "scale_up_delay_s": self.scale_up_delay_s,
            "scale_down_delay_s": self.scale_down_delay_s,
        }.items():
            if not math.isfinite(number) or number < 0:
                raise bad(f"{key} must be a finite number >= 0, got {number!r}")
        for key, number in {
            "header_timeout_s": self.header_timeout_s,
            "body_timeout_s": self.body_timeout_s,
            "keep_alive_s": self.keep_alive_s,
        }.items():
            if not math.isfinite(number) or number <= 0:
                raise bad(f"{key} must be a finite number > 0, got {number!r}")
        if self.autoscale is not None:
            low, high = self.autoscale
            if not 1 <= low <= high:
                raise bad(
                    f"autoscale must be (MIN, MAX) with 1 <= MIN <= MAX, got {self.autoscale}"
                )
        if self.token is not None and not self.token.strip():
            raise bad("token must not be empty (leave it unset to disable authentication)")
        if self.intra_op_threads < 0:
            raise bad(f"intra_op_threads must be >= 0, got {self.intra_op_threads}")

    @property
    def instance_range(self) -> tuple[int, int]:
        """(MIN, MAX) instances: the autoscale range, or the fixed count twice."""
        return self.autoscale if self.autoscale is not None else (self.instances, self.instances)

    @property
    def connection_limit(self) -> int:
        """Open connections allowed: ``max_connections``, or derived from the descriptor
        limit (``RLIMIT_NOFILE`` less ``FD_RESERVE`` and two accept bursts, at most
        ``DEFAULT_MAX_CONNECTIONS``) so that accepting never runs out of descriptors."""
        if self.max_connections is not None:
            return self.max_connections
        soft = descriptor_limit()
        if soft is None:
            return DEFAULT_MAX_CONNECTIONS
        return max(2, min(DEFAULT_MAX_CONNECTIONS, soft - FD_RESERVE - 2 * ACCEPT_BACKLOG))

    @property
    def initial_instances(self) -> int:
        """Instances started at launch."""
        low, high = self.instance_range
        return min(max(self.instances, low), high)


def descriptor_limit() -> int | None:
    """The soft limit on open file descriptors of this process; None when unknown."""
    try:
        import resource
    except ImportError:  # not on POSIX
        return None
    soft, _hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    return None if soft == resource.RLIM_INFINITY else int(soft)


def body_limit(max_batch_size: int, values_per_image: int) -> int:
    """Largest request body (after decompression) worth reading for a batch of
    ``max_batch_size`` images of ``values_per_image`` values each, sent as JSON; never
    above the protocol's ``MAX_BODY_BYTES``."""
    needed = max_batch_size * values_per_image * JSON_BYTES_PER_VALUE + BODY_SLACK_BYTES
    return min(MAX_BODY_BYTES, needed)


__all__ = [
    "ACCEPT_BACKLOG",
    "BODY_SLACK_BYTES",
    "DEFAULT_MAX_CONNECTIONS",
    "FD_RESERVE",
    "INSTANCE_LOAD_TIMEOUT_S",
    "JSON_BYTES_PER_VALUE",
    "MAX_BATCH_SIZE_LIMIT",
    "MODEL_VERSION",
    "ServeConfig",
    "body_limit",
    "descriptor_limit",
]
