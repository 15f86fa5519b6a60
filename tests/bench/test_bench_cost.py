"""The AWS cost estimate: the shipped price table, and hand-checkable arithmetic."""

from __future__ import annotations

import json
from dataclasses import replace
from datetime import date
from pathlib import Path
from typing import Any

import pytest

from radstream.aws.asl import render_state_machine, states_entered
from radstream.bench.cost import (
    CostEstimate,
    CostInputs,
    CostItem,
    estimate_cost,
    failures_and_retries,
)
from radstream.errors import ConfigInvalid
from radstream.pipeline.definition import PIPELINE, RetryPolicy
from radstream.pricing import (
    Pricing,
    firehose_billed_bytes,
    kinesis_payload_units,
    load_pricing,
    stage_cost_usd,
    stage_transitions,
)

KB = 1024
GB = 1024**3

# One successful study, as measured locally: validate, prepare, infer, store.
REALISTIC_STAGES = {"validate": [0.5], "prepare": [8.0], "infer": [60.0], "store": [1.0]}


def realistic(**changes: Any) -> CostInputs:
    """1 study, 4 stages at 0.5/8/60/1 ms, 2048 MB, a 1 MB JPEG, 4 telemetry records."""
    base = CostInputs(
        executions=1,
        succeeded=1,
        stage_ms=REALISTIC_STAGES,
        telemetry_records=4,
        image_bytes_mean=1024 * 1024,
    )
    return replace(base, **changes)


# The state machine as the template renders it (real-looking ARNs, a non-default policy):
# the cost model must count the same states on it.
RENDERED = render_state_machine(
    function_arns={
        n: f"arn:aws:lambda:eu-west-1:123456789012:function:rs-{n}"
        for n in (*PIPELINE.names, PIPELINE.failure_stage)
    },
    retry=RetryPolicy(max_attempts=3, base_s=1.0, max_s=4.0),
    artifacts_bucket="rs-artifacts",
)


def tiny_table() -> dict[str, Any]:
    """Round, made-up prices, so that every item can be checked by hand."""
    return {
        "as_of": "2000-01-01",
        "region": "test-region-1",
        "currency": "USD",
        "sources": ["https://example.com/prices"],
        "lambda": {
            "requests_per_million": {"usd": 1000.0},  # $0.001 per request
            "x86_64_per_gb_second": {"usd": 1.0},
            "arm64_per_gb_second": {"usd": 0.5},
            "duration_increment_ms": 1,
        },
        "step_functions": {
            "standard_per_thousand_transitions": {"usd": 1.0},  # $0.001 per transition
            "express_requests_per_million": {"usd": 1000.0},  # $0.001 per request
            "express_per_gb_second": {"usd": 1.0},
            "express_duration_increment_ms": 100,
            "express_memory_increment_mb": 64,
        },
        "s3": {
            "standard": {
                "put_per_thousand": {"usd": 1.0},  # $0.001 per PUT or LIST
                "get_per_thousand": {"usd": 0.1},  # $0.0001 per GET
            },
            "express": {
                "put_per_thousand": {"usd": 0.5},  # $0.0005 per PUT or LIST
                "get_per_thousand": {"usd": 0.05},  # $0.00005 per GET
                "upload_per_gb": {"usd": 1024.0 * 1024.0},  # $1 per KB uploaded
                "retrieval_per_gb": {"usd": 2 * 1024.0 * 1024.0},  # $2 per KB retrieved
                "data_charge_threshold_bytes": 0,
            },
        },
        "kinesis": {
            "on_demand_per_gb_ingested": {"usd": 1024.0 * 1024.0},  # $1 per KB in
            "on_demand_per_gb_retrieved": {"usd": 512.0 * 1024.0},  # $0.50 per KB out
            "on_demand_stream_hour": {"usd": 1.0},
            "on_demand_record_increment_bytes": 1 * KB,
        },
        "firehose": {
            "ingested_per_gb": {"usd": 1024.0 * 1024.0},  # $1 per KB ingested
            "record_increment_bytes": 5 * KB,
        },
        "endpoint": {"default_instance": "box", "instances": {"box": {"usd": 3.6}}},
    }


def tiny_pricing() -> Pricing:
    return Pricing.model_validate(tiny_table())


# Two executions, every attempt measured (as bench reads them from telemetry). A succeeds:
# validate 0.5, prepare 2.2, infer fails transiently after 5.0 ms and is retried (10 ms),
# store 1 ms. B fails in prepare (that failing attempt took 4.0 ms) after validate took
# 1.0 ms; record_failure 3 ms. 1 GB Lambdas; image 10 KB, sidecar 1 KB, result 1 KB,
# tensor 2 KB; 8 telemetry records of 600 B, one per attempt.
HAND = CostInputs(
    executions=2,
    succeeded=1,
    stage_ms={
        "validate": [0.5, 1.0],
        "prepare": [2.2, 4.0],
        "infer": [5.0, 10.0],
        "store": [1.0],
        "record_failure": [3.0],
    },
    failed_at={"prepare": 1},
    retries=1,
    telemetry_records=8,
    telemetry_record_bytes=600.0,
    image_bytes_mean=10 * KB,
    sidecar_bytes_mean=1 * KB,
    result_bytes=1 * KB,
    tensor_bytes=2 * KB,
    lambda_memory_mb=1024,
)


def by_name(estimate: CostEstimate) -> dict[str, CostItem]:
    return {item.name: item for item in estimate.items}


# --- the shipped table ------------------------------------------------------------------


def test_shipped_pricing_loads_dated_with_sources() -> None:
    pricing = load_pricing()
    assert pricing.region == "us-east-1"
    assert pricing.currency == "USD"
    assert isinstance(pricing.as_of, date)
    assert pricing.sources
    assert all(s.startswith("https://") for s in pricing.sources)
    assert pricing.lambda_.arm64_per_gb_second.usd < pricing.lambda_.x86_64_per_gb_second.usd
    assert pricing.endpoint.default_hourly_usd > 0
    # The express class carries its per-GB charges; standard has none.
    assert pricing.s3.express.upload_per_gb is not None
    assert pricing.s3.standard.upload_per_gb is None


def test_shipped_pricing_loads_from_an_explicit_path_too() -> None:
    shipped = Path(__file__).parents[2] / "src/radstream/pricing/pricing.json"
    assert load_pricing(shipped) == load_pricing()


# --- hand-computed examples -------------------------------------------------------------


def test_hand_computed_standard_example() -> None:
    est = estimate_cost(HAND, tiny_pricing())
    items = by_name(est)
    expected = {
        # Billed ms: 1 + 1 (validate) + 3 + 4 (prepare) + 5 + 10 (infer) + 1 + 3 = 28 ms
        # 28 ms x 1 GB = 0.028 GB-s x $1
        "Lambda compute": (0.028, 0.028),
        # 8 attempts, each once: the retried and the failing one included = 8 x $0.001
        "Lambda requests": (8, 0.008),
        # A: success path 6 states; B: failure caught at prepare, 5 states; 1 retry
        "Step Functions transitions": (12, 0.012),
        # 3 per execution (image, sidecar, result/failure) x 2 + 1 tensor per prepare = 8
        "S3 PUT requests": (8, 0.008),
        # 1 LIST per execution (validate finds the image) = 2 x $0.001
        "S3 LIST requests": (2, 0.002),
        # sidecar x 2 executions + image x 2 prepares + tensor x 2 infers = 6 x $0.0001
        "S3 GET requests": (6, 0.0006),
        # 8 records x 600 B rounded up to 1 KB = 8 KB in, at $1 per KB
        "Kinesis on-demand data in": (8 * KB / GB, 8.0),
        # the same 8 KB read once by Firehose, at $0.50 per KB
        "Kinesis on-demand data out": (8 * KB / GB, 4.0),
        # 8 records x 5 KB billed = 40 KB, at $1 per KB
        "Firehose ingestion": (40 * KB / GB, 40.0),
    }
    assert set(items) == set(expected)
    for name, (quantity, usd) in expected.items():
        assert items[name].quantity == pytest.approx(quantity), name
        assert items[name].usd == pytest.approx(usd), name
        assert items[name].usd == pytest.approx(items[name].quantity * items[name].unit_price_usd)
    total = sum(usd for _, usd in expected.values())
    assert est.total_usd == pytest.approx(total)
    # Both executions are paid for, but only the one success divides the bill.
    assert est.per_image_usd == pytest.approx(total / 1)
    assert est.pricing_as_of == "2000-01-01"
    # The stream-hour is time-based: listed apart, not in the total.
    assert [(f.name, f.quantity, f.usd) for f in est.fixed_monthly] == [
        ("Kinesis on-demand stream-hours", 730, 730.0)
    ]
    assert any("NOT included" in a and "stream-hour" in a for a in est.assumptions)


def test_each_failed_attempt_is_billed_once() -> None:
    """One success with one retried attempt, one failure: every attempt is one request."""
    inputs = CostInputs(
        executions=2,
        succeeded=1,
        # A: validate, prepare, infer (retried once), store. B: validate, then prepare fails.
        stage_ms={
            "validate": [1.0, 1.0],
            "prepare": [1.0, 1.0],
            "infer": [1.0, 1.0],
            "store": [1.0],
            "record_failure": [1.0],
        },
        failed_at={"prepare": 1},
        retries=1,
        telemetry_records=8,
        image_bytes_mean=KB,
        lambda_memory_mb=1024,
    )
    items = by_name(estimate_cost(inputs, tiny_pricing()))
    assert items["Lambda requests"].quantity == 8  # not 9: the failing attempt is counted once
    assert items["Lambda compute"].quantity == pytest.approx(8 * 0.001)  # 8 x 1 ms x 1 GB
    assert items["Step Functions transitions"].quantity == 6 + 5 + 1


def test_items_are_sorted_by_cost_largest_first() -> None:
    for est in (estimate_cost(HAND, tiny_pricing()), estimate_cost(realistic(), load_pricing())):
        costs = [item.usd for item in est.items]
        assert costs == sorted(costs, reverse=True)
        assert len(costs) > 3


@pytest.mark.parametrize("stage", ["validate", "prepare", "infer", "store"])
def test_a_failure_is_billed_the_states_its_path_enters(stage: str) -> None:
    entered = states_entered(RENDERED, fail_at=stage)
    est = estimate_cost(replace(HAND, succeeded=0, failed_at={stage: 2}, retries=0), tiny_pricing())
    assert by_name(est)["Step Functions transitions"].quantity == 2 * len(entered)


def test_success_duplicate_and_retries_are_billed_the_states_entered() -> None:
    success = len(states_entered(RENDERED))
    duplicate = len(states_entered(RENDERED, duplicate=True))
    assert (success, duplicate) == (6, 3)
    est = estimate_cost(
        replace(HAND, succeeded=2, failed_at={}, retries=3, duplicates=4), tiny_pricing()
    )
    transitions = by_name(est)["Step Functions transitions"].quantity
    assert transitions == 2 * success + 4 * duplicate + 3


def test_a_failure_at_an_unknown_stage_is_priced_on_the_longest_failure_path() -> None:
    longest = max(len(states_entered(RENDERED, fail_at=s)) for s in PIPELINE.names)
    est = estimate_cost(replace(HAND, failed_at={}, retries=0), tiny_pricing())
    assert by_name(est)["Step Functions transitions"].quantity == 6 + longest


def test_failures_and_retries_come_from_telemetry_statuses() -> None:
    attempts = [
        ("validate", "ok"),
        ("infer", "retry"),
        ("infer", "ok"),
        ("prepare", "error"),
        ("record_failure", "ok"),
        ("validate", "error"),
        ("prepare", "error"),
    ]
    assert failures_and_retries(attempts) == ({"prepare": 2, "validate": 1}, 1)


def test_an_image_rate_spreads_the_stream_hour_over_images() -> None:
    est = estimate_cost(replace(HAND, images_per_month=1000), tiny_pricing())
    share = by_name(est)["Kinesis on-demand stream-hours (share)"]
    # 1 success of 1000 images a month: 730 h / 1000 x $1
    assert share.usd == pytest.approx(0.73)
    assert est.total_usd == pytest.approx(estimate_cost(HAND, tiny_pricing()).total_usd + 0.73)


def test_express_state_machine_is_cheaper_for_a_typical_run() -> None:
    pricing = load_pricing()
    standard = estimate_cost(realistic(state_machine="STANDARD"), pricing)
    express = estimate_cost(realistic(state_machine="EXPRESS"), pricing)
    assert express.total_usd < standard.total_usd / 2


def test_hand_computed_express_example() -> None:
    est = estimate_cost(
        replace(HAND, storage_class="express", state_machine="EXPRESS"), tiny_pricing()
    )
    items = by_name(est)
    expected = {
        "Lambda compute": (0.028, 0.028),  # as in the standard example
        "Lambda requests": (8, 0.008),
        # one request per execution: 2 x $0.001
        "Step Functions Express requests": (2, 0.002),
        # measured total 0.5+1+2.2+4+5+10+1+3 = 26.7 ms over 2 executions = 13.35 ms mean,
        # rounded up to 100 ms; 2 x 0.1 s x 64 MB (0.0625 GB) = 0.0125 GB-s x $1
        "Step Functions Express duration": (0.0125, 0.0125),
        # counts as before, at the Express request prices
        "S3 PUT requests": (8, 0.004),
        "S3 LIST requests": (2, 0.001),
        "S3 GET requests": (6, 0.0003),
        # up: 2 x (image 10 + sidecar 1 + result 1 KB) + 2 tensors x 2 KB = 28 KB x $1
        "S3 data upload": (28 * KB / GB, 28.0),
        # down: sidecar 1 KB x 2 + image 10 KB x 2 + tensor 2 KB x 2 = 26 KB x $2
        "S3 data retrieval": (26 * KB / GB, 52.0),
        "Kinesis on-demand data in": (8 * KB / GB, 8.0),
        "Kinesis on-demand data out": (8 * KB / GB, 4.0),
        "Firehose ingestion": (40 * KB / GB, 40.0),
    }
    assert set(items) == set(expected)
    for name, (quantity, usd) in expected.items():
        assert items[name].quantity == pytest.approx(quantity), name
        assert items[name].usd == pytest.approx(usd), name
    assert est.total_usd == pytest.approx(sum(usd for _, usd in expected.values()))


def test_s3_threshold_charges_only_bytes_above_it() -> None:
    table = tiny_table()
    table["s3"]["express"]["data_charge_threshold_bytes"] = 1 * KB
    est = estimate_cost(replace(HAND, storage_class="express"), Pricing.model_validate(table))
    items = by_name(est)
    # Above 1 KB: image 9 KB x 2 + sidecar 0 + result 0 + tensor 1 KB x 2 = 20 KB uploaded
    assert items["S3 data upload"].usd == pytest.approx(20.0)
    # Above 1 KB: sidecar 0 + image 9 KB x 2 + tensor 1 KB x 2 = 20 KB retrieved, at $2 per KB
    assert items["S3 data retrieval"].usd == pytest.approx(40.0)


# --- options ----------------------------------------------------------------------------


def test_arm64_is_cheaper_than_x86_for_the_same_durations() -> None:
    pricing = load_pricing()
    x86 = estimate_cost(realistic(architecture="x86_64"), pricing)
    arm = estimate_cost(realistic(architecture="arm64"), pricing)
    assert by_name(arm)["Lambda compute"].usd < by_name(x86)["Lambda compute"].usd
    assert arm.total_usd < x86.total_usd
    # Only the duration price differs: same GB-seconds, same everything else.
    assert by_name(arm)["Lambda compute"].quantity == by_name(x86)["Lambda compute"].quantity
    assert arm.total_usd == pytest.approx(
        x86.total_usd - by_name(x86)["Lambda compute"].usd + by_name(arm)["Lambda compute"].usd
    )


def test_express_storage_changes_only_the_s3_items() -> None:
    pricing = load_pricing()
    standard = estimate_cost(realistic(storage_class="standard"), pricing)
    express = estimate_cost(realistic(storage_class="express"), pricing)
    rest = [i for i in standard.items if not i.name.startswith("S3")]
    assert rest == [i for i in express.items if not i.name.startswith("S3")]
    s3_standard = [i for i in standard.items if i.name.startswith("S3")]
    s3_express = [i for i in express.items if i.name.startswith("S3")]
    assert s3_standard != s3_express
    # Express adds the per-GB upload and retrieval charges.
    assert {i.name for i in s3_express} - {i.name for i in s3_standard} == {
        "S3 data upload",
        "S3 data retrieval",
    }


def test_endpoint_adds_instance_hours_inversely_with_throughput() -> None:
    pricing = tiny_pricing()
    on_lambda = estimate_cost(HAND, pricing)
    slow = estimate_cost(replace(HAND, model_backend="endpoint", throughput_per_s=2.0), pricing)
    fast = estimate_cost(replace(HAND, model_backend="endpoint", throughput_per_s=4.0), pricing)
    assert "Endpoint instance-hours" not in by_name(on_lambda)
    hours = by_name(slow)["Endpoint instance-hours"]
    # 1 success / (2 images/s x 3600) = 1/7200 hour x $3.60 = $0.0005
    assert hours.quantity == pytest.approx(1 / 7200)
    assert hours.usd == pytest.approx(0.0005)
    assert by_name(fast)["Endpoint instance-hours"].usd == pytest.approx(hours.usd / 2)
    # Everything else is unchanged: infer still runs as a (thin) Lambda.
    assert slow.total_usd == pytest.approx(on_lambda.total_usd + hours.usd)
    # A given hourly price overrides the table's default instance.
    custom = estimate_cost(
        replace(HAND, model_backend="endpoint", throughput_per_s=2.0, endpoint_hourly_usd=7.2),
        pricing,
    )
    assert by_name(custom)["Endpoint instance-hours"].usd == pytest.approx(0.001)


def test_endpoint_without_throughput_is_left_out_and_says_so() -> None:
    est = estimate_cost(replace(HAND, model_backend="endpoint"), tiny_pricing())
    assert "Endpoint instance-hours" not in by_name(est)
    assert any("NOT included" in a for a in est.assumptions)


def test_no_success_means_no_per_image_cost() -> None:
    est = estimate_cost(replace(HAND, succeeded=0), tiny_pricing())
    assert est.total_usd > 0
    assert est.per_image_usd is None


def test_realistic_example_is_a_fraction_of_a_cent_and_serialises() -> None:
    est = estimate_cost(realistic(), load_pricing())
    assert est.per_image_usd is not None
    assert 0 < est.per_image_usd < 0.001
    # Step Functions STANDARD: 6 states entered x $0.025 / 1,000 dominate.
    transitions = by_name(est)["Step Functions transitions"]
    assert transitions.usd == pytest.approx(6 * 0.025 / 1000)
    assert est.items[0] == transitions
    assert transitions.usd > est.total_usd / 2
    data = json.loads(est.model_dump_json())
    assert data["total_usd"] == pytest.approx(sum(i["usd"] for i in data["items"]))
    assert data["pricing_as_of"] == est.pricing_as_of


def test_invalid_options_are_refused() -> None:
    with pytest.raises(ConfigInvalid):
        realistic(lambda_memory_mb=64)
    with pytest.raises(ConfigInvalid):
        realistic(storage_class="glacier")
    with pytest.raises(ValueError, match="succeeded"):
        realistic(succeeded=2)
    with pytest.raises(ValueError, match="failed_at"):
        realistic(failed_at={"prepare": 1})  # nothing failed
    with pytest.raises(ValueError, match="failed_at"):
        replace(HAND, failed_at={"record_failure": 1})


# --- telemetry rounding -----------------------------------------------------------------


def test_firehose_rounds_each_record_up_to_5_kb() -> None:
    assert firehose_billed_bytes(600) == 5 * KB
    assert firehose_billed_bytes(6 * KB) == 10 * KB
    assert firehose_billed_bytes(5 * KB) == 5 * KB
    pricing = load_pricing()
    small = by_name(estimate_cost(realistic(telemetry_record_bytes=600), pricing))
    large = by_name(estimate_cost(realistic(telemetry_record_bytes=6 * KB), pricing))
    assert small["Firehose ingestion"].quantity == pytest.approx(4 * 5 * KB / GB)
    assert large["Firehose ingestion"].quantity == pytest.approx(4 * 10 * KB / GB)


def test_kinesis_counts_25_kb_payload_units() -> None:
    assert kinesis_payload_units(600) == 1
    assert kinesis_payload_units(25 * KB) == 1
    assert kinesis_payload_units(25 * KB + 1) == 2
    assert kinesis_payload_units(1024 * KB) == 41  # 1 MiB = 40.96 units, rounded up


# --- bad tables -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("content", "match"),
    [
        ("{not json", "not valid JSON"),
        ("[]", "does not match"),
        # a negative price
        (json.dumps({**tiny_table(), "firehose": {"ingested_per_gb": {"usd": -1}}}), "firehose"),
        # a misspelt key must not silently fall back to a default
        (json.dumps({**tiny_table(), "lamda": {}}), "lamda"),
        # no sources
        (json.dumps({**tiny_table(), "sources": []}), "sources"),
        # the default endpoint instance is not priced
        (
            json.dumps({**tiny_table(), "endpoint": {"default_instance": "x", "instances": {}}}),
            "endpoint",
        ),
    ],
)
def test_malformed_pricing_file_raises_config_invalid(
    tmp_path: Path, content: str, match: str
) -> None:
    path = tmp_path / "pricing.json"
    path.write_text(content, encoding="utf-8")
    with pytest.raises(ConfigInvalid, match=match) as info:
        load_pricing(path)
    assert str(path) in info.value.message


def test_missing_pricing_file_raises_config_invalid(tmp_path: Path) -> None:
    with pytest.raises(ConfigInvalid, match="cannot be read"):
        load_pricing(tmp_path / "absent.json")


# --- the telemetry cost_usd column ------------------------------------------------------


def test_stage_records_add_up_to_the_states_entered_on_the_success_path() -> None:
    # The cost_usd column charges each stage attempt its share of the transitions: on a
    # success (and on a failure after validate) they add up to the states entered.
    success = [s.name for s in PIPELINE.stages]
    assert sum(stage_transitions(s) for s in success) == len(states_entered(RENDERED))
    failed_in_prepare = ["validate", "prepare", PIPELINE.failure_stage]
    assert sum(stage_transitions(s) for s in failed_in_prepare) == len(
        states_entered(RENDERED, fail_at="prepare")
    )


def test_stage_cost_prices_telemetry_on_demand() -> None:
    pricing = tiny_pricing()
    small = stage_cost_usd("prepare", 1.0, pricing, memory_mb=1024, record_bytes=600)
    large = stage_cost_usd("prepare", 1.0, pricing, memory_mb=1024, record_bytes=1500)
    # 600 B and 1500 B round up to 1 and 2 KB on demand, at $1 + $0.50 per KB in and out;
    # both round up to the same 5 KB at Firehose.
    assert large - small == pytest.approx(1.5)
