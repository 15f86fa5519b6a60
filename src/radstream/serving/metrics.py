"""The server's counters and their Prometheus view, with Triton's ``nv_inference_*`` names."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Literal, Protocol

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from radstream.serving.config import MODEL_VERSION

FailureReason = Literal["REJECTED", "BAD_REQUEST", "UNAVAILABLE", "BACKEND"]
FAILURE_REASONS: tuple[FailureReason, ...] = ("REJECTED", "BAD_REQUEST", "UNAVAILABLE", "BACKEND")
"""Why a request failed, as the ``reason`` label of ``nv_inference_request_failure``."""


@dataclass
class Stats:
    """Counters, updated on the event loop thread only (so /metrics reads them consistently)."""

    success: int = 0
    failure: dict[FailureReason, int] = field(
        default_factory=lambda: dict.fromkeys(FAILURE_REASONS, 0)
    )
    inference_count: int = 0
    execution_count: int = 0
    request_us: float = 0.0
    queue_us: float = 0.0
    compute_us: float = 0.0
    batch_compute_us: float = 0.0
    instance_deaths: int = 0
    load_failures: int = 0
    scale_ups: int = 0
    scale_downs: int = 0


class ServerState(Protocol):
    """What the metrics read from a running server (``ServingApp`` provides it)."""

    @property
    def model_name(self) -> str:
        """The served model name (the ``model`` label)."""
        ...

    @property
    def stats(self) -> Stats:
        """The counters."""
        ...

    @property
    def queue_depth(self) -> int:
        """Requests waiting in the queue."""
        ...

    @property
    def instances(self) -> int:
        """Instances loaded."""
        ...

    @property
    def busy_instances(self) -> int:
        """Instances running a batch."""
        ...

    @property
    def target_instances(self) -> int:
        """Instances wanted."""
        ...


class Metrics(Collector):
    """Prometheus view of a server, with Triton's ``nv_inference_*`` metric names."""

    def __init__(self, state: ServerState) -> None:
        self._state = state

    def collect(self) -> Iterable[Metric]:
        """Every metric, read from the server's state at scrape time."""
        state = self._state
        stats = state.stats
        keys = ["model", "version"]
        labels = [state.model_name, MODEL_VERSION]

        def counter(name: str, doc: str, value: float) -> Metric:
            family = CounterMetricFamily(name, doc, labels=keys)
            family.add_metric(labels, value)
            return family

        def gauge(name: str, doc: str, value: float) -> Metric:
            family = GaugeMetricFamily(name, doc, labels=keys)
            family.add_metric(labels, value)
            return family

        yield counter(
            "nv_inference_request_success", "Successful inference requests", stats.success
        )
        failures = CounterMetricFamily(
            "nv_inference_request_failure",
            "Failed inference requests, by reason",
            labels=[*keys, "reason"],
        )
        for reason, count in stats.failure.items():
            failures.add_metric([*labels, reason], count)
        yield failures
        yield counter(
            "nv_inference_count", "Images inferred (batch dimension summed)", stats.inference_count
        )
        yield counter("nv_inference_exec_count", "Batches executed", stats.execution_count)
        yield counter(
            "nv_inference_request_duration_us",
            "Cumulative end-to-end request handling time in the server, microseconds",
            stats.request_us,
        )
        yield counter(
            "nv_inference_queue_duration_us",
            "Cumulative time requests waited in the queue, microseconds",
            stats.queue_us,
        )
        yield counter(
            "nv_inference_compute_infer_duration_us",
            "Cumulative compute time of the batches, counted once per request, microseconds",
            stats.compute_us,
        )
        yield counter(
            "radstream_batch_compute_duration_us",
            "Cumulative compute time of the batches, counted once per batch, microseconds",
            stats.batch_compute_us,
        )
        yield gauge(
            "nv_inference_pending_request_count",
            "Requests waiting in the queue",
            state.queue_depth,
        )
        yield gauge("radstream_model_instances", "Model instances loaded", state.instances)
        yield gauge("radstream_model_instances_busy", "Model instances busy", state.busy_instances)
        yield gauge(
            "radstream_model_instances_target", "Model instances wanted", state.target_instances
        )
        yield counter(
            "radstream_model_instance_deaths",
            "Instances that died unexpectedly",
            stats.instance_deaths,
        )
        yield counter(
            "radstream_model_instance_load_failures",
            "Instances that failed to load",
            stats.load_failures,
        )
        yield counter(
            "radstream_model_scale_ups", "Instances added by autoscaling", stats.scale_ups
        )
        yield counter(
            "radstream_model_scale_downs", "Instances removed by autoscaling", stats.scale_downs
        )


__all__ = ["FAILURE_REASONS", "FailureReason", "Metrics", "ServerState", "Stats"]
