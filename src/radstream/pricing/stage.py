"""What one stage attempt would cost on AWS: the telemetry ``cost_usd`` column.

Both engines fill that column through :class:`radstream.stages.telemetry.StageRecorder`, so
the billing rules that a single attempt needs (Lambda rounding, on-demand Kinesis
rounding, Firehose rounding) live here, under the stages. The benchmark's per-image estimate
(:mod:`radstream.bench.cost`) is built on the same rules.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

from radstream.pipeline.definition import (
    INFER,
    PIPELINE,
    PREPARE,
    RECORD_FAILURE,
    STORE,
    VALIDATE,
)
from radstream.pricing.table import Price, Pricing, S3ClassPricing

Architecture = Literal["x86_64", "arm64"]
StorageClass = Literal["standard", "express"]
StateMachine = Literal["STANDARD", "EXPRESS"]

# Binary units, as in AWS's own worked examples (the S3 FAQ divides KB by 1,048,576).
KB = 1024
GB = 1024**3


def billed_lambda_ms(duration_ms: float, increment_ms: int = 1) -> int:
    """Lambda's billed duration: rounded up to the next increment, never below one."""
    return max(increment_ms, math.ceil(duration_ms / increment_ms) * increment_ms)


def kinesis_payload_units(record_bytes: float, unit_bytes: int = 25 * KB) -> int:
    """PUT payload units of one record: one per started 25 KB chunk (at least one)."""
    return max(1, math.ceil(record_bytes / unit_bytes))


def kinesis_on_demand_bytes(record_bytes: float, increment_bytes: int = KB) -> int:
    """Bytes on-demand Kinesis bills for one record in (and, as assumed, out): its size
    rounded up to the next 1 KB, never below one increment."""
    return max(1, math.ceil(record_bytes / increment_bytes)) * increment_bytes


def firehose_billed_bytes(record_bytes: float, increment_bytes: int = 5 * KB) -> int:
    """Bytes Firehose bills for one record: its size rounded up to the next 5 KB."""
    return max(1, math.ceil(record_bytes / increment_bytes)) * increment_bytes


def gb_second_price(pricing: Pricing, architecture: str) -> Price:
    """Lambda's price per GB-second for ``architecture``."""
    lam = pricing.lambda_
    return lam.x86_64_per_gb_second if architecture == "x86_64" else lam.arm64_per_gb_second


def unit_price(price: Price, per: int) -> float:
    """The price of a single unit from a price quoted per ``per`` units.

    Tables quote per 1,000 or per 1,000,000; bills carry the price of a single unit so that
    every line reads quantity x unit price = usd.
    """
    return price.usd / per


def s3_class(pricing: Pricing, storage_class: str) -> S3ClassPricing:
    """The request prices of ``storage_class`` (``standard`` or ``express``)."""
    return pricing.s3.standard if storage_class == "standard" else pricing.s3.express


@dataclass(frozen=True)
class S3Requests:
    """S3 requests of one stage attempt, by kind."""

    put: int = 0
    get: int = 0
    list: int = 0


# What each stage does on AWS besides running its Lambda: S3 requests by kind. The upload
# (image and sidecar PUTs) and the execution's start are charged to validate, the first
# stage, so that a study's records add up to what the benchmark's estimate counts for it.
STAGE_S3: dict[str, S3Requests] = {
    VALIDATE: S3Requests(put=2, get=1, list=1),
    PREPARE: S3Requests(put=1, get=1),
    INFER: S3Requests(get=1),
    STORE: S3Requests(put=1),
    RECORD_FAILURE: S3Requests(put=1),
}


def stage_transitions(stage: str) -> int:
    """STANDARD transitions charged to one attempt of ``stage`` in the telemetry column.

    Its own Task state, plus the states that are not Tasks: the duplicate-check Choice
    after the first stage, and the terminal Succeed/Fail state after a stage with no next
    (``store``, ``record_failure``). A study that fails in ``validate`` is charged one
    transition too many (it skips the Choice); the benchmark's estimate counts paths
    exactly from the rendered state machine (``radstream.aws.asl.states_entered``).
    """
    extra = 1 if stage == PIPELINE.start else 0
    try:
        terminal = PIPELINE.stage(stage).next is None
    except KeyError:
        terminal = False
    return 1 + extra + (1 if terminal else 0)


def stage_cost_usd(
    stage: str,
    duration_ms: float,
    pricing: Pricing,
    *,
    memory_mb: int = 2048,
    architecture: Architecture = "x86_64",
    storage_class: StorageClass = "standard",
    state_machine: StateMachine = "STANDARD",
    record_bytes: float = 600.0,
) -> float:
    """AWS cost of one stage attempt: its Lambda, its transition(s), its S3 requests and
    its own telemetry record (on-demand Kinesis in and out, then Firehose). This fills the
    telemetry ``cost_usd`` column, so SQL over the lake can sum costs per day, variant or
    stage. Fixed costs (the stream-hour) are not in it."""
    lam = pricing.lambda_
    gb_price = gb_second_price(pricing, architecture)
    usd = billed_lambda_ms(duration_ms, lam.duration_increment_ms) / 1000 * memory_mb / 1024
    usd = usd * gb_price.usd + unit_price(lam.requests_per_million, 1_000_000)
    sfn = pricing.step_functions
    if state_machine == "STANDARD":
        usd += stage_transitions(stage) * unit_price(sfn.standard_per_thousand_transitions, 1_000)
    elif stage == PIPELINE.start:
        usd += unit_price(sfn.express_requests_per_million, 1_000_000)
    s3 = s3_class(pricing, storage_class)
    requests = STAGE_S3.get(stage, S3Requests())
    usd += (requests.put + requests.list) * unit_price(s3.put_per_thousand, 1_000)
    usd += requests.get * unit_price(s3.get_per_thousand, 1_000)
    kinesis = pricing.kinesis
    streamed = kinesis_on_demand_bytes(record_bytes, kinesis.on_demand_record_increment_bytes)
    usd += (
        streamed
        / GB
        * (kinesis.on_demand_per_gb_ingested.usd + kinesis.on_demand_per_gb_retrieved.usd)
    )
    firehose = pricing.firehose
    billed = firehose_billed_bytes(record_bytes, firehose.record_increment_bytes)
    usd += billed / GB * firehose.ingested_per_gb.usd
    return usd
