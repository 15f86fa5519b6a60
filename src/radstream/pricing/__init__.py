"""Prices and the cost of a stage: the shipped AWS price table and the billing rules.

Shared by both engines (the telemetry ``cost_usd`` column) and the benchmark (its per-image
estimate); it depends only on the ground layer.
"""

from radstream.pricing.stage import (
    GB,
    KB,
    STAGE_S3,
    Architecture,
    S3Requests,
    StateMachine,
    StorageClass,
    billed_lambda_ms,
    firehose_billed_bytes,
    gb_second_price,
    kinesis_on_demand_bytes,
    kinesis_payload_units,
    s3_class,
    stage_cost_usd,
    stage_transitions,
    unit_price,
)
from radstream.pricing.table import PRICING_FILE, SCHEMA_VERSION, Price, Pricing, load_pricing

__all__ = [
    "GB",
    "KB",
    "PRICING_FILE",
    "SCHEMA_VERSION",
    "STAGE_S3",
    "Architecture",
    "Price",
    "Pricing",
    "S3Requests",
    "StateMachine",
    "StorageClass",
    "billed_lambda_ms",
    "firehose_billed_bytes",
    "gb_second_price",
    "kinesis_on_demand_bytes",
    "kinesis_payload_units",
    "load_pricing",
    "s3_class",
    "stage_cost_usd",
    "stage_transitions",
    "unit_price",
]
