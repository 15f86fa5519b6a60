"""Compute: the stage functions and their layers, the state machine, the upload trigger.

* one Lambda function per declared stage, all from one package, each with its own role
  (:mod:`.iam`) and log group, and the layers its declaration's package groups name
  (:meth:`~radstream.pipeline.definition.StageDef.packages_for`);
* the state machine rendered from the pipeline definition (:mod:`radstream.aws.asl`),
  logging at level ERROR without execution data, so no sidecar field reaches CloudWatch;
* ONE EventBridge rule (Object Created, key ``incoming/*.json`` or ``dicom/*/*``) that
  starts the state machine through an input transformer, so one sidecar, or one DICOM file
  uploaded without a sidecar, starts one execution, and only its bucket, key, etag and
  sequencer travel. An image under ``incoming/`` (a DICOM with its sidecar included)
  starts nothing: its sidecar does.
"""

from __future__ import annotations

import json
from collections.abc import Mapping

from radstream.aws.asl import (
    LAMBDA_INVOKE,
    outage_backoff,
    render_state_machine,
    transient_codes,
)
from radstream.aws.package import stage_layers
from radstream.layout import DICOM_DROP, INCOMING, SIDECAR_SUFFIX, Bucket
from radstream.pipeline.definition import (
    INFER,
    PREPARE,
    RECORD_FAILURE,
    STORE,
    VALIDATE,
    RetryPolicy,
    StageDef,
)

from .iam import stage_role, state_machine_role, upload_rule_role
from .intrinsics import (
    BUCKETS,
    KMS_KEY,
    STATE_MACHINE,
    Json,
    function_name,
    get_att,
    logical,
    ref,
    sub,
)
from .limits import ExecutionTimes
from .options import TemplateOptions
from .secrets import secret_environment

LOG_RETENTION_DAYS = 30
EXPRESS_OUTAGE_BUDGET_S = 120.0
"""The most an EXPRESS execution retries an outage for, on average; less where the worst
case would not fit in five minutes (:mod:`.limits`)."""
LAMBDA_TIMEOUT_S: dict[str, int] = {
    VALIDATE: 30,
    PREPARE: 60,
    INFER: 120,
    STORE: 30,
    RECORD_FAILURE: 30,
}
DEFAULT_TIMEOUT_S = 30
"""The timeout of a stage not in :data:`LAMBDA_TIMEOUT_S` (a newly declared one)."""
SIDECAR_PATTERN = f"{INCOMING}*{SIDECAR_SUFFIX}"
"""The EventBridge wildcard of the trigger: a sidecar under ``incoming/``."""
DICOM_DROP_PATTERN = f"{DICOM_DROP}*/*"
"""The other trigger: a DICOM file without a sidecar, ``dicom/{folder}/{file}`` (a PACS
drop; its header is the sidecar). EventBridge's ``*`` also crosses ``/``, so a deeper key
starts an execution too, and ``validate`` files it as a failure with its code."""
TRIGGER_PATTERNS: tuple[str, ...] = (SIDECAR_PATTERN, DICOM_DROP_PATTERN)
"""Every key that starts an execution; an image next to its sidecar is not one of them."""


def layer_resource(layer: str) -> str:
    """Logical id of a layer: ``imaging`` → ``ImagingLayer``."""
    return f"{layer.capitalize()}Layer"


def layer_key_parameter(layer: str) -> str:
    """The template parameter holding the key of a layer's zip: ``ImagingLayerKey``."""
    return f"{layer.capitalize()}LayerKey"


def function_layers(options: TemplateOptions) -> dict[str, tuple[str, ...]]:
    """Each stage's layers for these options: no model layer with a remote endpoint."""
    return stage_layers(options.pipeline, in_process_model=options.in_process_model)


def used_layers(options: TemplateOptions) -> tuple[str, ...]:
    """The layers some function of the stack uses, in first-use order."""
    return tuple(dict.fromkeys(layer for ls in function_layers(options).values() for layer in ls))


def layer(stack: str, name: str, options: TemplateOptions) -> Json:
    """A Lambda layer version from its zip in the code bucket."""
    return {
        "Type": "AWS::Lambda::LayerVersion",
        "Properties": {
            "LayerName": f"{stack}-{name}",
            "Description": f"RadStream {name} libraries (radstream aws package)",
            "Content": {"S3Bucket": ref("CodeBucket"), "S3Key": ref(layer_key_parameter(name))},
            "CompatibleRuntimes": [options.runtime],
            "CompatibleArchitectures": [options.architecture],
        },
    }


def function(
    stack: str,
    stage: StageDef,
    options: TemplateOptions,
    *,
    layers: tuple[str, ...],
    environment: Mapping[str, Json | str],
) -> Json:
    """The Lambda function of ``stage``: the one package, its role, log group and layers."""
    name = logical(stage.name)
    props: Json = {
        "FunctionName": function_name(stack, stage.name),
        "Description": f"RadStream {stage.name} stage",
        "Runtime": options.runtime,
        "Handler": f"radstream.aws.handlers.{stage.name}",
        "Code": {"S3Bucket": ref("CodeBucket"), "S3Key": ref("CodeKey")},
        "Role": get_att(f"{name}Role", "Arn"),
        "MemorySize": options.memory_mb,
        "Architectures": [options.architecture],
        "Timeout": LAMBDA_TIMEOUT_S.get(stage.name, DEFAULT_TIMEOUT_S),
        "LoggingConfig": {"LogGroup": ref(f"{name}LogGroup")},
        "Environment": {"Variables": {**environment, **secret_environment(stack, stage, options)}},
    }
    if layers:
        props["Layers"] = [ref(layer_resource(layer)) for layer in layers]
    reserved = options.reserved_concurrency.get(stage.name)
    if reserved is not None:
        # Both a guarantee and a cap: an infer cap protects a model endpoint from more
        # concurrent requests than it serves (throttled invocations are retried).
        props["ReservedConcurrentExecutions"] = reserved
    return {"Type": "AWS::Lambda::Function", "Properties": props}


def _log_group(name: str, kms: bool) -> Json:
    props: Json = {"LogGroupName": name, "RetentionInDays": LOG_RETENTION_DAYS}
    if kms:
        # Logs name studies' keys on failure: with --kms they use the stack key too.
        props["KmsKeyId"] = get_att(KMS_KEY, "Arn")
    return {"Type": "AWS::Logs::LogGroup", "Properties": props}


def function_resources(
    stack: str, options: TemplateOptions, environment: Mapping[str, Json | str]
) -> Json:
    """The layers, then each stage's log group, role and function."""
    layers = function_layers(options)
    resources: Json = {
        layer_resource(name): layer(stack, name, options) for name in used_layers(options)
    }
    for stage in options.pipeline.all_stages:
        name = logical(stage.name)
        resources[f"{name}LogGroup"] = _log_group(
            f"/aws/lambda/{function_name(stack, stage.name)}", options.kms
        )
        resources[f"{name}Role"] = stage_role(stage, options, stack=stack)
        resources[f"{name}Function"] = function(
            stack, stage, options, layers=layers[stage.name], environment=environment
        )
    return resources


def execution_times(options: TemplateOptions) -> ExecutionTimes:
    """What the worst case of one execution is computed from, for these options."""
    pipeline = options.pipeline
    return ExecutionTimes(
        stages=pipeline.stages,
        failure_stage=pipeline.failure_stage,
        timeouts_s={
            s.name: LAMBDA_TIMEOUT_S.get(s.name, DEFAULT_TIMEOUT_S) for s in pipeline.all_stages
        },
        remote_model=not options.in_process_model,
        model_timeout_s=options.model_timeout_s,
        model_retries=options.model_retries,
        image_wait_s=options.image_wait_s,
        outage=outage_backoff(RetryPolicy()),
    )


def outage_retries(options: TemplateOptions) -> int:
    """The ``MaxAttempts`` of the outage retrier: the retries whose expected waits fill the
    outage budget (full jitter), and for EXPRESS no more than fit in five minutes.

    Raises ``ConfigInvalid`` for an EXPRESS configuration whose worst case cannot fit.
    """
    backoff = outage_backoff(RetryPolicy())
    if options.state_machine_type != "EXPRESS":
        return backoff.attempts_within(options.outage_budget_s)
    wanted = backoff.attempts_within(min(options.outage_budget_s, EXPRESS_OUTAGE_BUDGET_S))
    return execution_times(options).express_outage_retries(wanted)


def _definition(options: TemplateOptions, function_arns: Mapping[str, str]) -> Json:
    definition = render_state_machine(
        options.pipeline,
        function_arns=function_arns,
        retry=RetryPolicy(),
        artifacts_bucket="${TensorBucket}",
    )
    outage = transient_codes(self_bounded=False, time_bounded=True)
    retries = outage_retries(options)
    for state in definition["States"].values():
        for retrier in state.get("Retry", []):
            if retrier["ErrorEquals"] == outage:
                retrier["MaxAttempts"] = retries
    text = json.dumps(definition, indent=2)
    # The partition is the stack's (aws-cn, aws-us-gov), not always "aws": the text goes
    # through Fn::Sub for ${AWS::Partition} alone, the other ${…} escaped for
    # DefinitionSubstitutions.
    text = text.replace("${", "${!").replace(
        json.dumps(LAMBDA_INVOKE),
        json.dumps(LAMBDA_INVOKE.replace(":aws:", ":${AWS::Partition}:", 1)),
    )
    return sub(text)


def definition_of(machine: Json, partition: str = "aws") -> Json:
    """The ASL of a state machine resource as CloudFormation hands it to Step Functions in
    ``partition`` (``Fn::Sub`` applied; ``DefinitionSubstitutions`` left as they are)."""
    text = machine["Properties"]["DefinitionString"]["Fn::Sub"]
    resolved = text.replace("${AWS::Partition}", partition).replace("${!", "${")
    definition: Json = json.loads(resolved)
    return definition


def state_machine_resources(stack: str, options: TemplateOptions) -> Json:
    """The state machine, its role and log group."""
    stages = options.pipeline.all_stages
    function_arns = {stage.name: f"${{{logical(stage.name)}FunctionArn}}" for stage in stages}
    substitutions: Json = {
        f"{logical(stage.name)}FunctionArn": get_att(f"{logical(stage.name)}Function", "Arn")
        for stage in stages
    }
    substitutions["TensorBucket"] = ref(options.bucket_id(Bucket.TENSORS))
    kind = options.state_machine_type
    machine: Json = {
        "Type": "AWS::StepFunctions::StateMachine",
        "Properties": {
            # The type is in the name: changing it replaces the state machine, and
            # CloudFormation cannot replace a resource under the same fixed name.
            "StateMachineName": f"{stack}-pipeline-{kind.lower()}",
            "StateMachineType": kind,
            "RoleArn": get_att("StateMachineRole", "Arn"),
            # An EXPRESS execution may last 5 minutes in all, so it retries an outage
            # for less: only what the worst case leaves (see .limits).
            "DefinitionString": _definition(options, function_arns),
            "DefinitionSubstitutions": substitutions,
            "LoggingConfiguration": {
                # ERROR without execution data: states' inputs and outputs (sidecar fields)
                # never reach CloudWatch Logs.
                "Level": "ERROR",
                "IncludeExecutionData": False,
                "Destinations": [
                    {
                        "CloudWatchLogsLogGroup": {
                            "LogGroupArn": get_att("StateMachineLogGroup", "Arn")
                        }
                    }
                ],
            },
        },
    }
    return {
        "StateMachineLogGroup": _log_group(f"/aws/vendedlogs/states/{stack}-pipeline", options.kms),
        "StateMachineRole": state_machine_role(stages),
        STATE_MACHINE: machine,
    }


UPLOAD_DEAD_LETTERS = "UploadDeadLetters"
EVENT_RETRY_ATTEMPTS = 185
"""EventBridge's most retries of a target (and its default): about a day of trying."""
EVENT_MAX_AGE_S = 86400
DEAD_LETTER_RETENTION_S = 14 * 86400
"""SQS's longest retention: two weeks to find and re-upload what never started."""


def _dead_letter_resources() -> Json:
    """The queue of uploads whose execution could not be started, and its policy."""
    queue: Json = {
        "Type": "AWS::SQS::Queue",
        "Properties": {
            "MessageRetentionPeriod": DEAD_LETTER_RETENTION_S,
            # SSE-SQS: EventBridge can write to it with no key policy to maintain.
            "SqsManagedSseEnabled": True,
        },
    }
    policy: Json = {
        "Type": "AWS::SQS::QueuePolicy",
        "Properties": {
            "Queues": [ref(UPLOAD_DEAD_LETTERS)],
            "PolicyDocument": {
                "Version": "2012-10-17",
                "Statement": [
                    {
                        "Sid": "UploadRuleDeadLetters",
                        "Effect": "Allow",
                        "Principal": {"Service": "events.amazonaws.com"},
                        "Action": "sqs:SendMessage",
                        "Resource": get_att(UPLOAD_DEAD_LETTERS, "Arn"),
                        "Condition": {"ArnEquals": {"aws:SourceArn": get_att("UploadRule", "Arn")}},
                    },
                    {
                        "Sid": "DenyInsecureTransport",
                        "Effect": "Deny",
                        "Principal": "*",
                        "Action": "sqs:*",
                        "Resource": get_att(UPLOAD_DEAD_LETTERS, "Arn"),
                        "Condition": {"Bool": {"aws:SecureTransport": "false"}},
                    },
                ],
            },
        },
    }
    return {UPLOAD_DEAD_LETTERS: queue, f"{UPLOAD_DEAD_LETTERS}Policy": policy}


def upload_rule_resources() -> Json:
    """The one rule that starts an execution per sidecar (or sidecar-less DICOM drop), its
    role, and the dead-letter queue of uploads whose execution EventBridge could not start
    within a day. EventBridge delivers at least once: a second delivery of one upload
    (same key and sequencer) loses the upload's claim in ``validate`` and ends in
    ``DuplicateIgnored``."""
    rule: Json = {
        "Type": "AWS::Events::Rule",
        "Properties": {
            "Description": (
                f"one execution per study: its sidecar ({SIDECAR_PATTERN}) or, without one, "
                f"its DICOM file ({DICOM_DROP_PATTERN}) is the trigger"
            ),
            "State": "ENABLED",
            "EventPattern": {
                "source": ["aws.s3"],
                "detail-type": ["Object Created"],
                "detail": {
                    "bucket": {"name": [ref(BUCKETS[Bucket.IMAGES])]},
                    # Either pattern (a list is an OR); one key matches at most one.
                    "object": {"key": [{"wildcard": p} for p in TRIGGER_PATTERNS]},
                },
            },
            "Targets": [
                {
                    "Id": "pipeline",
                    "Arn": ref(STATE_MACHINE),
                    "RoleArn": get_att("UploadRuleRole", "Arn"),
                    # A throttled or refused StartExecution is retried for a day, then the
                    # event is kept in the queue: an upload is never dropped silently.
                    "RetryPolicy": {
                        "MaximumRetryAttempts": EVENT_RETRY_ATTEMPTS,
                        "MaximumEventAgeInSeconds": EVENT_MAX_AGE_S,
                    },
                    "DeadLetterConfig": {"Arn": get_att(UPLOAD_DEAD_LETTERS, "Arn")},
                    "InputTransformer": {
                        "InputPathsMap": {
                            "bucket": "$.detail.bucket.name",
                            "key": "$.detail.object.key",
                            "etag": "$.detail.object.etag",
                            "sequencer": "$.detail.object.sequencer",
                            "event_time": "$.time",
                            "event_id": "$.id",
                        },
                        # Unquoted placeholders: EventBridge inserts them as JSON strings.
                        "InputTemplate": (
                            '{"bucket": <bucket>, "key": <key>, "etag": <etag>, '
                            '"sequencer": <sequencer>, "event_time": <event_time>, '
                            '"event_id": <event_id>}'
                        ),
                    },
                }
            ],
        },
    }
    return {"UploadRuleRole": upload_rule_role(), "UploadRule": rule, **_dead_letter_resources()}
