"""Projected arms from measured blocks: Lambda memory sizes and S3 storage classes.

A projected scenario runs one configuration for real, block after block; each measured
block then gives one block per projected arm (same round), whose figures are computed by
:mod:`radstream.ab.projection` and :mod:`radstream.ab.sweep` and labelled as projections.

Two choices, both stated in the projection labels:

- The telemetry lake records each stage's duration, not its CPU time. RadStream's stages are
  CPU-bound and single-threaded, and read and write a local filesystem here, so the measured
  duration is taken as the CPU time (an upper bound when the machine was oversubscribed).
- A study's end-to-end latency and its stage rows are not joined by id in the bench report,
  so studies are paired by rank (the slowest study with the most stage time). That can only
  overstate the projected tail, never hide it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from radstream.ab.model import BlockData, Projection, SweepSummary
from radstream.ab.projection import (
    ProjectionInputs,
    lambda_projection,
    project_stage_s,
    storage_projection,
)
from radstream.ab.sweep import StageTiming, project_memory, summarise_sweep
from radstream.bench.report import BenchReport
from radstream.pricing import Pricing, s3_class, unit_price

PROJECTED_FIGURES = ("p50_ms", "p95_ms", "p99_ms", "cost_per_image_usd")
RANK_PAIRING = (
    "Studies' end-to-end latencies and their stage rows are paired by rank (slowest with "
    "most stage time), which can only overstate the projected tail."
)
DURATION_AS_CPU = (
    "Telemetry records stage durations, not CPU time; each measured duration is taken as CPU "
    "time (stages are CPU-bound and single-threaded, storage is a local filesystem here)."
)
NOT_PROJECTED = (
    "Throughput is not projected (Lambda scales out per request, so local workers say "
    "nothing about it): its rows have no value."
)


@dataclass(frozen=True)
class MeasuredBlock:
    """One block of the measured configuration: its round, report, and stage timings."""

    round: int
    report: BenchReport
    studies: list[list[StageTiming]]
    """Per measured study, its stage attempts (from the telemetry lake)."""


def _counts(report: BenchReport) -> dict[str, int]:
    o = report.outcomes
    return {
        "planned": o.valid,
        "measured": o.succeeded + o.failed,
        "valid": o.valid - o.not_sent,
        "succeeded": o.succeeded,
    }


def ranked(
    latencies: Sequence[float], studies: Sequence[Sequence[StageTiming]]
) -> list[list[StageTiming]]:
    """Stage timings for each latency (in the latencies' order), paired by rank."""
    if not studies:
        return [[] for _ in latencies]
    lat_rank = np.argsort(np.argsort(np.asarray(latencies, dtype=np.float64)))
    by_time = sorted(studies, key=lambda s: sum(t.wall_s for t in s))
    n, m = len(latencies), len(by_time)
    scale = (m - 1) / (n - 1) if n > 1 else 0.0
    return [list(by_time[round(int(r) * scale)]) for r in lat_rank]


def _other_cost_per_image(report: BenchReport, exclude_prefix: str) -> float:
    succeeded = report.outcomes.succeeded
    if succeeded <= 0:
        return 0.0
    other = sum(i.usd for i in report.cost.items if not i.name.startswith(exclude_prefix))
    return other / succeeded


def memory_arm_blocks(
    measured: Sequence[MeasuredBlock],
    sizes: Sequence[int],
    pricing: Pricing,
    inputs: ProjectionInputs,
    arm_of: dict[int, str],
) -> tuple[list[BlockData], list[Projection], SweepSummary]:
    """One projected block per memory size and measured block, their labels, and the sweep."""
    full = float(inputs.lambda_cpu.full_vcpu_mb)
    blocks: list[BlockData] = []
    pooled_lat: list[float] = []
    pooled_studies: list[list[StageTiming]] = []
    succeeded = 0
    other = 0.0
    for blk in measured:
        lat = blk.report.series.latencies_ms
        paired = ranked(lat, blk.studies)
        pooled_lat += lat
        pooled_studies += paired
        succeeded += blk.report.outcomes.succeeded
        other += _other_cost_per_image(blk.report, "Lambda") * blk.report.outcomes.succeeded
    for size in sizes:
        for blk in measured:
            lat = blk.report.series.latencies_ms
            paired = ranked(lat, blk.studies)
            projected = [
                v
                + 1000.0
                * sum(
                    project_stage_s(t.cpu_s, size, wall_s=t.wall_s, full_vcpu_mb=full) - t.wall_s
                    for t in stages
                )
                for v, stages in zip(lat, paired, strict=True)
            ]
            cost = None
            if lat and blk.report.outcomes.succeeded > 0:
                cost = project_memory(
                    paired,
                    lat,
                    size,
                    pricing,
                    succeeded=blk.report.outcomes.succeeded,
                    other_cost_per_image_usd=_other_cost_per_image(blk.report, "Lambda"),
                    full_vcpu_mb=full,
                ).cost_per_image_usd
            blocks.append(
                BlockData(
                    position=0,
                    round=blk.round,
                    arm=arm_of[size],
                    latencies_ms=projected,
                    throughput_per_min=None,
                    cost_per_image_usd=cost,
                    **_counts(blk.report),
                )
            )
    labels = [
        lambda_projection(figure, arm_of[size], size, inputs).model_copy(
            update={
                "assumptions": [
                    *lambda_projection(figure, arm_of[size], size, inputs).assumptions,
                    DURATION_AS_CPU,
                    RANK_PAIRING,
                    NOT_PROJECTED,
                ]
            }
        )
        for size in sizes
        for figure in PROJECTED_FIGURES
    ]
    points = [
        project_memory(
            pooled_studies,
            pooled_lat,
            size,
            pricing,
            succeeded=max(1, succeeded),
            other_cost_per_image_usd=other / max(1, succeeded),
            full_vcpu_mb=full,
        )
        for size in sizes
    ]
    return blocks, labels, summarise_sweep(points)


def reprice_storage(report: BenchReport, target: str, pricing: Pricing) -> float | None:
    """Cost per image of ``report``'s bill with its S3 items at ``target``'s prices.

    Request items keep their counts; per-GB items are kept at the target's price where the
    class has one and dropped where it has none (S3 Standard charges no per-GB request fee).
    """
    succeeded = report.outcomes.succeeded
    if succeeded <= 0:
        return None
    cls = s3_class(pricing, target)
    put, get = unit_price(cls.put_per_thousand, 1000), unit_price(cls.get_per_thousand, 1000)
    total = 0.0
    for item in report.cost.items:
        if not item.name.startswith("S3 "):
            total += item.usd
        elif item.name in ("S3 PUT requests", "S3 LIST requests"):
            total += item.quantity * put
        elif item.name == "S3 GET requests":
            total += item.quantity * get
        elif item.name == "S3 data upload" and cls.upload_per_gb is not None:
            total += item.quantity * cls.upload_per_gb.usd
        elif item.name == "S3 data retrieval" and cls.retrieval_per_gb is not None:
            total += item.quantity * cls.retrieval_per_gb.usd
    return total / succeeded


def s3_requests_per_study(report: BenchReport) -> int:
    """S3 requests per execution, from the bill's request counts (8 for a clean study)."""
    executions = report.n + report.invalid_injected
    if executions <= 0:
        return 0
    requests = sum(
        i.quantity
        for i in report.cost.items
        if i.name in ("S3 PUT requests", "S3 LIST requests", "S3 GET requests")
    )
    return round(requests / executions)


def storage_arm_blocks(
    measured: Sequence[MeasuredBlock],
    classes: dict[str, str],
    pricing: Pricing,
    inputs: ProjectionInputs,
) -> tuple[list[BlockData], list[Projection]]:
    """One projected block per storage class (arm → class) and measured block, and labels.

    Here the store is a local filesystem, whose requests are counted as taking no time: each
    study's latency grows by its S3 requests × the class's per-request latency.
    """
    blocks: list[BlockData] = []
    for arm, cls in classes.items():
        per_request = inputs.s3_request_latency_ms[cls].ms  # type: ignore[index]
        for blk in measured:
            n_req = s3_requests_per_study(blk.report)
            blocks.append(
                BlockData(
                    position=0,
                    round=blk.round,
                    arm=arm,
                    latencies_ms=[v + n_req * per_request for v in blk.report.series.latencies_ms],
                    throughput_per_min=None,
                    cost_per_image_usd=reprice_storage(blk.report, cls, pricing),
                    **_counts(blk.report),
                )
            )
    note = (
        "Requests of the local filesystem store count as 0 ms; each study's S3 requests "
        "(from the bill's counts) are assumed sequential."
    )
    labels = []
    for arm, cls in classes.items():
        for figure in PROJECTED_FIGURES:
            label = storage_projection(figure, arm, cls, inputs)  # type: ignore[arg-type]
            if figure == "cost_per_image_usd":
                label = label.model_copy(
                    update={
                        "method": f"the measured bill's request counts at {cls} prices "
                        "(pricing table)"
                    }
                )
            labels.append(
                label.model_copy(update={"assumptions": [*label.assumptions, note, NOT_PROJECTED]})
            )
    return blocks, labels
