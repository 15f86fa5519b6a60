"""Settings of one model server (``radstream model serve``) and its fixed constants."""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

from radstream.errors import ConfigInvalid

MODEL_VERSION = "1"
"""The only KServe model version this server has."""

INSTANCE_LOAD_TIMEOUT_S = 120.0
"""How long an instance may take to load the model before it counts as failed."""


@dataclass(frozen=True)
class ServeConfig:
    """Settings of one model server (``radstream model serve``).

    ``autoscale=(MIN, MAX)`` replaces the fixed ``instances`` count: the server starts
    ``instances`` clamped to MIN..MAX and scales within that range.
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
        for key, number in {
            "max_queue_delay_ms": self.max_queue_delay_ms,
            "scale_up_delay_s": self.scale_up_delay_s,
            "scale_down_delay_s": self.scale_down_delay_s,
        }.items():
            if not math.isfinite(number) or number < 0:
                raise bad(f"{key} must be a finite number >= 0, got {number!r}")
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
    def initial_instances(self) -> int:
        """Instances started at launch."""
        low, high = self.instance_range
        return min(max(self.instances, low), high)


__all__ = ["INSTANCE_LOAD_TIMEOUT_S", "MODEL_VERSION", "ServeConfig"]
