"""One validated settings object, from ``radstream.toml`` and ``RADSTREAM_*`` variables.

Precedence, highest first: explicit arguments (the CLI), environment variables
(``RADSTREAM_ENGINE__WORKERS=4``; nested sections use ``__``), the TOML file
(``./radstream.toml`` or the file named by ``RADSTREAM_CONFIG``), then defaults.

Unknown keys are refused (``extra="forbid"``), so a misspelt key is an error rather than a
setting silently ignored. The helpers at the end explain such errors (did you mean, the
line in the file), say where each effective value came from, and write the configuration
reference in the README from the fields declared here.
"""

from __future__ import annotations

import difflib
import os
import re
import types
import typing
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator
from pydantic.fields import FieldInfo
from pydantic_settings import (
    BaseSettings,
    EnvSettingsSource,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)


class ImagingSettings(BaseModel):
    """Guards applied before any pixel is decoded."""

    model_config = ConfigDict(extra="forbid")

    max_pixels: int = Field(
        default=50_000_000, ge=1, description="largest image (width × height) decoded"
    )
    max_file_bytes: int = Field(
        default=64 * 1024 * 1024, ge=1, description="largest image file read, in bytes"
    )
    require_chest: bool = Field(
        default=True,
        description="refuse DICOM that is not a chest radiograph (Modality, body part)",
    )


class ModelSettings(BaseModel):
    """Which model runs, and how."""

    model_config = ConfigDict(extra="forbid")

    path: Path | None = Field(
        default=None, description="ONNX file; default: the stand-in built under data_dir/models"
    )
    intra_op_threads: int = Field(
        default=1, ge=1, description="ONNX Runtime threads per worker (workers add up)"
    )
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
    timeout_s: float = Field(default=10.0, gt=0, description="per request to the endpoint")
    retries: int = Field(default=3, ge=0, description="retries of a failed endpoint request")
    breaker_failures: int = Field(default=5, ge=1, description="failures that open the circuit")
    breaker_reset_s: float = Field(
        default=10.0, gt=0, description="seconds before an open circuit tries again"
    )
    precision: Literal["fp32", "bf16", "int8"] = Field(
        default="fp32",
        description="arithmetic of in-process inference: int8 needs an int8 file from "
        "`radstream model optimize`; bf16 runs an fp32 file in bf16 with OpenVINO on a CPU "
        "with AVX512_BF16/AMX (else fp32, logged); a file's own precision wins",
    )
    runtime: Literal["onnxruntime", "openvino", "auto"] = Field(
        default="onnxruntime",
        description="in-process runtime; openvino needs the `openvino` extra; auto: OpenVINO "
        "for bf16, ONNX Runtime otherwise",
    )
    allow_unverified: bool = Field(
        default=False,
        description="run an int8/bf16 model that has no passing fidelity report in its "
        "metadata (from `radstream model optimize`); off: such a model is refused",
    )


class EngineSettings(BaseModel):
    """The durable local executor and its workers."""

    model_config = ConfigDict(extra="forbid")

    workers: int = Field(
        default_factory=lambda: os.cpu_count() or 1,
        ge=1,
        description="worker processes; default: the number of CPUs",
    )
    lease_s: float = Field(default=30.0, gt=0, description="a worker's claim on an execution")
    max_stage_attempts: int = Field(default=5, ge=1, description="per stage, transient errors")
    max_takeovers: int = Field(default=3, ge=0, description="worker deaths before giving up")
    retry_base_s: float = Field(
        default=0.2, gt=0, description="first retry delay of a transient error (jittered)"
    )
    retry_max_s: float = Field(default=5.0, gt=0, description="longest retry delay")
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
        default=False, description="fsync objects, their folders and the database (SQLite synchronous=FULL): survive power loss, not only crashes"
    )


class TelemetrySettings(BaseModel):
    """Buffered telemetry into the Parquet lake."""

    model_config = ConfigDict(extra="forbid")

    flush_rows: int = Field(default=512, ge=1, description="rows buffered before a write")
    flush_s: float = Field(default=2.0, gt=0, description="longest a row waits to be written")
    pseudonymise: bool = Field(default=False, description="replace study ids by keyed hashes")
    pseudonym_key: str = Field(default="", description="HMAC key; required when pseudonymising")
    config_id: str = Field(
        default="default", description="label of this configuration in telemetry"
    )
    variant: str | None = Field(default=None, description="label of an experiment variant")

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

    model_config = ConfigDict(extra="forbid")

    memory_mb: int = Field(default=2048, ge=128, le=10240, description="Lambda memory")
    architecture: Literal["x86_64", "arm64"] = Field(
        default="x86_64", description="Lambda architecture"
    )
    storage_class: Literal["standard", "express"] = Field(
        default="standard", description="S3 class of the tensor between prepare and infer"
    )
    state_machine: Literal["STANDARD", "EXPRESS"] = Field(
        default="STANDARD", description="Step Functions workflow type"
    )
    pricing: Path | None = Field(default=None, description="pricing JSON; default: shipped")


class AwsSettings(BaseModel):
    """Where the AWS backend lives. The CLI reads ``region``/``endpoint_url``; the Lambda
    handlers read the rest from the environment the stack template sets."""

    model_config = ConfigDict(extra="forbid")

    region: str = Field(default="us-east-1", description="AWS region of the stack")
    endpoint_url: str | None = Field(
        default=None, description="send every AWS call here (an emulator such as ministack)"
    )
    images_bucket: str = Field(default="", description="set by the stack template")
    results_bucket: str = Field(default="", description="set by the stack template")
    artifacts_bucket: str = Field(default="", description="set by the stack template")
    tensor_bucket: str = Field(default="", description="artifacts, or the S3 Express bucket")
    telemetry_stream: str = Field(
        default="", description="Kinesis stream; set by the stack template"
    )
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
        env_prefix="RADSTREAM_", env_nested_delimiter="__", extra="forbid"
    )

    data_dir: Path = Field(
        default=Path(".radstream"),
        description="where the store, the engine database, the lake and models live; "
        "`demo` and `bench` use a folder inside it unless given --data-dir",
    )
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
        return (init_settings, env_settings, TomlConfigSettingsSource(settings_cls, config_file()))

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


def config_file() -> Path:
    """The settings file: ``$RADSTREAM_CONFIG``, else ``./radstream.toml`` (may not exist)."""
    return Path(os.environ.get("RADSTREAM_CONFIG", "radstream.toml"))


def load_settings(**overrides: Any) -> Settings:
    """Settings from the environment and TOML file, with ``overrides`` on top (None ignored)."""
    return Settings(**{k: v for k, v in overrides.items() if v is not None})


# --- explaining settings: keys, origins, the reference ---------------------------------

ENV_PREFIX = "RADSTREAM_"
SECRET_KEYS = frozenset({("model", "token"), ("telemetry", "pseudonym_key")})
"""Keys whose values ``config show`` never prints."""

Key = tuple[str, ...]


def _section(field: FieldInfo) -> type[BaseModel] | None:
    annotation = field.annotation
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    return None


def setting_fields(
    model: type[BaseModel] = Settings, prefix: Key = ()
) -> Iterator[tuple[Key, FieldInfo]]:
    """Every leaf setting as (key path, field), in declaration order."""
    for name, field in model.model_fields.items():
        section = _section(field)
        if section is None:
            yield (*prefix, name), field
        else:
            yield from setting_fields(section, (*prefix, name))


def env_name(key: Key) -> str:
    """``("engine", "workers")`` → ``RADSTREAM_ENGINE__WORKERS``."""
    return ENV_PREFIX + "__".join(key).upper()


def did_you_mean(loc: Sequence[str | int]) -> str | None:
    """The known key closest to the unknown key ``loc`` (``engine.worker`` → ``engine.workers``)."""
    model: type[BaseModel] = Settings
    parts = [str(p) for p in loc]
    for depth, part in enumerate(parts):
        fields = model.model_fields
        if part not in fields:
            close = difflib.get_close_matches(part, list(fields), n=1, cutoff=0.6)
            if close:
                return ".".join([*parts[:depth], close[0], *parts[depth + 1 :]])
            # ``worker = 1`` at the top of the file: the key belongs in a section.
            leaves = {key[-1]: ".".join(key) for key, _ in setting_fields(model)}
            close = difflib.get_close_matches(part, list(leaves), n=1, cutoff=0.6)
            return ".".join([*parts[:depth], leaves[close[0]]]) if close else None
        section = _section(fields[part])
        if section is None:
            return None
        model = section
    return None


_SECTION_RE = re.compile(r"^\s*\[\s*([A-Za-z0-9_.\- ]+?)\s*\]\s*(#.*)?$")
_KEY_RE = re.compile(r"^\s*([A-Za-z0-9_.\-\"' ]+?)\s*=")


def toml_line(path: Path, loc: Sequence[str | int]) -> int | None:
    """The line (1-based) of ``path`` that sets ``loc``, when it can be found by reading it."""
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError):
        return None
    want = ".".join(str(p) for p in loc)
    section = ""
    for number, line in enumerate(lines, start=1):
        header = _SECTION_RE.match(line)
        if header:
            section = header.group(1).replace(" ", "")
            continue
        found = _KEY_RE.match(line)
        if found:
            key = found.group(1).replace(" ", "").replace('"', "").replace("'", "")
            if ".".join(p for p in (section, key) if p) == want:
                return number
    return None


def _nested_keys(values: Mapping[str, Any], prefix: Key = ()) -> set[Key]:
    keys: set[Key] = set()
    for name, value in values.items():
        if isinstance(value, Mapping):
            keys |= _nested_keys(value, (*prefix, name))
        else:
            keys.add((*prefix, name))
    return keys


def env_keys() -> set[Key]:
    """The keys that ``RADSTREAM_*`` variables set (valid or not)."""
    return _nested_keys(EnvSettingsSource(Settings)())


def file_keys(path: Path | None = None) -> set[Key]:
    """The keys the settings file sets (empty when there is no file)."""
    path = path or config_file()
    if not path.is_file():
        return set()
    return _nested_keys(TomlConfigSettingsSource(Settings, path)())


def where_set(loc: Sequence[str | int]) -> str | None:
    """Where an invalid value came from: ``RADSTREAM_ENGINE__WORKERS`` or ``radstream.toml:3``."""
    key = tuple(str(p) for p in loc)
    if key in env_keys():
        return env_name(key)
    path = config_file()
    if key in file_keys(path):
        line = toml_line(path, key)
        return f"{path}:{line}" if line else str(path)
    return None


Origin = Literal["default", "file", "environment", "flag"]


@dataclass(frozen=True)
class EffectiveSetting:
    """One effective value and where it came from."""

    key: str
    value: str
    origin: Origin
    where: str
    """The variable, ``file:line``, or flag that set it; empty for a default."""


def effective_settings(settings: Settings, flags: Mapping[Key, str]) -> list[EffectiveSetting]:
    """Every setting of ``settings`` with its origin; ``flags`` maps the keys a command-line
    flag set to the flag's name."""
    env, path = env_keys(), config_file()
    in_file = file_keys(path)
    dumped = settings.model_dump(mode="json")
    rows = []
    for key, _field in setting_fields():
        value: Any = dumped
        for part in key:
            value = value[part]
        shown = "****" if key in SECRET_KEYS and value else json_value(value)
        origin: Origin
        if key in flags:
            origin, where = "flag", flags[key]
        elif key in env:
            origin, where = "environment", env_name(key)
        elif key in in_file:
            line = toml_line(path, key)
            origin, where = "file", f"{path}:{line}" if line else str(path)
        else:
            origin, where = "default", ""
        rows.append(EffectiveSetting(".".join(key), shown, origin, where))
    return rows


def json_value(value: object) -> str:
    """A value as TOML/JSON would write it (``null`` for None)."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return f'"{value}"'
    return str(value)


def _type_name(annotation: object) -> str:
    if typing.get_origin(annotation) is Literal:
        return " \\| ".join(json_value(a) for a in typing.get_args(annotation))
    if isinstance(annotation, types.UnionType) or typing.get_origin(annotation) is typing.Union:
        return " \\| ".join(_type_name(a) for a in typing.get_args(annotation))
    if annotation is type(None):
        return "null"
    if annotation is Path:
        return "path"
    return getattr(annotation, "__name__", str(annotation))


REFERENCE_BEGIN = "<!-- configuration reference: generated by `radstream config reference` -->"
REFERENCE_END = "<!-- end of configuration reference -->"


def reference_markdown() -> str:
    """The configuration reference (a Markdown table), generated from the fields above."""
    lines = [
        REFERENCE_BEGIN,
        "",
        "| key | type | default | environment variable | meaning |",
        "|---|---|---|---|---|",
    ]
    for key, field in setting_fields():
        if field.default_factory is not None:
            default = "(computed)"
        else:
            default = json_value(
                field.default if not isinstance(field.default, Path) else str(field.default)
            )
        meaning = (field.description or "").replace("|", "\\|")
        lines.append(
            f"| `{'.'.join(key)}` | {_type_name(field.annotation)} | `{default}` | "
            f"`{env_name(key)}` | {meaning} |"
        )
    lines += ["", REFERENCE_END]
    return "\n".join(lines) + "\n"
