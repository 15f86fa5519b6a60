"""What ``radstream bench`` measured: the :class:`BenchReport` and its parts.

:func:`radstream.bench.runner.run_bench` returns one; ``bench --json`` prints
:meth:`BenchReport.json_object` (its model dump without the raw series) and the HTML report
(:mod:`radstream.bench.report_html`) renders it as is. Field names are the JSON keys that
the README documents.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field, JsonValue

from radstream.bench.cost import CostEstimate, CostItem

QUEUE_WAIT = "queue_wait"
"""Queue wait's key among :attr:`BenchReport.stages`: not a stage, the wait before one."""

# Present in the JSON only when they say something: a run without --baseline has no
# baseline, a run whose telemetry arrived whole has no telemetry note.
_OMITTED_WHEN_NONE = ("baseline", "efficiency_note", "telemetry_note")


class _Part(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class LateSends(_Part):
    """Sends that went out more than 5 ms after they were due, and by how much."""

    count: int
    max_ms: float
    mean_ms: float


class OutcomeCounts(_Part):
    """Outcomes of the planned studies: valid ones, and the invalid ones injected on purpose."""

    valid: int
    not_sent: int
    succeeded: int
    failed: int
    lost: int
    success_rate: float | None
    invalid_injected: int
    invalid_rejected: int
    invalid_accepted_or_lost: int


class StageSummary(_Part):
    """Median and p95 time of one stage's successful attempts (or of queue wait)."""

    n: int
    p50_ms: float | None
    p95_ms: float | None


class SloResult(_Part):
    """One objective checked: ``value op limit`` held (``pass``) or not."""

    # "pass" is a Python keyword: the attribute is ``passed``, the JSON key ``pass``.
    model_config = ConfigDict(frozen=True, extra="forbid", populate_by_name=True)

    value: float | None
    limit: float
    op: str
    passed: bool = Field(alias="pass")
    description: str = ""


class LoadSettings(_Part):
    """The load that was applied."""

    mode: str  # "open" or "closed"
    rate: float | None
    poisson: bool
    concurrency: int | None
    shape: str | None
    format: str
    warmup: int


class Machine(_Part):
    """Where the benchmark ran."""

    cpu: str
    cores: int | None
    memory_gib: float | None
    os: str


class Manifest(_Part):
    """Enough to tell two runs apart and to reproduce one."""

    started_at: str
    command: str
    config_hash: str
    config: dict[str, JsonValue]
    radstream: str
    python: str
    packages: dict[str, str | None]
    machine: Machine
    model: dict[str, str]  # name, version, sha256; empty when a stack's model is unknown


class Baseline(_Part):
    """The in-memory limit measured by ``--baseline``."""

    images_per_s: float
    ms_per_image: float


class TimelinePoint(_Part):
    """Cumulative sends and completions at ``t_s`` seconds since the load started."""

    t_s: float
    sent: int
    completed: int
    in_flight: int


class ThroughputWindow(_Part):
    """Completions per minute over one equal-count window ending ``t_s`` into the run."""

    t_s: float
    per_min: float


class Series(_Part):
    """The raw series behind the figures, for the HTML report's charts."""

    latencies_ms: list[float]
    stage_ms: dict[str, list[float]]
    timeline: list[TimelinePoint]
    throughput_windows: list[ThroughputWindow]


class BenchReport(_Part):
    """Everything one benchmark run measured, and how."""

    n: int
    """Valid measured studies."""
    n_without_outcome: int
    p50_ms: float | None
    p90_ms: float | None
    p95_ms: float | None
    p99_ms: float | None
    p999_ms: float | None
    max_ms: float | None
    late_sends: LateSends
    queue_wait_ms: float | None
    throughput_per_min: float | None
    stable: bool
    success_rate: float | None
    outcomes: OutcomeCounts
    invalid_injected: int
    cost_per_image_usd: float | None
    cost_items: list[CostItem]
    cost: CostEstimate
    stages: dict[str, StageSummary]
    """Per stage as the pipeline names it, then ``queue_wait``."""
    slo: dict[str, SloResult]
    efficiency: float | None
    saturated: bool | None
    timed_out: bool
    load: LoadSettings
    manifest: Manifest
    series: Series
    baseline: Baseline | None = None
    efficiency_note: str | None = None
    telemetry_note: str | None = None

    @property
    def slo_met(self) -> bool:
        """Whether every objective passed (``bench`` exits 1 otherwise)."""
        return all(result.passed for result in self.slo.values())

    def json_object(self) -> dict[str, Any]:
        """The ``bench --json`` object: the report without its raw series."""
        omitted = {name for name in _OMITTED_WHEN_NONE if getattr(self, name) is None}
        return self.model_dump(mode="json", by_alias=True, exclude={"series", *omitted})
