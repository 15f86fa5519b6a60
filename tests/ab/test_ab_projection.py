"""Projection arithmetic: CPU share by memory, Lambda cost, S3 request latency; the data file."""

from __future__ import annotations

from datetime import date

import pytest

from radstream.ab.projection import (
    cpu_share,
    lambda_cost_usd,
    lambda_projection,
    load_inputs,
    project_latencies_ms,
    project_stage_s,
    storage_delta_ms,
    storage_projection,
)
from radstream.pricing import load_pricing


def test_cpu_share_is_proportional_below_one_vcpu_and_capped_above() -> None:
    assert cpu_share(1769) == 1.0
    assert cpu_share(884.5) == pytest.approx(0.5)
    assert cpu_share(3008) == 1.0
    with pytest.raises(ValueError, match="positive"):
        cpu_share(0)


def test_stage_time_stretches_only_its_cpu_part() -> None:
    assert project_stage_s(0.4, 1769) == pytest.approx(0.4)
    assert project_stage_s(0.4, 884.5) == pytest.approx(0.8)
    # 0.1 s waiting stays; 0.4 s of CPU at a quarter vCPU takes 1.6 s.
    assert project_stage_s(0.4, 1769 / 4, wall_s=0.5) == pytest.approx(0.1 + 1.6)
    assert project_stage_s(0.4, 10240, wall_s=0.5) == pytest.approx(0.5)
    with pytest.raises(ValueError, match="cpu_s"):
        project_stage_s(0.6, 1024, wall_s=0.5)


def test_study_latencies_add_the_extra_cpu_time() -> None:
    out = project_latencies_ms([1000.0, 2000.0], [300.0, 500.0], 1769 / 2)
    assert out == pytest.approx([1300.0, 2500.0])
    with pytest.raises(ValueError, match="one CPU time"):
        project_latencies_ms([1.0], [1.0, 2.0], 512)


def test_lambda_cost_is_billed_gb_seconds_plus_requests() -> None:
    pricing = load_pricing()
    per_gb_s = pricing.lambda_.x86_64_per_gb_second.usd
    per_request = pricing.lambda_.requests_per_million.usd / 1e6
    # 1.0004 s bills as 1.001 s (1 ms steps); 1,024 MB is 1 GB.
    cost = lambda_cost_usd([1.0004, 0.5], 1024, pricing)
    assert cost == pytest.approx(1.501 * per_gb_s + 2 * per_request)
    assert lambda_cost_usd([1.0], 2048, pricing) == pytest.approx(2 * per_gb_s + per_request)
    arm = lambda_cost_usd([1.0], 1024, pricing, arch="arm64")
    assert arm == pytest.approx(pricing.lambda_.arm64_per_gb_second.usd + per_request)


def test_data_file_is_dated_cited_and_says_express_is_faster() -> None:
    inputs = load_inputs()
    assert inputs.as_of <= date.today()
    assert inputs.lambda_cpu.full_vcpu_mb == 1769
    assert inputs.lambda_cpu.default_sweep_mb == [512, 1024, 1769, 3008]
    sources = [*inputs.lambda_cpu.sources]
    for entry in inputs.s3_request_latency_ms.values():
        sources += entry.sources
    assert sources
    assert all(s.startswith("https://") for s in sources)
    express = inputs.s3_request_latency_ms["express"]
    standard = inputs.s3_request_latency_ms["standard"]
    assert express.ms < 10 <= standard.ms
    assert "Assumption" in express.statement
    assert "Assumption" in standard.statement


def test_storage_delta_and_labels() -> None:
    inputs = load_inputs()
    table = inputs.s3_request_latency_ms
    delta = storage_delta_ms(4, source="standard", target="express", inputs=inputs)
    assert delta == pytest.approx(4 * (table["express"].ms - table["standard"].ms))
    assert delta < 0
    label = storage_projection("p95_ms", "b", "express", inputs)
    assert label.sources == table["express"].sources
    assert str(inputs.as_of) in label.method
    mem = lambda_projection("p95_ms", "512", 512, inputs)
    assert "0.289 vCPU" in mem.method
    assert mem.assumptions[0] == inputs.lambda_cpu.statement


def test_storage_projection_moves_each_studys_requests() -> None:
    from radstream.ab.projection import project_storage_ms

    inputs = load_inputs()
    step = inputs.s3_request_latency_ms["express"].ms - inputs.s3_request_latency_ms["standard"].ms
    out = project_storage_ms(
        [1000.0, 1200.0], [4, 6], source="standard", target="express", inputs=inputs
    )
    assert out == pytest.approx([1000.0 + 4 * step, 1200.0 + 6 * step])
    back = project_storage_ms(out, [4, 6], source="express", target="standard", inputs=inputs)
    assert back == pytest.approx([1000.0, 1200.0])
    with pytest.raises(ValueError, match="one request count"):
        project_storage_ms([1.0], [1, 2], source="standard", target="express", inputs=inputs)
