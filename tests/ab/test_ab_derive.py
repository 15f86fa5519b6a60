"""Projected arms from measured blocks: rank pairing, S3 repricing, request counts, memory."""

from __future__ import annotations

import pytest

from bench.test_bench_report_html import sample_dict
from radstream.ab.derive import (
    MeasuredBlock,
    memory_arm_blocks,
    ranked,
    reprice_storage,
    s3_requests_per_study,
)
from radstream.ab.projection import load_inputs
from radstream.ab.sweep import StageTiming
from radstream.bench.cost import CostItem
from radstream.bench.report import BenchReport
from radstream.pricing import load_pricing


def report(**changes: object) -> BenchReport:
    data = sample_dict(n=20)
    data.update(changes)
    return BenchReport.model_validate(data)


def timing(seconds: float) -> list[StageTiming]:
    return [StageTiming(cpu_s=seconds, wall_s=seconds)]


def test_rank_pairing_gives_the_slowest_study_the_most_stage_time() -> None:
    studies = [timing(0.3), timing(0.1), timing(0.2)]
    paired = ranked([50.0, 10.0, 30.0], studies)
    assert [p[0].wall_s for p in paired] == [0.3, 0.1, 0.2]
    # Fewer stage rows than latencies (a study without telemetry): spread over the ranks.
    paired = ranked([1.0, 2.0, 3.0, 4.0], [timing(0.1), timing(0.2)])
    assert [p[0].wall_s for p in paired] == [0.1, 0.1, 0.2, 0.2]
    assert ranked([1.0, 2.0], []) == [[], []]


def test_storage_repricing_keeps_counts_and_swaps_unit_prices() -> None:
    pricing = load_pricing()
    items = [
        {
            "name": "S3 PUT requests",
            "quantity": 1000,
            "unit": "request",
            "unit_price_usd": 0.0,
            "usd": 0.0,
        },
        {
            "name": "S3 GET requests",
            "quantity": 1000,
            "unit": "request",
            "unit_price_usd": 0.0,
            "usd": 0.0,
        },
        {
            "name": "S3 data upload",
            "quantity": 2.0,
            "unit": "GB",
            "unit_price_usd": 0.0,
            "usd": 0.0,
        },
        {
            "name": "Lambda compute",
            "quantity": 1.0,
            "unit": "GB-s",
            "unit_price_usd": 0.5,
            "usd": 0.5,
        },
    ]
    base = report()
    cost = base.cost.model_copy(update={"items": [CostItem.model_validate(i) for i in items]})
    r = base.model_copy(update={"cost": cost})
    succeeded = r.outcomes.succeeded
    standard = pricing.s3.standard
    express = pricing.s3.express
    assert express.upload_per_gb is not None
    want_standard = 0.5 + standard.put_per_thousand.usd + standard.get_per_thousand.usd
    want_express = (
        0.5
        + express.put_per_thousand.usd
        + express.get_per_thousand.usd
        + 2.0 * express.upload_per_gb.usd
    )
    assert reprice_storage(r, "standard", pricing) == pytest.approx(want_standard / succeeded)
    assert reprice_storage(r, "express", pricing) == pytest.approx(want_express / succeeded)


def test_requests_per_study_come_from_the_bill() -> None:
    r = report()  # 400 S3 PUTs over 20 valid + 10 injected executions
    assert s3_requests_per_study(r) == round(400 / 30)


def test_memory_projection_stretches_cpu_time_below_one_vcpu_only() -> None:
    inputs = load_inputs()
    r = report()
    lat = r.series.latencies_ms
    studies = [timing(0.1) for _ in lat]  # 100 ms of stage time per study
    blocks, labels, sweep = memory_arm_blocks(
        [MeasuredBlock(0, r, studies)],
        [512, 1769, 3008],
        load_pricing(),
        inputs,
        {512: "s", 1769: "m", 3008: "l"},
    )
    by_arm = {b.arm: b for b in blocks}
    extra_512 = 100.0 * (1769 / 512 - 1.0)
    assert by_arm["s"].latencies_ms == pytest.approx([v + extra_512 for v in lat])
    assert by_arm["m"].latencies_ms == pytest.approx(lat)
    assert by_arm["l"].latencies_ms == pytest.approx(lat)
    assert all(b.throughput_per_min is None for b in blocks)
    assert {p.arm for p in labels} == {"s", "m", "l"}
    assert sweep.fastest in (1769, 3008) and sweep.cheapest_meeting_slo is not None
