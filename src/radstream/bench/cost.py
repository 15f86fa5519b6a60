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
images only: ``per_image_usd`` is what one delivered result costs.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from radstream.errors import ConfigInvalid
from radstream.pipeline.definition import INFER, PREPARE
from radstream.pricing import (
    GB,
    Architecture,
    Pricing,
    StateMachine,
    StorageClass,
    billed_lambda_ms,
    firehose_billed_bytes,
    gb_second_price,
    kinesis_payload_units,
    s3_class,
    unit_price,
)

ModelBackend = Literal["lambda", "endpoint"]

_ARCHITECTURES = ("x86_64", "arm64")
_STORAGE_CLASSES = ("standard", "express")
_STATE_MACHINES = ("STANDARD", "EXPRESS")
_BACKENDS = ("lambda", "endpoint")
_STORAGE_LABEL = {"standard": "S3 Standard", "express": "S3 Express One Zone"}


@dataclass(frozen=True, kw_only=True)
class CostInputs:
    """What was measured, and how the AWS deployment would be configured.

    ``stage_ms`` maps a stage name to the measured duration (ms) of each *successful*
    attempt of that stage, over all executions (``record_failure`` included when the
    failure path ran). Byte sizes are means over the run.
    """

    executions: int
    succeeded: int
    stage_ms: dict[str, list[float]]
    telemetry_records: int
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
    total_usd: float
    per_image_usd: float | None
    """Total over successful images; None when nothing succeeded."""
    pricing_as_of: str
    assumptions: list[str] = Field(default_factory=list)


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
    """Price the measured run on AWS, item by item.

    Counts are derived from the pipeline's fixed shape (see the ``assumptions`` of the
    result, which spell out each one); the sum of the items is ``total_usd`` and
    ``per_image_usd = total_usd / succeeded``.
    """
    executions, succeeded = inputs.executions, inputs.succeeded
    failed = executions - succeeded
    measured_attempts = sum(len(durations) for durations in inputs.stage_ms.values())
    # The attempt that failed each failed execution is not in stage_ms (only successful
    # attempts are), yet AWS bills its invocation and its state transition.
    failing_attempts = failed
    prepare_runs = len(inputs.stage_ms.get(PREPARE, []))
    infer_runs = len(inputs.stage_ms.get(INFER, []))
    items: list[CostItem] = []

    # --- Lambda -------------------------------------------------------------------------
    lam = pricing.lambda_
    memory_gb = inputs.lambda_memory_mb / 1024
    billed_ms = sum(
        billed_lambda_ms(ms, lam.duration_increment_ms)
        for durations in inputs.stage_ms.values()
        for ms in durations
    )
    gb_price = gb_second_price(pricing, inputs.architecture)
    endpoint_note = (
        "; infer is a thin client of the endpoint, billed for its measured duration"
        if inputs.model_backend == "endpoint"
        else ""
    )
    items.append(
        _item(
            "Lambda compute",
            billed_ms / 1000 * memory_gb,
            "GB-second",
            gb_price.usd,
            f"{billed_ms} ms billed over {measured_attempts} measured invocations "
            f"(each rounded up to {lam.duration_increment_ms} ms) x {memory_gb:g} GB, "
            f"{inputs.architecture}{endpoint_note}",
        )
    )
    items.append(
        _item(
            "Lambda requests",
            measured_attempts + failing_attempts,
            "request",
            unit_price(lam.requests_per_million, 1_000_000),
            f"{measured_attempts} measured stage attempts + {failing_attempts} failing attempts",
        )
    )

    # --- Step Functions -----------------------------------------------------------------
    sfn = pricing.step_functions
    if inputs.state_machine == "STANDARD":
        transitions = measured_attempts + failing_attempts + executions
        items.append(
            _item(
                "Step Functions transitions",
                transitions,
                "transition",
                unit_price(sfn.standard_per_thousand_transitions, 1_000),
                "one per state entered plus one per execution (its start); "
                "5 for a study that succeeds first time",
            )
        )
    else:
        items.append(
            _item(
                "Step Functions Express requests",
                executions,
                "request",
                unit_price(sfn.express_requests_per_million, 1_000_000),
                "one per execution",
            )
        )
        total_ms = sum(sum(durations) for durations in inputs.stage_ms.values())
        mean_ms = total_ms / executions if executions else 0.0
        step = sfn.express_duration_increment_ms
        billed_exec_ms = max(step, math.ceil(mean_ms / step) * step) if executions else 0
        chunk_gb = sfn.express_memory_increment_mb / 1024
        items.append(
            _item(
                "Step Functions Express duration",
                executions * billed_exec_ms / 1000 * chunk_gb,
                "GB-second",
                sfn.express_per_gb_second.usd,
                f"{executions} executions x {billed_exec_ms} ms (mean {mean_ms:.1f} ms "
                f"rounded up to {step} ms) x one {sfn.express_memory_increment_mb} MB chunk",
            )
        )

    # --- S3 -----------------------------------------------------------------------------
    s3 = s3_class(pricing, inputs.storage_class)
    label = _STORAGE_LABEL[inputs.storage_class]
    puts = 3 * executions + prepare_runs
    gets = executions + prepare_runs + infer_runs
    lists = executions
    put_price = unit_price(s3.put_per_thousand, 1_000)
    items.append(
        _item(
            "S3 PUT requests",
            puts,
            "request",
            put_price,
            f"{label}: image, sidecar and result/failure per execution; "
            "tensor artifact per prepare",
        )
    )
    items.append(
        _item(
            "S3 LIST requests",
            lists,
            "request",
            put_price,
            f"{label}: validate lists the study folder to find the image (PUT-tier price)",
        )
    )
    items.append(
        _item(
            "S3 GET requests",
            gets,
            "request",
            unit_price(s3.get_per_thousand, 1_000),
            f"{label}: sidecar per execution; image per prepare; tensor per infer",
        )
    )
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

    # --- telemetry ----------------------------------------------------------------------
    kin = pricing.kinesis
    units = kinesis_payload_units(inputs.telemetry_record_bytes, kin.payload_unit_bytes)
    items.append(
        _item(
            "Kinesis PUT payload units",
            inputs.telemetry_records * units,
            "PUT payload unit",
            unit_price(kin.put_payload_units_per_million, 1_000_000),
            f"{inputs.telemetry_records} records x {units} unit(s) of "
            f"{kin.payload_unit_bytes} B (record {inputs.telemetry_record_bytes:g} B)",
        )
    )
    fh = pricing.firehose
    billed_record = firehose_billed_bytes(inputs.telemetry_record_bytes, fh.record_increment_bytes)
    items.append(
        _item(
            "Firehose ingestion",
            inputs.telemetry_records * billed_record / GB,
            "GB",
            fh.ingested_per_gb.usd,
            f"{inputs.telemetry_records} records x {billed_record} B billed "
            f"(record {inputs.telemetry_record_bytes:g} B rounded up to "
            f"{fh.record_increment_bytes} B)",
        )
    )

    # --- model endpoint -----------------------------------------------------------------
    endpoint_assumption = "Model runs inside the infer Lambda: no endpoint instance-hours."
    if inputs.model_backend == "endpoint":
        if inputs.endpoint_hourly_usd is not None:
            hourly, instance = inputs.endpoint_hourly_usd, "given hourly price"
        else:
            hourly = pricing.endpoint.default_hourly_usd
            instance = pricing.endpoint.default_instance
        if inputs.throughput_per_s is None:
            endpoint_assumption = (
                "Endpoint instance-hours NOT included: no measured throughput to spread "
                "them over; pass one to price the endpoint."
            )
        else:
            images_per_hour = inputs.throughput_per_s * 3600
            items.append(
                _item(
                    "Endpoint instance-hours",
                    succeeded / images_per_hour,
                    "instance-hour",
                    hourly,
                    f"{instance}: {succeeded} images at {images_per_hour:g} images/hour "
                    "(a fully used instance)",
                )
            )
            endpoint_assumption = (
                f"Endpoint ({instance}, ${hourly:g}/hour) is fully used at the measured "
                f"throughput ({inputs.throughput_per_s:g} images/s): idle hours, "
                "autoscaling floors and redundancy are not included."
            )

    total = sum(item.usd for item in items)
    assumptions = [
        f"List prices for {pricing.region} in {pricing.currency} as of "
        f"{pricing.as_of.isoformat()}; free tiers, volume tiers and Savings Plans ignored.",
        "Every execution is priced, failed ones included; per_image_usd divides the total "
        "by successful images only.",
        "Each measured stage attempt is one Lambda invocation billed for its measured "
        "duration; init (cold start) time and invoke overhead were not measured. The attempt "
        "that failed a failed execution is billed as a request and a transition only, and "
        "transient retries that failed are not counted.",
        (
            "Step Functions STANDARD: one transition per state entered plus one per execution "
            "(its start)."
            if inputs.state_machine == "STANDARD"
            else "Step Functions EXPRESS: duration is the mean measured stage time per "
            "execution rounded up to 100 ms, in one 64 MB chunk: a lower bound."
        ),
        "S3 per execution: image, sidecar and outcome PUTs, a LIST and a sidecar GET; per "
        "prepare: image GET and tensor PUT; per infer: tensor GET. Storage (GB-month) is "
        "not included; DELETEs and in-region transfer are free.",
        "EventBridge: S3 events are AWS service events on the default bus, free.",
        "Telemetry: a provisioned Kinesis stream billed by PUT payload unit (shard-hours are "
        "time-based and not included), then Firehose per GB with 5 KB rounding.",
        endpoint_assumption,
    ]
    return CostEstimate(
        items=items,
        total_usd=total,
        per_image_usd=total / succeeded if succeeded else None,
        pricing_as_of=pricing.as_of.isoformat(),
        assumptions=assumptions,
    )
