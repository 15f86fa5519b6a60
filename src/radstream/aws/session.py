"""AWS clients for one stack: region, optional emulator endpoint, and the stack's outputs.

RadStream talks to AWS through botocore alone: the Lambda runtime ships it, so the
deployment package need not carry boto3, and the CLI uses the very same client objects.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Any

import botocore.session
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

from radstream.errors import StackNotFound

_RETRIES = Config(retries={"max_attempts": 5, "mode": "adaptive"})
# For calls that must not hold a study up (telemetry): fail fast, let the caller decide.
_FAST = Config(connect_timeout=1, read_timeout=2, retries={"max_attempts": 1})


@dataclass(frozen=True)
class AwsTarget:
    """Where AWS calls go: a region, and an emulator endpoint when testing."""

    region: str = "us-east-1"
    endpoint_url: str | None = None

    def client(self, service: str, *, fast: bool = False) -> Any:
        """A botocore client for ``service``, cached per target.

        ``fast``: short timeouts and no SDK retries, for a caller that retries within its
        own time budget (the telemetry producer).
        """
        return _client(self, service, fast)


@functools.cache
def _client(target: AwsTarget, service: str, fast: bool) -> Any:
    session = botocore.session.get_session()
    return session.create_client(
        service,
        region_name=target.region,
        endpoint_url=target.endpoint_url,
        config=_FAST if fast else _RETRIES,
    )


@dataclass(frozen=True)
class StackRef:
    """A deployed RadStream stack."""

    name: str
    target: AwsTarget

    def outputs(self) -> dict[str, str]:
        """The stack's outputs (bucket names, state machine ARN, …) by output key.

        Raises :class:`~radstream.errors.StackNotFound` when the stack does not exist.
        """
        try:
            reply = self.target.client("cloudformation").describe_stacks(StackName=self.name)
        except ClientError as exc:
            if "does not exist" in str(exc):
                raise StackNotFound(f"no stack {self.name!r} in {self.target.region}") from exc
            raise
        except BotoCoreError as exc:
            raise StackNotFound(
                f"cannot reach CloudFormation for stack {self.name!r}: {exc}"
            ) from exc
        stacks = reply.get("Stacks", [])
        if not stacks:
            raise StackNotFound(f"no stack {self.name!r} in {self.target.region}")
        return {o["OutputKey"]: o["OutputValue"] for o in stacks[0].get("Outputs", [])}
