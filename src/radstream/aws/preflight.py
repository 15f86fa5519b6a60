"""Checks before a deploy: that the credentials and the target answer, where an S3 Express
directory bucket can go, and which Python an emulator runs Lambda code on.

Both fail a deploy early, with what to pass instead, rather than leaving a stack that
CloudFormation refuses (a directory bucket needs a zone) or one where every upload ends
with no outcome (a package whose compiled wheels do not import on the emulator's Python).
"""

from __future__ import annotations

import contextlib
import io
import json
import zipfile
from collections.abc import Callable

from botocore.exceptions import BotoCoreError, ClientError

from radstream.aws.session import StackRef
from radstream.errors import ConfigInvalid

Report = Callable[[str], None]

EXPRESS_ZONES: dict[str, tuple[str, ...]] = {
    "us-east-1": ("use1-az4", "use1-az5", "use1-az6"),
    "us-west-2": ("usw2-az1", "usw2-az3", "usw2-az4"),
    "ap-northeast-1": ("apne1-az1", "apne1-az4"),
    "ap-south-1": ("aps1-az1", "aps1-az3"),
    "eu-north-1": ("eun1-az1", "eun1-az2", "eun1-az3"),
}
"""Availability Zone ids where S3 Express One Zone directory buckets can be created, by
region (Amazon S3 user guide, "S3 Express One Zone Availability Zones and Regions"). Zone
ids, unlike zone names, are the same in every account. A region not listed here may have
gained zones since: pass one with ``--express-zone``."""


def check_target(stack: StackRef) -> str:
    """The account the credentials belong to, asked of STS before anything is built.

    Missing credentials and an unreachable endpoint raise botocore's own errors, which the
    CLI reports as one line with a hint; a refusal is :class:`ConfigInvalid`.
    """
    try:
        identity = stack.target.client("sts", fast=True).get_caller_identity()
    except ClientError as exc:
        raise ConfigInvalid(f"AWS refused the credentials: {exc}", field="credentials") from None
    return str(identity["Account"])


def express_zone(stack: StackRef) -> str:
    """An Availability Zone id of ``stack``'s region that can hold a directory bucket.

    The first zone of :data:`EXPRESS_ZONES` that EC2 reports available to this account;
    the first listed when EC2 cannot be asked (an emulator without it). Raises
    ``ConfigInvalid`` for a region with no known zone, naming ``--express-zone``.
    """
    region = stack.target.region
    zones = EXPRESS_ZONES.get(region)
    if not zones:
        known = ", ".join(sorted(EXPRESS_ZONES))
        raise ConfigInvalid(
            f"no S3 Express One Zone Availability Zone is known for {region} (known: {known}); "
            "pass one with --express-zone (e.g. use1-az4), or deploy with --standard-artifacts"
        )
    try:
        reply = stack.target.client("ec2").describe_availability_zones(ZoneIds=list(zones))
    except (ClientError, BotoCoreError):
        return zones[0]
    available = {
        str(z.get("ZoneId"))
        for z in reply.get("AvailabilityZones", [])
        if z.get("State") == "available"
    }
    return next((zone for zone in zones if zone in available), zones[0])


PROBE_HANDLER = (
    "import sys\n\n\ndef handler(event, context):\n    return '%d.%d' % sys.version_info[:2]\n"
)
"""A function that answers the Python it runs on: an emulator may run Lambda code on its
own interpreter whatever the runtime says."""


def emulator_python(stack: StackRef, runtime_python: str) -> str | None:
    """The Python an emulator runs Lambda code on, as ``"3.11"``: a probe function is
    created, invoked and deleted. None when the probe cannot run (nothing is checked)."""
    lam = stack.target.client("lambda")
    name = f"{stack.name}-python-probe"
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("probe.py", PROBE_HANDLER)
    try:
        account = str(stack.target.client("sts").get_caller_identity()["Account"])
        lam.create_function(
            FunctionName=name,
            Runtime=f"python{runtime_python}",
            Role=f"arn:aws:iam::{account}:role/{name}",
            Handler="probe.handler",
            Code={"ZipFile": buffer.getvalue()},
            Timeout=30,
        )
    except (ClientError, BotoCoreError):
        return None
    try:
        reply = lam.invoke(FunctionName=name, Payload=b"{}")
        answer: object = json.loads(reply["Payload"].read())
        return answer if isinstance(answer, str) else None
    except (ClientError, BotoCoreError, ValueError, KeyError):
        return None
    finally:
        with contextlib.suppress(ClientError, BotoCoreError):
            lam.delete_function(FunctionName=name)


def check_emulator_python(stack: StackRef, python: str, report: Report) -> None:
    """Refuse a package built for another Python than the emulator runs: its compiled
    wheels would not import, and every upload would end with no outcome at all."""
    found = emulator_python(stack, python)
    if found is None:
        report("could not ask the emulator which Python it runs Lambda code on; not checked")
        return
    if found != python:
        raise ConfigInvalid(
            f"the emulator at {stack.target.endpoint_url} runs Lambda code on Python {found}, "
            f"but the package is for Python {python}: deploy with --python-version {found} "
            f"(`radstream aws deploy --python-version {found} …`; the package is rebuilt)"
        )
