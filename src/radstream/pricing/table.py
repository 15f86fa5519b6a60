"""The AWS price table behind the telemetry ``cost_usd`` column and ``radstream bench``.

Prices live in a data file (``pricing.json`` next to this module) rather than in code, so
that a user can bring a newer or region-specific table with ``--pricing FILE`` without
touching RadStream. This module only defines the file's shape and loads it: any file that
does not match the shape is refused as a whole with :class:`~radstream.errors.ConfigInvalid`,
because a cost estimate computed from a half-understood table would be silently wrong.
"""

from __future__ import annotations

import json
from datetime import date
from importlib import resources
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from radstream.errors import ConfigInvalid

PRICING_FILE = "pricing.json"
SCHEMA_VERSION = 1


class _Strict(BaseModel):
    # extra="forbid": a misspelt key in a user's table must fail loudly, not fall back to
    # a default price that the user believes they replaced.
    model_config = ConfigDict(extra="forbid", frozen=True)


class Price(_Strict):
    """One list price in USD, per the unit its field name states (e.g. per 1,000 requests)."""

    usd: float = Field(ge=0, allow_inf_nan=False)
    note: str = ""


class LambdaPricing(_Strict):
    """AWS Lambda: requests and duration (GB-seconds) by architecture."""

    requests_per_million: Price
    x86_64_per_gb_second: Price
    arm64_per_gb_second: Price
    duration_increment_ms: int = Field(default=1, ge=1)
    note: str = ""


class StepFunctionsPricing(_Strict):
    """AWS Step Functions: STANDARD per transition, EXPRESS per request and GB-second."""

    standard_per_thousand_transitions: Price
    express_requests_per_million: Price
    express_per_gb_second: Price
    express_duration_increment_ms: int = Field(default=100, ge=1)
    express_memory_increment_mb: int = Field(default=64, ge=1)
    note: str = ""


class S3ClassPricing(_Strict):
    """Request prices of one S3 storage class; per-GB data charges where the class has them."""

    put_per_thousand: Price
    get_per_thousand: Price
    upload_per_gb: Price | None = None
    retrieval_per_gb: Price | None = None
    data_charge_threshold_bytes: int = Field(default=0, ge=0)
    note: str = ""


class S3Pricing(_Strict):
    """S3 Standard and S3 Express One Zone."""

    standard: S3ClassPricing
    express: S3ClassPricing


class KinesisPricing(_Strict):
    """Kinesis Data Streams. The template deploys an ON_DEMAND stream, so the estimate bills
    on-demand data in and out per GB (each record rounded up to
    ``on_demand_record_increment_bytes``) and lists the per-stream hour as a fixed cost;
    the provisioned-mode prices are kept for comparison only."""

    on_demand_per_gb_ingested: Price
    on_demand_per_gb_retrieved: Price
    on_demand_stream_hour: Price
    on_demand_record_increment_bytes: int = Field(default=1024, ge=1)
    put_payload_units_per_million: Price | None = None
    payload_unit_bytes: int = Field(default=25 * 1024, ge=1)
    shard_hour: Price | None = None
    note: str = ""


class FirehosePricing(_Strict):
    """Amazon Data Firehose ingestion, each record rounded up to ``record_increment_bytes``."""

    ingested_per_gb: Price
    record_increment_bytes: int = Field(default=5 * 1024, ge=1)
    note: str = ""


class EndpointPricing(_Strict):
    """Hourly prices of instances that can host the model instead of Lambda."""

    default_instance: str = Field(min_length=1)
    instances: dict[str, Price] = Field(min_length=1)
    note: str = ""

    @model_validator(mode="after")
    def _default_is_listed(self) -> EndpointPricing:
        if self.default_instance not in self.instances:
            raise ValueError(
                f"default_instance {self.default_instance!r} is not one of the listed "
                f"instances ({', '.join(sorted(self.instances))})"
            )
        return self

    @property
    def default_hourly_usd(self) -> float:
        """Hourly price of the default instance."""
        return self.instances[self.default_instance].usd


class Pricing(_Strict):
    """A whole dated price table for one region (the shape of ``pricing.json``)."""

    # The JSON key is "lambda", a Python keyword; populate_by_name lets code and tests
    # build a table with ``lambda_=`` as well.
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    schema_version: int = SCHEMA_VERSION
    as_of: date
    region: str = Field(min_length=1)
    currency: str = Field(default="USD", pattern=r"^[A-Z]{3}$")
    sources: list[str] = Field(min_length=1)
    notes: list[str] = Field(default_factory=list)
    lambda_: LambdaPricing = Field(alias="lambda")
    step_functions: StepFunctionsPricing
    s3: S3Pricing
    kinesis: KinesisPricing
    firehose: FirehosePricing
    endpoint: EndpointPricing

    @model_validator(mode="after")
    def _checks(self) -> Pricing:
        if self.schema_version != SCHEMA_VERSION:
            raise ValueError(
                f"schema_version {self.schema_version} is not supported (expected {SCHEMA_VERSION})"
            )
        # Sources are how a reader checks a number; an entry that is not a link is useless.
        bad = [s for s in self.sources if not s.startswith(("https://", "http://"))]
        if bad:
            raise ValueError(f"sources must be URLs; not URLs: {bad}")
        return self


def load_pricing(path: Path | None = None) -> Pricing:
    """Load and validate a price table.

    ``path=None`` loads the table shipped inside the package. Any problem (missing or
    unreadable file, invalid JSON, a missing, misspelt or negative price) raises
    :class:`~radstream.errors.ConfigInvalid` naming the file and what to fix.
    """
    where = str(path) if path is not None else f"radstream/pricing/{PRICING_FILE} (shipped)"
    try:
        if path is None:
            text = resources.files("radstream.pricing").joinpath(PRICING_FILE).read_text("utf-8")
        else:
            text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigInvalid(
            f"pricing file {where} cannot be read ({exc}); pass --pricing with a readable "
            "UTF-8 JSON file, or leave --pricing out to use the shipped table",
            path=where,
        ) from exc
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ConfigInvalid(
            f"pricing file {where} is not valid JSON: {exc.msg} at line {exc.lineno} "
            f"column {exc.colno}",
            path=where,
        ) from exc
    try:
        return Pricing.model_validate(data)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err['loc']) or '(top level)'}: {err['msg']}"
            for err in exc.errors()
        )
        raise ConfigInvalid(
            f"pricing file {where} does not match the expected shape: {problems}. "
            f"Compare it with the shipped radstream/pricing/{PRICING_FILE}",
            path=where,
        ) from exc
