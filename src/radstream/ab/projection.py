"""Projections for settings this machine cannot run: Lambda memory and S3 storage class.

Pure functions over a dated, cited data file (``projection_inputs.json`` next to this
module, in the manner of bench's ``pricing.json``). Every projected figure is labelled as
such by the caller (:class:`radstream.ab.model.Projection`), with the assumptions and sources
returned by :func:`lambda_projection` and :func:`storage_projection`.

- **CPU share.** Lambda gives a function CPU in proportion to its memory, one full vCPU at
  1,769 MB. A single-threaded stage that used ``cpu`` seconds of one core therefore takes
  ``cpu × 1769 / memory`` seconds below 1,769 MB, and ``cpu`` at or above it.
- **Cost.** Lambda bills GB-seconds (duration rounded up to the billing increment × memory in
  GB) plus a price per request, from the pricing table.
- **Storage class.** Each S3 request costs its class's per-request latency (assumptions, dated
  and cited in the data file).
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from datetime import date
from importlib import resources
from typing import Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from radstream.ab.model import Projection
from radstream.pricing import Pricing

INPUTS_FILE = "projection_inputs.json"
StorageClass = Literal["standard", "express"]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class LambdaCpu(_Strict):
    """Lambda's documented CPU allocation by memory size."""

    full_vcpu_mb: int = Field(gt=0)
    min_memory_mb: int = Field(gt=0)
    max_memory_mb: int = Field(gt=0)
    default_sweep_mb: list[int] = Field(min_length=1)
    statement: str
    assumptions: list[str]
    sources: list[str] = Field(min_length=1)


class RequestLatency(_Strict):
    """Per-request latency of one S3 storage class (an assumption, with its source)."""

    ms: float = Field(ge=0)
    statement: str
    sources: list[str] = Field(min_length=1)


class ProjectionInputs(_Strict):
    """The whole data file."""

    schema_version: int = 1
    as_of: date
    notes: list[str] = Field(default_factory=list)
    lambda_cpu: LambdaCpu
    s3_request_latency_ms: dict[StorageClass, RequestLatency]


def load_inputs() -> ProjectionInputs:
    """The projection inputs shipped inside the package."""
    text = resources.files("radstream.ab").joinpath(INPUTS_FILE).read_text("utf-8")
    return ProjectionInputs.model_validate(json.loads(text))


def cpu_share(memory_mb: float, *, full_vcpu_mb: float = 1769.0) -> float:
    """Fraction of one vCPU a function of ``memory_mb`` gets, capped at one (single thread)."""
    if memory_mb <= 0:
        raise ValueError(f"memory must be positive, got {memory_mb}")
    return min(1.0, memory_mb / full_vcpu_mb)


def project_stage_s(
    cpu_s: float, memory_mb: float, *, wall_s: float | None = None, full_vcpu_mb: float = 1769.0
) -> float:
    """Projected duration of a stage on Lambda: waiting time plus CPU time / CPU share.

    ``wall_s`` (default: ``cpu_s``) is the stage's measured duration; the part of it that
    was not CPU (I/O) is kept as measured.
    """
    wall = cpu_s if wall_s is None else wall_s
    if cpu_s < 0 or wall < cpu_s:
        raise ValueError(f"need 0 <= cpu_s <= wall_s, got cpu_s={cpu_s}, wall_s={wall}")
    return (wall - cpu_s) + cpu_s / cpu_share(memory_mb, full_vcpu_mb=full_vcpu_mb)


def project_latencies_ms(
    latencies_ms: Sequence[float],
    cpu_ms: Sequence[float],
    memory_mb: float,
    *,
    full_vcpu_mb: float = 1769.0,
) -> list[float]:
    """Each study's end-to-end latency with its Lambda CPU time stretched by the CPU share.

    ``cpu_ms[i]`` is the CPU time of study ``i``'s Lambda stages, measured here.
    """
    lat = np.asarray(latencies_ms, dtype=np.float64)
    cpu = np.asarray(cpu_ms, dtype=np.float64)
    if lat.shape != cpu.shape:
        raise ValueError("one CPU time per latency is needed")
    stretch = 1.0 / cpu_share(memory_mb, full_vcpu_mb=full_vcpu_mb) - 1.0
    return [float(v) for v in lat + cpu * stretch]


def lambda_cost_usd(
    durations_s: Sequence[float],
    memory_mb: float,
    pricing: Pricing,
    *,
    arch: Literal["x86_64", "arm64"] = "x86_64",
) -> float:
    """Lambda cost of invocations with these durations: GB-seconds × price, plus requests.

    Each duration is rounded up to the table's billing increment; 1 GB = 1,024 MB as in
    AWS's own examples.
    """
    table = pricing.lambda_
    step = table.duration_increment_ms
    per_gb_s = (table.x86_64_per_gb_second if arch == "x86_64" else table.arm64_per_gb_second).usd
    billed_s = sum(math.ceil(round(d * 1000.0, 6) / step) * step / 1000.0 for d in durations_s)
    requests = len(durations_s) * table.requests_per_million.usd / 1e6
    return billed_s * (memory_mb / 1024.0) * per_gb_s + requests


def storage_delta_ms(
    requests: int, *, source: StorageClass, target: StorageClass, inputs: ProjectionInputs
) -> float:
    """Change in a study's latency when its ``requests`` S3 requests move between classes."""
    table = inputs.s3_request_latency_ms
    return requests * (table[target].ms - table[source].ms)


def project_storage_ms(
    latencies_ms: Sequence[float],
    requests: Sequence[int],
    *,
    source: StorageClass,
    target: StorageClass,
    inputs: ProjectionInputs,
) -> list[float]:
    """Each study's latency with its ``requests[i]`` S3 requests moved to another class.

    The requests are assumed to be made one after another (RadStream's stages read their
    input, then write their output), so each one's latency change adds up.
    """
    if len(latencies_ms) != len(requests):
        raise ValueError("one request count per latency is needed")
    return [
        float(v) + storage_delta_ms(n, source=source, target=target, inputs=inputs)
        for v, n in zip(latencies_ms, requests, strict=True)
    ]


def lambda_projection(
    figure: str, arm: str, memory_mb: int, inputs: ProjectionInputs
) -> Projection:
    """The label of a figure projected for a Lambda memory size."""
    cpu = inputs.lambda_cpu
    share = cpu_share(memory_mb, full_vcpu_mb=cpu.full_vcpu_mb)
    return Projection(
        figure=figure,
        arm=arm,
        method=(
            f"measured per-stage CPU time at a CPU share of {share:.3f} vCPU "
            f"({memory_mb} MB; one vCPU at {cpu.full_vcpu_mb} MB), inputs as of {inputs.as_of}"
        ),
        assumptions=[cpu.statement, *cpu.assumptions],
        sources=list(cpu.sources),
    )


def storage_projection(
    figure: str, arm: str, storage: StorageClass, inputs: ProjectionInputs
) -> Projection:
    """The label of a figure projected for an S3 storage class."""
    entry = inputs.s3_request_latency_ms[storage]
    return Projection(
        figure=figure,
        arm=arm,
        method=f"measured latency with {entry.ms:g} ms per S3 request ({storage}), inputs as of {inputs.as_of}",
        assumptions=[entry.statement],
        sources=list(entry.sources),
    )
