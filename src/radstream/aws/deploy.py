"""Deploy, inspect and destroy a RadStream stack: declarative, through change sets.

``deploy`` never skips an existing resource: it renders the whole template and lets
CloudFormation compute the difference (a change set), shows it, then applies it. The
Lambda package and layers are uploaded under content-addressed keys, so a changed package
is a changed parameter and reaches every function.

Before the stack exists there is nowhere in it to put the package, so a small code bucket
(``{stack}-code-{account}-{region}``, or a hashed form where that is no valid bucket
name: :mod:`radstream.aws.template.names`) holds the package, layers and template. ``destroy``
empties and removes it along with the stack's own buckets.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, TypedDict

from botocore.exceptions import ClientError

from radstream import layout
from radstream.aws import preflight
from radstream.aws.package import ARTIFACT_FILES, CODE, PackageManifest
from radstream.aws.session import StackRef
from radstream.aws.template import (
    LAYER_KEY_PARAMETERS,
    NAMED_QUERIES_PARAMETER,
    RATE_ALARMS_PARAMETER,
    SECRET_PARAMETERS,
    TemplateOptions,
    names,
    render_template,
)
from radstream.errors import ConfigInvalid, DeployFailed, StackNotFound
from radstream.settings import Settings

Report = Callable[[str], None]
_DONE = {"CREATE_COMPLETE", "UPDATE_COMPLETE", "IMPORT_COMPLETE"}
_FAILED_SUFFIXES = ("_FAILED", "ROLLBACK_COMPLETE")
DESTROY_ROUNDS = 3
DIRECTORY_BUCKET_SUFFIX = "--x-s3"
_NO_CHANGES = ("didn't contain changes", "No updates are to be performed")
EXPRESS_ZONE_PARAMETER = "ExpressZoneId"
_STACK_BUCKET_OUTPUTS = (
    "ImagesBucketName",
    "ResultsBucketName",
    "TelemetryBucketName",
    "ArtifactsBucketName",
    "ExpressArtifactsBucketName",
)


@dataclass(frozen=True)
class DeployOptions:
    """What the stack is made of (the template options) and what it runs."""

    package: PackageManifest
    model_path: Path | None
    model_preprocessing: Mapping[str, object]
    """The model's preprocessing (``ModelPreprocessing``), sent as JSON."""
    template: TemplateOptions = field(default_factory=TemplateOptions)
    """The template's options."""
    secrets: dict[str, str] = field(default_factory=dict)
    """Template parameter → value, for the NoEcho parameters (``SECRET_PARAMETERS``)."""
    named_queries: bool = True
    tags: Mapping[str, str] = field(default_factory=dict)
    """Stack tags besides ``radstream:stack`` (CloudFormation copies stack tags onto the
    resources that take tags); ``ab run --stack`` marks its stacks with ``radstream:ab``."""
    express_zone: str | None = None
    """The Availability Zone id of the S3 Express directory bucket (``--express-zone``);
    None: the stack's current one on an update, else one of the region's (:func:`radstream.aws.preflight.express_zone`)."""
    wait_s: float = 1800.0
    poll_s: float = 2.0


def template_options_from(
    settings: Settings,
    *,
    memory_mb: int | None = None,
    architecture: str | None = None,
    state_machine: str | None = None,
    express_artifacts: bool | None = None,
    model_endpoint: str | None = None,
    kms: bool = False,
    reserved_concurrency: Mapping[str, int] | None = None,
    alarm_topic: str | None = None,
    alarm_email: str | None = None,
    dashboard: bool = True,
) -> TemplateOptions:
    """The template's options from explicit choices (the CLI's flags), else the settings:
    `aws template` prints exactly what `aws deploy` sends."""
    cost = settings.cost
    return TemplateOptions(
        memory_mb=memory_mb or cost.memory_mb,
        architecture=architecture or cost.architecture,
        state_machine_type=state_machine or cost.state_machine,
        express_artifacts=(
            express_artifacts if express_artifacts is not None else cost.storage_class == "express"
        ),
        model_endpoint=model_endpoint or settings.model.endpoint,
        kms=kms,
        settings_env=lambda_settings(settings)[0],
        outage_budget_s=settings.engine.outage_budget_s,
        model_timeout_s=settings.model.timeout_s,
        model_retries=settings.model.retries,
        image_wait_s=settings.engine.image_wait_s,
        reserved_concurrency=dict(reserved_concurrency or {}),
        alarm_topic=alarm_topic,
        alarm_email=alarm_email,
        dashboard=dashboard,
    )


def lambda_settings(settings: Settings) -> tuple[dict[str, str], dict[str, str]]:
    """The settings the stage functions must share with this machine's: (environment,
    secret parameters). The functions read them as ``RADSTREAM_*`` variables, as the local
    workers read radstream.toml, so both engines validate, wait and pseudonymise alike."""
    model, telemetry, imaging = settings.model, settings.telemetry, settings.imaging
    env = {
        "RADSTREAM_MODEL__ENDPOINT_MODEL": model.endpoint_model,
        "RADSTREAM_MODEL__TIMEOUT_S": str(model.timeout_s),
        "RADSTREAM_MODEL__RETRIES": str(model.retries),
        "RADSTREAM_MODEL__PRECISION": model.precision,
        "RADSTREAM_MODEL__RUNTIME": model.runtime,
        "RADSTREAM_MODEL__ALLOW_UNVERIFIED": str(model.allow_unverified).lower(),
        "RADSTREAM_ENGINE__IMAGE_WAIT_S": str(settings.engine.image_wait_s),
        "RADSTREAM_IMAGING__MAX_PIXELS": str(imaging.max_pixels),
        "RADSTREAM_IMAGING__MAX_FILE_BYTES": str(imaging.max_file_bytes),
        "RADSTREAM_IMAGING__REQUIRE_CHEST": str(imaging.require_chest).lower(),
        "RADSTREAM_TELEMETRY__PSEUDONYMISE": str(telemetry.pseudonymise).lower(),
        "RADSTREAM_TELEMETRY__CONFIG_ID": telemetry.config_id,
    }
    if telemetry.variant is not None:
        env["RADSTREAM_TELEMETRY__VARIANT"] = telemetry.variant
    secrets = {
        SECRET_PARAMETERS["RADSTREAM_MODEL__TOKEN"]: model.token or "",
        SECRET_PARAMETERS["RADSTREAM_TELEMETRY__PSEUDONYM_KEY"]: telemetry.pseudonym_key,
    }
    return env, secrets


@dataclass(frozen=True)
class Change:
    """One row of a change set."""

    action: str
    logical_id: str
    resource_type: str
    replacement: str


def deploy(
    stack: StackRef,
    options: DeployOptions,
    report: Report = print,
    confirm: Callable[[list[Change]], bool] | None = None,
) -> dict[str, str]:
    """Create or update ``stack`` through a change set; return its outputs.

    The change set is reported before it is applied; ``confirm``, when given, may refuse
    it (the change set is then deleted and nothing changes).
    """
    # Checked before any AWS call: nothing is created for a package that cannot run.
    python = options.package.python_version
    if python == "3.11" and stack.target.endpoint_url is None:
        raise ConfigInvalid(
            "the python3.11 Lambda runtime runs Amazon Linux 2 (glibc 2.26), where the "
            "imaging and model wheels do not load (they need glibc 2.28): package for 3.12 "
            "(`radstream aws package --python-version 3.12`)"
        )
    if stack.target.endpoint_url is not None:
        preflight.check_emulator_python(stack, python, report)
    cfn = stack.target.client("cloudformation")
    code_bucket = _ensure_code_bucket(stack)
    keys = _upload_package(stack, code_bucket, options.package, report)
    state = _stack_status(stack)
    if state == "ROLLBACK_COMPLETE":
        raise DeployFailed(
            f"stack {stack.name} failed to create and was rolled back ({_reasons(stack)}); "
            f"remove it with `radstream aws destroy --stack {stack.name}`, then deploy again"
        )
    # A stack whose first change set was never applied (REVIEW_IN_PROGRESS) is still
    # created by a CREATE change set.
    exists = state not in (None, "REVIEW_IN_PROGRESS")
    model_key = _model_key(options.model_path)
    if exists and model_key:
        # Update: the new model is in place before any function is told about it.
        _upload_model(stack, stack.outputs()["ArtifactsBucketName"], model_key, options, report)
    template = render_template(stack.name, replace(options.template, python_version=python))
    template_key = f"templates/{stack.name}-{int(time.time())}.json"
    body = json.dumps(template, separators=(",", ":"), sort_keys=True).encode()
    stack.target.client("s3").put_object(Bucket=code_bucket, Key=template_key, Body=body)
    parameters = {
        "CodeBucket": code_bucket,
        "CodeKey": keys[CODE],
        "ModelPreprocessing": json.dumps(options.model_preprocessing, sort_keys=True),
        NAMED_QUERIES_PARAMETER: "true" if options.named_queries else "false",
        **options.secrets,
        # A stack with a model endpoint has no model layer, and so no parameter for it.
        **{
            parameter: keys[layer]
            for layer, parameter in LAYER_KEY_PARAMETERS.items()
            if parameter in template["Parameters"]
        },
    }
    if RATE_ALARMS_PARAMETER in template["Parameters"]:
        # ministack's CloudFormation refuses alarms on metric math: an emulator's stack
        # has the dashboard and every other alarm, not the rate alarms.
        parameters[RATE_ALARMS_PARAMETER] = "false" if stack.target.endpoint_url else "true"
    if model_key and "ModelKey" in template["Parameters"]:
        parameters["ModelKey"] = model_key
    sent: list[dict[str, str | bool]] = [
        {"ParameterKey": k, "ParameterValue": v} for k, v in parameters.items()
    ]
    if EXPRESS_ZONE_PARAMETER in template["Parameters"]:
        sent.append(_express_zone_parameter(stack, options, exists, report))
    name = f"radstream-{int(time.time() * 1000)}"
    cfn.create_change_set(
        StackName=stack.name,
        ChangeSetName=name,
        ChangeSetType="UPDATE" if exists else "CREATE",
        TemplateURL=_template_url(stack, code_bucket, template_key),
        Parameters=sent,
        Capabilities=["CAPABILITY_IAM"],
        # Sent on every change set: an update replaces the stack's tags with these.
        Tags=[
            {"Key": key, "Value": value}
            for key, value in {**options.tags, "radstream:stack": stack.name}.items()
        ],
    )
    changes = _wait_change_set(stack, name, options)
    if changes is None:
        report(f"stack {stack.name}: no changes")
    else:
        report(format_changes(changes))
        if confirm is not None and not confirm(changes):
            cfn.delete_change_set(StackName=stack.name, ChangeSetName=name)
            raise DeployFailed(f"change set for {stack.name} not applied (refused)")
        cfn.execute_change_set(StackName=stack.name, ChangeSetName=name)
        _wait_stack(stack, options, report)
    outputs = stack.outputs()
    if not exists and model_key:
        _upload_model(stack, outputs["ArtifactsBucketName"], model_key, options, report)
    return outputs


def _express_zone_parameter(
    stack: StackRef, options: DeployOptions, exists: bool, report: Report
) -> dict[str, str | bool]:
    """The ``ExpressZoneId`` parameter: the flag, else the zone the stack has (a new zone
    would replace the directory bucket and its tensors), else one of the region's."""
    if options.express_zone:
        return {"ParameterKey": EXPRESS_ZONE_PARAMETER, "ParameterValue": options.express_zone}
    if exists and EXPRESS_ZONE_PARAMETER in _stack_parameters(stack):
        return {"ParameterKey": EXPRESS_ZONE_PARAMETER, "UsePreviousValue": True}
    zone = preflight.express_zone(stack)
    report(f"S3 Express directory bucket in {zone} (choose another with --express-zone)")
    return {"ParameterKey": EXPRESS_ZONE_PARAMETER, "ParameterValue": zone}


def _stack_parameters(stack: StackRef) -> set[str]:
    reply = stack.target.client("cloudformation").describe_stacks(StackName=stack.name)
    stacks = reply.get("Stacks", [])
    return {str(p["ParameterKey"]) for p in stacks[0].get("Parameters", [])} if stacks else set()


def format_changes(changes: list[Change]) -> str:
    """The change set as an aligned table, one resource per line."""
    rows = [("action", "resource", "type", "replacement")]
    rows += [(c.action, c.logical_id, c.resource_type, c.replacement) for c in changes]
    widths = [max(len(r[i]) for r in rows) for i in range(4)]
    return "\n".join("  ".join(v.ljust(w) for v, w in zip(r, widths, strict=True)) for r in rows)


def destroy(stack: StackRef, report: Report = print, wait_s: float = 1800.0) -> None:
    """Empty the stack's buckets (every object version), delete the stack and its code bucket.

    Firehose may still deliver a buffered batch after the telemetry bucket was emptied,
    which fails the bucket's deletion; the buckets are then emptied again and the deletion
    retried (CloudFormation resumes with what is left).
    """
    for attempt in range(1, DESTROY_ROUNDS + 1):
        if _stack_status(stack) in (None, "DELETE_COMPLETE"):
            if attempt == 1:
                report(f"stack {stack.name} does not exist")
            break
        outputs = stack.outputs()
        for key in _STACK_BUCKET_OUTPUTS:
            if key in outputs:
                report(f"emptying {outputs[key]}")
                _empty_bucket(stack, outputs[key])
        stack.target.client("cloudformation").delete_stack(StackName=stack.name)
        if _wait_deleted(stack, wait_s):
            report(f"stack {stack.name} deleted")
            break
        if attempt == DESTROY_ROUNDS:
            raise DeployFailed(f"stack {stack.name} could not be deleted: {_reasons(stack)}")
        report(f"stack {stack.name}: DELETE_FAILED ({_reasons(stack)}); emptying again")
    bucket = code_bucket_name(stack)
    try:
        _empty_bucket(stack, bucket)
        stack.target.client("s3").delete_bucket(Bucket=bucket)
        report(f"code bucket {bucket} deleted")
    except ClientError as exc:
        if "NoSuchBucket" not in str(exc):
            raise


def _wait_deleted(stack: StackRef, wait_s: float) -> bool:
    """True once the stack is gone; False if its deletion failed."""
    deadline = time.monotonic() + wait_s
    while (status := _stack_status(stack)) not in (None, "DELETE_COMPLETE"):
        if status == "DELETE_FAILED":
            return False
        if time.monotonic() > deadline:
            raise DeployFailed(f"stack {stack.name} still {status} after {wait_s:.0f} s")
        time.sleep(1.0)
    return True


class StackStatus(TypedDict):
    """What ``radstream aws status`` shows (and prints as JSON)."""

    stack: str
    status: str
    outputs: dict[str, str]
    executions: dict[str, int]
    """Executions by status, of the latest 1,000."""


def status(stack: StackRef) -> StackStatus:
    """The stack's status, outputs and its executions by status (the latest 1,000)."""
    state = _stack_status(stack)
    if state is None:
        raise StackNotFound(f"no stack {stack.name!r} in {stack.target.region}")
    outputs = stack.outputs()
    counts: dict[str, int] = {}
    machine = outputs.get("StateMachineArn")
    if machine:
        sfn = stack.target.client("stepfunctions")
        for page in sfn.get_paginator("list_executions").paginate(
            stateMachineArn=machine, PaginationConfig={"MaxItems": 1000}
        ):
            for execution in page.get("executions", []):
                counts[execution["status"]] = counts.get(execution["status"], 0) + 1
    return {"stack": stack.name, "status": state, "outputs": outputs, "executions": counts}


# --- pieces ---------------------------------------------------------------------------


def code_bucket_name(stack: StackRef) -> str:
    """The bucket that holds the package and templates of ``stack`` (globally unique:
    :func:`radstream.aws.template.names.code_bucket_name`)."""
    account = str(stack.target.client("sts").get_caller_identity()["Account"])
    try:
        return names.code_bucket_name(stack.name, account, stack.target.region)
    except ValueError as exc:  # an emulator's made-up account or region
        raise ConfigInvalid(f"no code bucket name for stack {stack.name}: {exc}") from None


def _ensure_code_bucket(stack: StackRef) -> str:
    s3 = stack.target.client("s3")
    bucket = code_bucket_name(stack)
    try:
        s3.head_bucket(Bucket=bucket)
        return bucket
    except ClientError:
        pass
    extra = {}
    if stack.target.region != "us-east-1":
        extra["CreateBucketConfiguration"] = {"LocationConstraint": stack.target.region}
    s3.create_bucket(Bucket=bucket, **extra)
    s3.put_public_access_block(
        Bucket=bucket,
        PublicAccessBlockConfiguration={
            "BlockPublicAcls": True,
            "IgnorePublicAcls": True,
            "BlockPublicPolicy": True,
            "RestrictPublicBuckets": True,
        },
    )
    s3.put_bucket_encryption(
        Bucket=bucket,
        ServerSideEncryptionConfiguration={
            "Rules": [{"ApplyServerSideEncryptionByDefault": {"SSEAlgorithm": "AES256"}}]
        },
    )
    return bucket


def _upload_package(
    stack: StackRef, bucket: str, package: PackageManifest, report: Report
) -> dict[str, str]:
    """Upload each artifact under its hash; skip those already there (same hash, same bytes)."""
    s3 = stack.target.client("s3")
    keys: dict[str, str] = {}
    for name, artifact in package.artifacts.items():
        key = f"lambda/{artifact.sha256[:32]}/{ARTIFACT_FILES[name]}"
        keys[name] = key
        try:
            s3.head_object(Bucket=bucket, Key=key)
            continue
        except ClientError:
            pass
        report(f"uploading {ARTIFACT_FILES[name]} ({artifact.zipped_bytes / 1e6:.1f} MB)")
        with artifact.path.open("rb") as body:
            s3.put_object(Bucket=bucket, Key=key, Body=body)
    return keys


def _model_key(model_path: Path | None) -> str | None:
    if model_path is None:
        return None
    digest = hashlib.sha256(model_path.read_bytes()).hexdigest()[:16]
    return layout.model_key(f"{model_path.stem}-{digest}.onnx")


def _upload_model(
    stack: StackRef, bucket: str, key: str, options: DeployOptions, report: Report
) -> None:
    assert options.model_path is not None
    s3 = stack.target.client("s3")
    try:
        s3.head_object(Bucket=bucket, Key=key)
        return  # the key is the file's hash: the same model is already there
    except ClientError:
        pass
    report(f"uploading model {options.model_path.name} to {bucket}/{key}")
    with options.model_path.open("rb") as body:
        s3.put_object(Bucket=bucket, Key=key, Body=body)


def _template_url(stack: StackRef, bucket: str, key: str) -> str:
    if stack.target.endpoint_url:
        return f"{stack.target.endpoint_url.rstrip('/')}/{bucket}/{key}"
    return f"https://{bucket}.s3.{stack.target.region}.amazonaws.com/{key}"


def _stack_status(stack: StackRef) -> str | None:
    try:
        reply = stack.target.client("cloudformation").describe_stacks(StackName=stack.name)
    except ClientError as exc:
        if "does not exist" in str(exc):
            return None
        raise
    stacks = reply.get("Stacks", [])
    return str(stacks[0]["StackStatus"]) if stacks else None


def _wait_change_set(stack: StackRef, name: str, options: DeployOptions) -> list[Change] | None:
    cfn = stack.target.client("cloudformation")
    deadline = time.monotonic() + options.wait_s
    while True:
        reply = cfn.describe_change_set(StackName=stack.name, ChangeSetName=name)
        state = reply.get("Status")
        if state == "CREATE_COMPLETE":
            changes = [
                Change(
                    action=str(c["ResourceChange"].get("Action", "")),
                    logical_id=str(c["ResourceChange"].get("LogicalResourceId", "")),
                    resource_type=str(c["ResourceChange"].get("ResourceType", "")),
                    replacement=str(c["ResourceChange"].get("Replacement", "-") or "-"),
                )
                for c in reply.get("Changes", [])
            ]
            return changes
        if state == "FAILED":
            reason = str(reply.get("StatusReason", ""))
            if any(text in reason for text in _NO_CHANGES):
                cfn.delete_change_set(StackName=stack.name, ChangeSetName=name)
                return None
            raise DeployFailed(f"change set for {stack.name} failed: {reason}")
        if time.monotonic() > deadline:
            raise DeployFailed(
                f"change set for {stack.name} still {state} after {options.wait_s:.0f} s"
            )
        time.sleep(options.poll_s / 4)


def _wait_stack(stack: StackRef, options: DeployOptions, report: Report) -> None:
    deadline = time.monotonic() + options.wait_s
    while True:
        state = _stack_status(stack) or "DELETE_COMPLETE"
        if state in _DONE:
            report(f"stack {stack.name}: {state}")
            return
        if state.endswith(_FAILED_SUFFIXES) or state == "DELETE_COMPLETE":
            raise DeployFailed(f"stack {stack.name} ended {state}: {_reasons(stack)}")
        if time.monotonic() > deadline:
            raise DeployFailed(f"stack {stack.name} still {state} after {options.wait_s:.0f} s")
        time.sleep(options.poll_s)


def _reasons(stack: StackRef) -> str:
    """The failed resources' reasons from the latest stack events."""
    try:
        events = stack.target.client("cloudformation").describe_stack_events(StackName=stack.name)[
            "StackEvents"
        ]
    except ClientError:
        return "no events"
    failed = [
        f"{e.get('LogicalResourceId')}: {e.get('ResourceStatusReason')}"
        for e in events[:50]
        if str(e.get("ResourceStatus", "")).endswith("FAILED")
    ]
    return "; ".join(failed) or "no failed resource reported"


def _empty_bucket(stack: StackRef, bucket: str) -> None:
    """Delete every object: all versions and delete markers of a versioned bucket, or the
    plain objects of an S3 Express directory bucket (which has no versions to list)."""
    s3 = stack.target.client("s3")
    try:
        if bucket.endswith(DIRECTORY_BUCKET_SUFFIX):
            for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket):
                _delete_batch(s3, bucket, [{"Key": o["Key"]} for o in page.get("Contents", [])])
            return
        for page in s3.get_paginator("list_object_versions").paginate(Bucket=bucket):
            entries = [
                {"Key": v["Key"], "VersionId": v["VersionId"]}
                for v in [*page.get("Versions", []), *page.get("DeleteMarkers", [])]
            ]
            _delete_batch(s3, bucket, entries)
    except ClientError as exc:
        if "NoSuchBucket" in str(exc):
            return  # already gone: nothing to empty
        raise DeployFailed(f"could not empty bucket {bucket}: {exc}") from exc


def _delete_batch(s3: Any, bucket: str, entries: list[dict[str, str]]) -> None:
    # DeleteObjects takes at most 1,000 keys per call.
    for start in range(0, len(entries), 1000):
        s3.delete_objects(
            Bucket=bucket, Delete={"Objects": entries[start : start + 1000], "Quiet": True}
        )
