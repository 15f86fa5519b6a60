"""What a stack is made of: the options every builder reads, checked once."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field

from radstream.aws.package import DEFAULT_PYTHON, SUPPORTED_PYTHON
from radstream.errors import ConfigInvalid
from radstream.layout import Bucket
from radstream.pipeline.definition import PIPELINE, Pipeline

from .intrinsics import BUCKETS, EXPRESS_BUCKET

MAX_RESERVED_CONCURRENCY = 10000
"""No more than an account's largest Lambda concurrency quota could give one function."""
_TOPIC_ARN = re.compile(r"arn:aws[a-z-]*:sns:[a-z0-9-]+:\d{12}:[A-Za-z0-9_-]{1,256}")
_STACK_NAME = re.compile(r"[A-Za-z][A-Za-z0-9-]{0,39}")
# A bare address (no display name, no spaces): what an SNS e-mail subscription takes.
_EMAIL = re.compile(r"[A-Za-z0-9.!#$%&'*+/=?^_`{|}~-]+@[A-Za-z0-9-]+(\.[A-Za-z0-9-]+)+")
MAX_EMAIL_LENGTH = 254


@dataclass(frozen=True)
class TemplateOptions:
    """The options of :func:`radstream.aws.template.build_template` (see its doc)."""

    memory_mb: int = 2048
    architecture: str = "x86_64"
    state_machine_type: str = "STANDARD"
    express_artifacts: bool = False
    """Tensors in an S3 Express One Zone directory bucket (the storage A/B scenario)."""
    model_endpoint: str | None = None
    """A remote model endpoint; None: infer runs the model in the Lambda itself."""
    kms: bool = False
    python_version: str = DEFAULT_PYTHON
    settings_env: Mapping[str, str] = field(default_factory=dict)
    """``RADSTREAM_*`` settings every function gets (:func:`radstream.aws.deploy.lambda_settings`)."""
    pipeline: Pipeline = PIPELINE
    """The stage declarations the functions, roles and layers are built from."""
    outage_budget_s: float = 600.0
    """How long an unavailable model is retried (``engine.outage_budget_s``); an EXPRESS
    execution retries for less, what its five minutes leave (:mod:`.limits`)."""
    model_timeout_s: float = 10.0
    """``model.timeout_s``: one request to a remote model endpoint."""
    model_retries: int = 3
    """``model.retries``: the in-Lambda retries of a request to a remote model endpoint."""
    image_wait_s: float = 30.0
    """``engine.image_wait_s``: how long ``validate`` waits for an image after its sidecar."""
    reserved_concurrency: Mapping[str, int] = field(default_factory=dict)
    """Stage → reserved concurrency of its function (``--reserved-concurrency infer=20``);
    a stage not named here shares the account's unreserved pool."""
    alarm_topic: str | None = None
    """An SNS topic ARN every alarm notifies (``--alarm-topic``); None: console only."""
    alarm_email: str | None = None
    """An e-mail address subscribed to an alarm topic of the stack (``--alarm-email``)."""
    dashboard: bool = True
    """The CloudWatch dashboard and the operational alarms (``--no-dashboard``: neither;
    the loss alarms stay)."""

    @property
    def in_process_model(self) -> bool:
        """Whether infer loads the model file itself (no endpoint)."""
        return self.model_endpoint is None

    @property
    def runtime(self) -> str:
        """The Lambda runtime identifier."""
        return f"python{self.python_version}"

    @property
    def tensor_bucket(self) -> str:
        """Logical id of the bucket that holds :data:`radstream.layout.Bucket.TENSORS`."""
        return EXPRESS_BUCKET if self.express_artifacts else BUCKETS[Bucket.ARTIFACTS]

    def bucket_id(self, bucket: Bucket) -> str:
        """Logical id of the stack's bucket for a logical ``bucket``."""
        return self.tensor_bucket if bucket is Bucket.TENSORS else BUCKETS[bucket]

    def check(self, stack: str) -> None:
        """Raise ``ConfigInvalid`` for a stack name or an option AWS would refuse."""
        if not _STACK_NAME.fullmatch(stack):
            raise ConfigInvalid(
                f"stack name {stack!r} must start with a letter and have 1-40 letters, digits "
                "or '-' (it prefixes function names, which are limited to 64 characters)"
            )
        if not 128 <= self.memory_mb <= 10240:
            raise ConfigInvalid(f"Lambda memory {self.memory_mb} MB is outside 128-10240")
        if self.architecture not in ("x86_64", "arm64"):
            raise ConfigInvalid(f"architecture {self.architecture!r} is not x86_64 or arm64")
        if self.state_machine_type not in ("STANDARD", "EXPRESS"):
            raise ConfigInvalid(
                f"state machine type {self.state_machine_type!r} is not STANDARD/EXPRESS"
            )
        names = {stage.name for stage in self.pipeline.all_stages}
        for stage, reserved in self.reserved_concurrency.items():
            if stage not in names:
                raise ConfigInvalid(
                    f"reserved concurrency for {stage!r}: no such stage ({', '.join(sorted(names))})"
                )
            if not 1 <= reserved <= MAX_RESERVED_CONCURRENCY:
                raise ConfigInvalid(
                    f"reserved concurrency {reserved} for {stage} is outside "
                    f"1-{MAX_RESERVED_CONCURRENCY} (0 would stop the stage)"
                )
        if self.alarm_topic is not None and not _TOPIC_ARN.fullmatch(self.alarm_topic):
            raise ConfigInvalid(f"alarm topic {self.alarm_topic!r} is not an SNS topic ARN")
        if self.alarm_email is not None and not valid_email(self.alarm_email):
            raise ConfigInvalid(
                f"alarm e-mail {self.alarm_email!r} is not an e-mail address "
                "(give a bare address such as ops@example.com)"
            )
        if not self.outage_budget_s > 0:
            raise ConfigInvalid(f"outage budget {self.outage_budget_s} s must be > 0")
        if self.python_version not in SUPPORTED_PYTHON:
            raise ConfigInvalid(
                f"Python {self.python_version} is not one of {', '.join(SUPPORTED_PYTHON)}"
            )


def valid_email(address: str) -> bool:
    """Whether ``address`` is a bare e-mail address SNS can subscribe (no display name)."""
    return len(address) <= MAX_EMAIL_LENGTH and _EMAIL.fullmatch(address) is not None
