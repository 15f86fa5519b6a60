"""One validated settings object, from ``radstream.toml`` and ``RADSTREAM_*`` variables.

Precedence, highest first: explicit arguments (the CLI), environment variables
(``RADSTREAM_ENGINE__WORKERS=4``; nested sections use ``__``), the TOML file
(``./radstream.toml`` or the file named by ``RADSTREAM_CONFIG``), then defaults.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, Field, model_validator
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)


class ImagingSettings(BaseModel):
    """Guards applied before any pixel is decoded."""

    max_pixels: int = Field(default=50_000_000, ge=1)
    max_file_bytes: int = Field(default=64 * 1024 * 1024, ge=1)


class ModelSettings(BaseModel):
    """Which model runs, and how."""

    path: Path | None = Field(
        default=None, description="ONNX file; default: the stand-in built under data_dir/models"
    )
    intra_op_threads: int = Field(default=1, ge=1)
    endpoint: str | None = Field(
        default=None,
        description="KServe v2 / Triton base URL (http://host:port); unset: run in process",
    )
    endpoint_model: str = Field(
        default="densenet121-standin",
        description="model name there; `radstream model serve` serves a file under its own "
        "name, so this is the stand-in's unless you serve another model",
    )
    token: str | None = Field(default=None, description="bearer token for the endpoint")
    timeout_s: float = Field(default=10.0, gt=0)
    retries: int = Field(default=3, ge=0)
    breaker_failures: int = Field(default=5, ge=1, description="failures that open the circuit")
    breaker_reset_s: float = Field(default=10.0, gt=0)


class EngineSettings(BaseModel):
    """The durable local executor and its workers."""

    workers: int = Field(default_factory=lambda: os.cpu_count() or 1, ge=1)
    lease_s: float = Field(default=30.0, gt=0, description="a worker's claim on an execution")
    max_stage_attempts: int = Field(default=5, ge=1, description="per stage, transient errors")
    max_takeovers: int = Field(default=3, ge=0, description="worker deaths before giving up")
    retry_base_s: float = Field(default=0.2, gt=0)
    retry_max_s: float = Field(default=5.0, gt=0)
    image_wait_s: float = Field(
        default=30.0, ge=0, description="wait for an image after its sidecar"
    )
    poll_s: float = Field(default=0.005, gt=0, description="idle poll interval of a worker")
    outage_budget_s: float = Field(
        default=600.0,
        gt=0,
        description="how long a study keeps retrying an unavailable model before it fails",
    )
    fsync: bool = Field(
        default=False, description="fsync objects: survive power loss, not only crashes"
    )


class TelemetrySettings(BaseModel):
    """Buffered telemetry into the Parquet lake."""

    flush_rows: int = Field(default=512, ge=1)
    flush_s: float = Field(default=2.0, gt=0)
    pseudonymise: bool = Field(default=False, description="replace study ids by keyed hashes")
    pseudonym_key: str = Field(default="", description="HMAC key; required when pseudonymising")
    config_id: str = "default"
    variant: str | None = None

    @model_validator(mode="after")
    def _key_when_pseudonymising(self) -> TelemetrySettings:
        if self.pseudonymise and not self.pseudonym_key:
            raise ValueError(
                "telemetry.pseudonymise needs telemetry.pseudonym_key "
                "(set RADSTREAM_TELEMETRY__PSEUDONYM_KEY to a secret)"
            )
        return self


class CostSettings(BaseModel):
    """How the work would be deployed on AWS, for the cost column and the benchmark."""

    memory_mb: int = Field(default=2048, ge=128, le=10240, description="Lambda memory")
    architecture: Literal["x86_64", "arm64"] = "x86_64"
    storage_class: Literal["standard", "express"] = "standard"
    state_machine: Literal["STANDARD", "EXPRESS"] = "STANDARD"
    pricing: Path | None = Field(default=None, description="pricing JSON; default: shipped")


class AwsSettings(BaseModel):
    """Where the AWS backend lives. The CLI reads ``region``/``endpoint_url``; the Lambda
    handlers read the rest from the environment the stack template sets."""

    region: str = Field(default="us-east-1", description="AWS region of the stack")
    endpoint_url: str | None = Field(
        default=None, description="send every AWS call here (an emulator such as ministack)"
    )
    images_bucket: str = ""
    results_bucket: str = ""
    artifacts_bucket: str = ""
    tensor_bucket: str = Field(default="", description="artifacts, or the S3 Express bucket")
    telemetry_stream: str = ""
    model_key: str = Field(default="", description="ONNX model key in the artifacts bucket")
    preprocessing: str = Field(
        default="", description="the model's preprocessing as JSON (set by `aws deploy`)"
    )
    telemetry_flush_s: float = Field(
        default=2.0, gt=0, description="the most a handler waits for Kinesis before returning"
    )


class Settings(BaseSettings):
    """Everything RadStream can be told."""

    model_config = SettingsConfigDict(
        env_prefix="RADSTREAM_", env_nested_delimiter="__", extra="ignore"
    )

    data_dir: Path = Path(".radstream")
    imaging: ImagingSettings = Field(default_factory=ImagingSettings)
    model: ModelSettings = Field(default_factory=ModelSettings)
    engine: EngineSettings = Field(default_factory=EngineSettings)
    telemetry: TelemetrySettings = Field(default_factory=TelemetrySettings)
    cost: CostSettings = Field(default_factory=CostSettings)
    aws: AwsSettings = Field(default_factory=AwsSettings)

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        """Arguments, then environment, then the TOML file."""
        toml_file = Path(os.environ.get("RADSTREAM_CONFIG", "radstream.toml"))
        return (init_settings, env_settings, TomlConfigSettingsSource(settings_cls, toml_file))

    @property
    def models_dir(self) -> Path:
        """Where built and imported models are cached."""
        return self.data_dir / "models"

    @property
    def lake_dir(self) -> Path:
        """Root of the telemetry lake (``lake/telemetry/dt=…/hour=…``)."""
        return self.data_dir / "lake" / "telemetry"

    @property
    def db_path(self) -> Path:
        """The executor's SQLite database."""
        return self.data_dir / "engine.db"


def load_settings(**overrides: Any) -> Settings:
    """Settings from the environment and TOML file, with ``overrides`` on top (None ignored)."""
    return Settings(**{k: v for k, v in overrides.items() if v is not None})
