"""What the work measured locally would cost on AWS, itemised, from a price table.

RadStream runs on one machine, but its pipeline is the AWS one: an S3 upload (image, then
sidecar) raises an EventBridge event that starts one Step Functions execution per study;
each state (validate, prepare, infer, store, or record_failure on the failure path) is a
Lambda invocation; the tensor travels through an artifacts bucket; one telemetry record per
stage goes to Kinesis and on through Firehose into the lake. :func:`estimate_cost` prices
exactly that, from measured stage durations and counts, with a :class:`Pricing` table
(:func:`radstream.pricing.load_pricing`); the billing rules it shares with the telemetry
``cost_usd`` column are in :mod:`radstream.pricing`.

Every execution is paid for, failed ones included, but the total is divided by successful
images only: ``per_image_usd`` is what one delivered result costs. Step Functions STANDARD
transitions are counted on the state machine the template deploys: the states each path
(success, failure caught at a stage, duplicate) enters in the rendered definition
(:func:`radstream.aws.asl.states_entered`), plus one per retry. Time-based charges (the
on-demand Kinesis stream-hour) are listed apart as fixed monthly items.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from radstream.aws.asl import placeholder_state_machine, states_entered
from radstream.errors import ConfigInvalid
from radstream.pipeline.definition import INFER, PIPELINE, PREPARE
from radstream.pricing import (
    GB,
    Architecture,
    Pricing,
    StateMachine,
    StorageClass,
    billed_lambda_ms,
    firehose_billed_bytes,
    gb_second_price,
    kinesis_on_demand_bytes,
    s3_class,
    unit_price,
)
from radstream.schema.telemetry import StageStatus

ModelBackend = Literal["lambda", "endpoint"]

_ARCHITECTURES = ("x86_64", "arm64")
_STORAGE_CLASSES = ("standard", "express")
_STATE_MACHINES = ("STANDARD", "EXPRESS")
_BACKENDS = ("lambda", "endpoint")
_STORAGE_LABEL = {"standard": "S3 Standard", "express": "S3 Express One Zone"}
HOURS_PER_MONTH = 730
"""AWS's month in its pricing examples (365 x 24 / 12)."""


@dataclass(frozen=True)
class PathTransitions:
    """States entered on each path of the deployed state machine (STANDARD transitions)."""

    success: int
    duplicate: int
    failure_at: dict[str, int]
    """Failure caught at each main stage → states entered, ``RecordFailure`` and the
    ``Fail`` state included."""

    @property
    def worst_failure(self) -> int:
        """The longest failure path (a failure whose stage is not known is priced on it)."""
        return max(self.failure_at.values())


def path_transitions() -> PathTransitions:
    """Count the states each path enters in the state machine the template deploys."""
    definition = placeholder_state_machine(PIPELINE)
    return PathTransitions(
        success=len(states_entered(definition)),
        duplicate=len(states_entered(definition, duplicate=True)),
        failure_at={name: len(states_entered(definition, fail_at=name)) for name in PIPELINE.names},
    )


def failures_and_retries(attempts: Iterable[tuple[str, str]]) -> tuple[dict[str, int], int]:
    """From each attempt's (stage, telemetry status): failed executions by the main stage
    whose error was caught (status ``error``), and the attempts that were retried
    (status ``retry``), as :class:`CostInputs` takes them."""
    failed_at: dict[str, int] = {}
    retries = 0
    for stage, status in attempts:
        if status == StageStatus.RETRY:
            retries += 1
        elif status == StageStatus.ERROR and stage in PIPELINE.names:
            failed_at[stage] = failed_at.get(stage, 0) + 1
    return failed_at, retries


@dataclass(frozen=True, kw_only=True)
class CostInputs:
    """What was measured, and how the AWS deployment would be configured.

    ``stage_ms`` maps a stage name to the measured duration (ms) of *every* attempt of that
    stage over all executions: successful ones, the attempts that failed and were retried,
    and the attempt that failed an execution (``record_failure`` included when the failure
    path ran). Each is one Lambda invocation, billed once. ``failed_at`` counts failed
    executions by the stage whose error was caught; ``retries`` counts attempts that failed
    and were retried. Byte sizes are means over the run.
    """

    executions: int
    succeeded: int
    stage_ms: dict[str, list[float]]
    telemetry_records: int
    failed_at: dict[str, int] = field(default_factory=dict)
    """Failed executions by the main stage whose error was caught. Failed executions not
    listed here (no error record seen, e.g. an abandoned one) are priced on the longest
    failure path."""
    retries: int = 0
    """Attempts that failed and were retried: each is one more STANDARD transition."""
    duplicates: int = 0
    """Executions that ended in ``DuplicateIgnored`` (a duplicate S3 event): not in
    ``executions``; each costs its path's transitions (or one EXPRESS request)."""
    images_per_month: float | None = None
    """With it, the fixed monthly charges (the stream-hour) are spread over this many
    images and become per-image items; without it they are listed apart only."""
    telemetry_record_bytes: float = 600.0
    image_bytes_mean: float
    sidecar_bytes_mean: float = 500.0
    result_bytes: float = 2000.0
    """Size of the result (or failure) JSON object: 14 probabilities plus provenance."""
    tensor_bytes: int = 224 * 224 * 4
    lambda_memory_mb: int = 2048
    architecture: Architecture = "x86_64"
    storage_class: StorageClass = "standard"
    state_machine: StateMachine = "STANDARD"
    model_backend: ModelBackend = "lambda"
    endpoint_hourly_usd: float | None = None
    """Overrides the price table's default endpoint instance."""
    throughput_per_s: float | None = None
    """Measured successful images per second; needed to spread endpoint instance-hours."""

    def __post_init__(self) -> None:
        # Options come from the command line, so a bad one is the user's to fix
        # (ConfigInvalid); bad counts are a bug in the caller (ValueError).
        for name, value, allowed in (
            ("architecture", self.architecture, _ARCHITECTURES),
            ("storage_class", self.storage_class, _STORAGE_CLASSES),
            ("state_machine", self.state_machine, _STATE_MACHINES),
            ("model_backend", self.model_backend, _BACKENDS),
        ):
            if value not in allowed:
                raise ConfigInvalid(
                    f"{name} must be one of {', '.join(allowed)}, not {value!r}", field=name
                )
        if not 128 <= self.lambda_memory_mb <= 10240:
            raise ConfigInvalid(
                f"lambda_memory_mb must be 128-10240 (Lambda's range), not {self.lambda_memory_mb}",
                field="lambda_memory_mb",
            )
        if self.endpoint_hourly_usd is not None and not (
            math.isfinite(self.endpoint_hourly_usd) and self.endpoint_hourly_usd >= 0
        ):
            raise ConfigInvalid(
                f"endpoint_hourly_usd must be a price >= 0, not {self.endpoint_hourly_usd}",
                field="endpoint_hourly_usd",
            )
        if self.executions < 0 or not 0 <= self.succeeded <= self.executions:
            raise ValueError(
                f"need 0 <= succeeded ({self.succeeded}) <= executions ({self.executions})"
            )
        if self.telemetry_records < 0:
            raise ValueError(f"telemetry_records must be >= 0, not {self.telemetry_records}")
        if self.retries < 0 or self.duplicates < 0:
            raise ValueError("retries and duplicates must be >= 0")
        unknown = sorted(set(self.failed_at) - set(PIPELINE.names))
        if unknown:
            raise ValueError(f"failed_at names no main stage: {', '.join(unknown)}")
        if (
            any(n < 0 for n in self.failed_at.values())
            or sum(self.failed_at.values()) > self.executions - self.succeeded
        ):
            raise ValueError(
                f"failed_at ({self.failed_at}) must be >= 0 and add up to at most the "
                f"{self.executions - self.succeeded} failed executions"
            )
        if self.images_per_month is not None and not (
            math.isfinite(self.images_per_month) and self.images_per_month > 0
        ):
            raise ValueError(f"images_per_month must be > 0, not {self.images_per_month}")
        sizes = {
            "telemetry_record_bytes": self.telemetry_record_bytes,
            "image_bytes_mean": self.image_bytes_mean,
            "sidecar_bytes_mean": self.sidecar_bytes_mean,
            "result_bytes": self.result_bytes,
            "tensor_bytes": float(self.tensor_bytes),
        }
        for name, size in sizes.items():
            if not (math.isfinite(size) and size >= 0):
                raise ValueError(f"{name} must be a finite size >= 0, not {size}")
        for stage, durations in self.stage_ms.items():
            if any(not (math.isfinite(ms) and ms >= 0) for ms in durations):
                raise ValueError(f"stage_ms[{stage!r}] holds a negative or non-finite duration")
        if self.throughput_per_s is not None and not (
            math.isfinite(self.throughput_per_s) and self.throughput_per_s > 0
        ):
            raise ValueError(f"throughput_per_s must be > 0, not {self.throughput_per_s}")


class CostItem(BaseModel):
    """One line of the bill: ``usd == quantity * unit_price_usd``."""

    model_config = ConfigDict(frozen=True)

    name: str
    quantity: float
    unit: str
    unit_price_usd: float
    usd: float
    note: str = ""


class CostEstimate(BaseModel):
    """The itemised bill for the measured run, and what it assumed."""

    model_config = ConfigDict(frozen=True)

    items: list[CostItem]
    """Sorted by cost, the largest first."""
    total_usd: float
    per_image_usd: float | None
    """Total over successful images; None when nothing succeeded."""
    pricing_as_of: str
    assumptions: list[str] = Field(default_factory=list)
    fixed_monthly: list[CostItem] = Field(default_factory=list, exclude_if=lambda v: not v)
    """Time-based charges of the deployed stack per month, whatever is uploaded (the
    on-demand Kinesis stream-hour); not in ``total_usd`` unless an image rate spreads them.
    Left out of the JSON when empty, so a report written before it existed reads back
    unchanged."""


def _item(name: str, quantity: float, unit: str, unit_price_usd: float, note: str) -> CostItem:
    return CostItem(
        name=name,
        quantity=quantity,
        unit=unit,
        unit_price_usd=unit_price_usd,
        usd=quantity * unit_price_usd,
        note=note,
    )


def estimate_cost(inputs: CostInputs, pricing: Pricing) -> CostEstimate:
    """Price the measured run on AWS, item by item, the largest first.

    Counts are derived from the pipeline's fixed shape and the deployed state machine (see
    the ``assumptions`` of the result, which spell out each one); the sum of the items is
    ``total_usd`` and ``per_image_usd = total_usd / succeeded``.
    """
    succeeded = inputs.succeeded
    attempts = sum(len(durations) for durations in inputs.stage_ms.values())
    prepare_runs = len(inputs.stage_ms.get(PREPARE, []))
    infer_runs = len(inputs.stage_ms.get(INFER, []))
    items: list[CostItem] = []
    items += _lambda_items(inputs, pricing, attempts)
    items += _step_function_items(inputs, pricing)
    items += _s3_items(inputs, pricing, prepare_runs, infer_runs)
    items += _telemetry_items(inputs, pricing)
    fixed = _fixed_monthly(pricing)
    if inputs.images_per_month is not None:
        # A rate was given: each image carries its share of the month's fixed charges.
        share = succeeded / inputs.images_per_month
        items += [
            _item(
                f"{f.name} (share)",
                f.quantity * share,
                f.unit,
                f.unit_price_usd,
                f"{f.note}; {succeeded} of {inputs.images_per_month:g} images a month",
            )
            for f in fixed
        ]
    endpoint_item, endpoint_assumption = _endpoint(inputs, pricing)
    if endpoint_item is not None:
        items.append(endpoint_item)
    # Largest first: what dominates the bill is what a reader looks at.
    items.sort(key=lambda item: item.usd, reverse=True)
    total = sum(item.usd for item in items)
    return CostEstimate(
        items=items,
        total_usd=total,
        per_image_usd=total / succeeded if succeeded else None,
        pricing_as_of=pricing.as_of.isoformat(),
        assumptions=_assumptions(inputs, pricing, endpoint_assumption),
        fixed_monthly=fixed,
    )


def _lambda_items(inputs: CostInputs, pricing: Pricing, attempts: int) -> list[CostItem]:
    lam = pricing.lambda_
    memory_gb = inputs.lambda_memory_mb / 1024
    billed_ms = sum(
        billed_lambda_ms(ms, lam.duration_increment_ms)
        for durations in inputs.stage_ms.values()
        for ms in durations
    )
    endpoint_note = (
        "; infer is a thin client of the endpoint, billed for its measured duration"
        if inputs.model_backend == "endpoint"
        else ""
    )
    return [
        _item(
            "Lambda compute",
            billed_ms / 1000 * memory_gb,
            "GB-second",
            gb_second_price(pricing, inputs.architecture).usd,
            f"{billed_ms} ms billed over {attempts} stage attempts "
            f"(each rounded up to {lam.duration_increment_ms} ms) x {memory_gb:g} GB, "
            f"{inputs.architecture}{endpoint_note}",
        ),
        _item(
            "Lambda requests",
            attempts,
            "request",
            unit_price(lam.requests_per_million, 1_000_000),
            f"{attempts} stage attempts, each once: successful, retried and failing ones",
        ),
    ]


def _step_function_items(inputs: CostInputs, pricing: Pricing) -> list[CostItem]:
    sfn = pricing.step_functions
    executions = inputs.executions
    if inputs.state_machine == "STANDARD":
        paths = path_transitions()
        failed = executions - inputs.succeeded
        known = sum(inputs.failed_at.values())
        on_paths = (
            inputs.succeeded * paths.success
            + sum(n * paths.failure_at[stage] for stage, n in inputs.failed_at.items())
            + (failed - known) * paths.worst_failure
            + inputs.duplicates * paths.duplicate
        )
        by_stage = ", ".join(
            f"{n} failed at {stage} x {paths.failure_at[stage]}"
            for stage, n in inputs.failed_at.items()
            if n
        )
        parts = [f"{inputs.succeeded} succeeded x {paths.success}"]
        parts += [by_stage] if by_stage else []
        parts += [f"{failed - known} failed at an unknown stage x {paths.worst_failure}"] * (
            failed > known
        )
        parts += [f"{inputs.duplicates} duplicates x {paths.duplicate}"] * (inputs.duplicates > 0)
        parts += [f"{inputs.retries} retries x 1"]
        return [
            _item(
                "Step Functions transitions",
                on_paths + inputs.retries,
                "transition",
                unit_price(sfn.standard_per_thousand_transitions, 1_000),
                "states entered on each path of the deployed state machine: " + ", ".join(parts),
            )
        ]
    started = executions + inputs.duplicates
    total_ms = sum(sum(durations) for durations in inputs.stage_ms.values())
    mean_ms = total_ms / executions if executions else 0.0
    step = sfn.express_duration_increment_ms
    billed_exec_ms = max(step, math.ceil(mean_ms / step) * step) if executions else 0
    chunk_gb = sfn.express_memory_increment_mb / 1024
    return [
        _item(
            "Step Functions Express requests",
            started,
            "request",
            unit_price(sfn.express_requests_per_million, 1_000_000),
            "one per execution started",
        ),
        _item(
            "Step Functions Express duration",
            executions * billed_exec_ms / 1000 * chunk_gb,
            "GB-second",
            sfn.express_per_gb_second.usd,
            f"{executions} executions x {billed_exec_ms} ms (mean {mean_ms:.1f} ms "
            f"rounded up to {step} ms) x one {sfn.express_memory_increment_mb} MB chunk",
        ),
    ]


def _s3_items(
    inputs: CostInputs, pricing: Pricing, prepare_runs: int, infer_runs: int
) -> list[CostItem]:
    executions = inputs.executions
    s3 = s3_class(pricing, inputs.storage_class)
    label = _STORAGE_LABEL[inputs.storage_class]
    put_price = unit_price(s3.put_per_thousand, 1_000)
    items = [
        _item(
            "S3 PUT requests",
            3 * executions + prepare_runs,
            "request",
            put_price,
            f"{label}: image, sidecar and result/failure per execution; "
            "tensor artifact per prepare",
        ),
        _item(
            "S3 LIST requests",
            executions,
            "request",
            put_price,
            f"{label}: validate lists the study folder to find the image (PUT-tier price)",
        ),
        _item(
            "S3 GET requests",
            executions + prepare_runs + infer_runs,
            "request",
            unit_price(s3.get_per_thousand, 1_000),
            f"{label}: sidecar per execution; image per prepare; tensor per infer",
        ),
    ]
    threshold = s3.data_charge_threshold_bytes

    def charged(size: float) -> float:
        # Only the part of each request above the threshold is charged (0 today).
        return max(0.0, size - threshold)

    if s3.upload_per_gb is not None:
        upload_bytes = executions * (
            charged(inputs.image_bytes_mean)
            + charged(inputs.sidecar_bytes_mean)
            + charged(inputs.result_bytes)
        ) + prepare_runs * charged(inputs.tensor_bytes)
        items.append(
            _item(
                "S3 data upload",
                upload_bytes / GB,
                "GB",
                s3.upload_per_gb.usd,
                f"{label}: bytes of every PUT above {threshold} B",
            )
        )
    if s3.retrieval_per_gb is not None:
        retrieval_bytes = (
            executions * charged(inputs.sidecar_bytes_mean)
            + prepare_runs * charged(inputs.image_bytes_mean)
            + infer_runs * charged(inputs.tensor_bytes)
        )
        items.append(
            _item(
                "S3 data retrieval",
                retrieval_bytes / GB,
                "GB",
                s3.retrieval_per_gb.usd,
                f"{label}: bytes of every GET above {threshold} B",
            )
        )
    return items


def _telemetry_items(inputs: CostInputs, pricing: Pricing) -> list[CostItem]:
    kin = pricing.kinesis
    records, size = inputs.telemetry_records, inputs.telemetry_record_bytes
    streamed = kinesis_on_demand_bytes(size, kin.on_demand_record_increment_bytes)
    rounding = (
        f"{records} records x {streamed} B (record {size:g} B rounded up to "
        f"{kin.on_demand_record_increment_bytes} B)"
    )
    fh = pricing.firehose
    billed_record = firehose_billed_bytes(size, fh.record_increment_bytes)
    return [
        _item(
            "Kinesis on-demand data in",
            records * streamed / GB,
            "GB",
            kin.on_demand_per_gb_ingested.usd,
            rounding,
        ),
        _item(
            "Kinesis on-demand data out",
            records * streamed / GB,
            "GB",
            kin.on_demand_per_gb_retrieved.usd,
            f"read once by Firehose: {rounding}",
        ),
        _item(
            "Firehose ingestion",
            records * billed_record / GB,
            "GB",
            fh.ingested_per_gb.usd,
            f"{records} records x {billed_record} B billed "
            f"(record {size:g} B rounded up to {fh.record_increment_bytes} B)",
        ),
    ]


def _fixed_monthly(pricing: Pricing) -> list[CostItem]:
    hour = pricing.kinesis.on_demand_stream_hour
    return [
        _item(
            "Kinesis on-demand stream-hours",
            HOURS_PER_MONTH,
            "stream-hour",
            hour.usd,
            f"one ON_DEMAND telemetry stream, {HOURS_PER_MONTH} hours a month",
        )
    ]


def _endpoint(inputs: CostInputs, pricing: Pricing) -> tuple[CostItem | None, str]:
    if inputs.model_backend != "endpoint":
        return None, "Model runs inside the infer Lambda: no endpoint instance-hours."
    if inputs.endpoint_hourly_usd is not None:
        hourly, instance = inputs.endpoint_hourly_usd, "given hourly price"
    else:
        hourly = pricing.endpoint.default_hourly_usd
        instance = pricing.endpoint.default_instance
    if inputs.throughput_per_s is None:
        return None, (
            "Endpoint instance-hours NOT included: no measured throughput to spread "
            "them over; pass one to price the endpoint."
        )
    images_per_hour = inputs.throughput_per_s * 3600
    item = _item(
        "Endpoint instance-hours",
        inputs.succeeded / images_per_hour,
        "instance-hour",
        hourly,
        f"{instance}: {inputs.succeeded} images at {images_per_hour:g} images/hour "
        "(a fully used instance)",
    )
    return item, (
        f"Endpoint ({instance}, ${hourly:g}/hour) is fully used at the measured "
        f"throughput ({inputs.throughput_per_s:g} images/s): idle hours, "
        "autoscaling floors and redundancy are not included."
    )


def _assumptions(inputs: CostInputs, pricing: Pricing, endpoint_assumption: str) -> list[str]:
    fixed = (
        f"Fixed charges (the on-demand stream-hour, ${pricing.kinesis.on_demand_stream_hour.usd:g}"
        f" x {HOURS_PER_MONTH} h a month) are spread over {inputs.images_per_month:g} images "
        "a month."
        if inputs.images_per_month is not None
        else "Fixed charges (the on-demand stream-hour) are listed in fixed_monthly and NOT "
        "included in the per-image cost: no image rate was given to spread them over."
    )
    return [
        f"List prices for {pricing.region} in {pricing.currency} as of "
        f"{pricing.as_of.isoformat()}; free tiers, volume tiers and Savings Plans ignored.",
        "Every execution is priced, failed ones included; per_image_usd divides the total "
        "by successful images only.",
        "Each stage attempt (successful, retried or failing) is one Lambda invocation, "
        "billed once for its measured duration; init (cold start) time and invoke overhead "
        "were not measured.",
        (
            "Step Functions STANDARD: one transition per state entered on each path of the "
            "deployed state machine (Choice and the terminal Succeed/Fail states included), "
            "plus one per retry."
            if inputs.state_machine == "STANDARD"
            else "Step Functions EXPRESS: one request per execution; duration is the mean "
            "measured stage time per execution rounded up to 100 ms, in one 64 MB chunk: a "
            "lower bound."
        ),
        "S3 per execution: image, sidecar and outcome PUTs, a LIST and a sidecar GET; per "
        "prepare: image GET and tensor PUT; per infer: tensor GET. Storage (GB-month) is "
        "not included; DELETEs and in-region transfer are free.",
        "EventBridge: S3 events are AWS service events on the default bus, free.",
        "Telemetry: the ON_DEMAND Kinesis stream the template deploys, billed per GB in and "
        "per GB read by Firehose (each record rounded up to 1 KB), then Firehose per GB with "
        "5 KB rounding.",
        fixed,
        endpoint_assumption,
    ]
