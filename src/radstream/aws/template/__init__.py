"""The RadStream stack as one CloudFormation template, built as plain Python data.

Declarative on purpose: ``radstream aws deploy`` creates *or updates* this stack through a
change set, so a changed setting (memory, architecture, state machine type) reaches
existing resources instead of being skipped.

The builders, one per concern:

* :mod:`.storage`: the buckets (encrypted, private, TLS-only, lifecycle rules per prefix),
  the KMS key, the optional S3 Express directory bucket for tensors;
* :mod:`.iam`: each stage's role, derived from its declaration in
  :mod:`radstream.pipeline.definition` (objects read, written, deleted, listed), and the
  state machine's and the trigger's roles;
* :mod:`.compute`: one Lambda function per declared stage with the layers its package
  groups name, the state machine rendered from the pipeline, the one EventBridge rule;
* :mod:`.telemetry`: Kinesis, and Firehose converting to Parquet into the lake;
* :mod:`.analytics`: the Glue database and table, the Athena workgroup and named queries;
* :mod:`.alarms` and :mod:`.dashboard`: the loss alarms, and (unless ``--no-dashboard``)
  the CloudWatch dashboard and operational alarms; the ``--alarm-email`` topic.

This module assembles them with the parameters and outputs.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import replace
from typing import Any

from radstream.aws.package import DEFAULT_PYTHON
from radstream.layout import MODELS, Bucket, model_key
from radstream.pipeline.definition import PIPELINE, Pipeline

from .alarms import (
    RATE_ALARMS_CONDITION,
    RATE_ALARMS_PARAMETER,
    alarm_actions,
    alarm_key_statement,
    alarm_resources,
    notification_resources,
    operations_alarm_resources,
)
from .analytics import NAMED_QUERIES_CONDITION, NAMED_QUERIES_PARAMETER, analytics_resources
from .compute import (
    EXPRESS_OUTAGE_BUDGET_S,
    LAMBDA_TIMEOUT_S,
    LOG_RETENTION_DAYS,
    SIDECAR_PATTERN,
    UPLOAD_DEAD_LETTERS,
    function_resources,
    layer_key_parameter,
    layer_resource,
    state_machine_resources,
    upload_rule_resources,
    used_layers,
)
from .dashboard import dashboard_resources
from .iam import STEP_FUNCTIONS_LOG_DELIVERY_ACTIONS, stage_statements
from .intrinsics import (
    BUCKETS,
    EXPRESS_BUCKET,
    GLUE_DATABASE,
    KMS_KEY,
    STATE_MACHINE,
    STREAM,
    WORKGROUP,
    Json,
    get_att,
    ref,
    sub,
)
from .options import TemplateOptions
from .secrets import SECRET_SETTINGS, secret_conditions, secret_resources
from .storage import storage_resources
from .telemetry import TELEMETRY_ERROR_PREFIX, TELEMETRY_PREFIX, telemetry_resources

__all__ = [
    "BUCKETS",
    "EXPRESS_BUCKET",
    "EXPRESS_OUTAGE_BUDGET_S",
    "KMS_KEY",
    "LAMBDA_TIMEOUT_S",
    "LAYERS",
    "LAYER_KEY_PARAMETERS",
    "LAYER_RESOURCES",
    "LOG_RETENTION_DAYS",
    "NAMED_QUERIES_CONDITION",
    "NAMED_QUERIES_PARAMETER",
    "RATE_ALARMS_PARAMETER",
    "SECRET_PARAMETERS",
    "SIDECAR_PATTERN",
    "STAGES",
    "STATE_MACHINE",
    "STEP_FUNCTIONS_LOG_DELIVERY_ACTIONS",
    "STREAM",
    "TELEMETRY_ERROR_PREFIX",
    "TELEMETRY_PREFIX",
    "WORKGROUP",
    "Json",
    "TemplateOptions",
    "build_template",
    "get_att",
    "ref",
    "render_template",
    "stage_statements",
    "sub",
    "template_json",
]

STAGES: tuple[str, ...] = tuple(stage.name for stage in PIPELINE.all_stages)
"""The stages of the default pipeline: one function each."""
LAYERS: tuple[str, ...] = used_layers(TemplateOptions())
"""Every layer a stack may have (a stack with a model endpoint has no ``model`` layer)."""
LAYER_RESOURCES: dict[str, str] = {layer: layer_resource(layer) for layer in LAYERS}
LAYER_KEY_PARAMETERS: dict[str, str] = {layer: layer_key_parameter(layer) for layer in LAYERS}
SECRET_PARAMETERS: dict[str, str] = {s.variable: s.parameter for s in SECRET_SETTINGS}
"""Settings the functions need that must not appear in the template: env var → parameter
(each kept in a Secrets Manager secret of the stack: :mod:`.secrets`)."""


def _parameters(options: TemplateOptions) -> Json:
    parameters: Json = {
        "CodeBucket": {
            "Type": "String",
            "Description": "S3 bucket holding the Lambda package (radstream aws package)",
        },
        "CodeKey": {"Type": "String", "Description": "key of the Lambda package zip"},
        **{
            layer_key_parameter(layer): {
                "Type": "String",
                "Description": f"key of the {layer} layer zip (radstream aws package)",
            }
            for layer in used_layers(options)
        },
        "ModelPreprocessing": {
            "Type": "String",
            "Default": "{}",
            "Description": "the model's preprocessing as JSON (radstream aws deploy reads it "
            "from the model file)",
        },
        **{
            parameter: {
                "Type": "String",
                "NoEcho": True,
                "Default": "",
                "Description": f"{env}, kept in a Secrets Manager secret (empty: unset)",
            }
            for env, parameter in SECRET_PARAMETERS.items()
        },
        NAMED_QUERIES_PARAMETER: {
            "Type": "String",
            "Default": "true",
            "AllowedValues": ["true", "false"],
            "Description": "create the Athena named queries (emulators may lack the type)",
        },
    }
    if options.dashboard:
        parameters[RATE_ALARMS_PARAMETER] = {
            "Type": "String",
            "Default": "true",
            "AllowedValues": ["true", "false"],
            "Description": "create the rate alarms, which use metric math (emulators may lack it)",
        }
    if options.in_process_model:
        parameters["ModelKey"] = {
            "Type": "String",
            "Default": model_key("radstream.onnx"),
            "AllowedPattern": f"^{MODELS}.+",
            "Description": "ONNX model key in the artifacts bucket (infer loads it once per container)",
        }
    if options.express_artifacts:
        # No default: `radstream aws deploy` sends one of the region's zones, or
        # --express-zone (a zone id such as use1-az4, the same in every account).
        parameters["ExpressZoneId"] = {
            "Type": "String",
            "AllowedPattern": "^[a-z0-9]+-az[0-9]+$",
            "Description": "Availability Zone id of the directory bucket, e.g. use1-az4",
        }
    return parameters


def _environment(options: TemplateOptions) -> dict[str, Json | str]:
    """What every stage function gets: where things are, what it costs, the settings."""
    environment: dict[str, Json | str] = {
        "RADSTREAM_AWS__IMAGES_BUCKET": ref(BUCKETS[Bucket.IMAGES]),
        "RADSTREAM_AWS__RESULTS_BUCKET": ref(BUCKETS[Bucket.RESULTS]),
        "RADSTREAM_AWS__ARTIFACTS_BUCKET": ref(BUCKETS[Bucket.ARTIFACTS]),
        "RADSTREAM_AWS__TENSOR_BUCKET": ref(options.bucket_id(Bucket.TENSORS)),
        "RADSTREAM_AWS__TELEMETRY_STREAM": ref(STREAM),
        "RADSTREAM_COST__MEMORY_MB": str(options.memory_mb),
        "RADSTREAM_COST__ARCHITECTURE": options.architecture,
        "RADSTREAM_COST__STATE_MACHINE": options.state_machine_type,
        "RADSTREAM_COST__STORAGE_CLASS": "express" if options.express_artifacts else "standard",
        "RADSTREAM_AWS__PREPROCESSING": ref("ModelPreprocessing"),
        # Secrets travel as NoEcho parameters into Secrets Manager; a function that needs
        # one gets its ARN (.secrets), never the value.
        **options.settings_env,
    }
    if options.model_endpoint is not None:
        environment["RADSTREAM_MODEL__ENDPOINT"] = options.model_endpoint
    else:
        environment["RADSTREAM_AWS__MODEL_KEY"] = ref("ModelKey")
    return environment


def _outputs(options: TemplateOptions) -> Json:
    outputs: Json = {
        f"{name.capitalize()}BucketName": {"Value": ref(logical_id)}
        for name, logical_id in BUCKETS.items()
    }
    if options.express_artifacts:
        outputs["ExpressArtifactsBucketName"] = {"Value": ref(EXPRESS_BUCKET)}
    outputs["StateMachineArn"] = {"Value": ref(STATE_MACHINE)}
    outputs["TelemetryStreamName"] = {"Value": ref(STREAM)}
    outputs["AthenaWorkGroup"] = {"Value": ref(WORKGROUP)}
    outputs["GlueDatabase"] = {"Value": ref(GLUE_DATABASE)}
    return outputs


def render_template(stack: str, options: TemplateOptions) -> Json:
    """The CloudFormation template of stack ``stack`` with ``options`` (see the module doc).

    Raises ``ConfigInvalid`` for a bad stack name or option.
    """
    options.check(stack)
    resources: Json = {
        **storage_resources(options),
        **secret_resources(stack, options),
        **function_resources(stack, options, _environment(options)),
        **state_machine_resources(stack, options),
        **upload_rule_resources(),
        **telemetry_resources(stack, options.kms),
        **analytics_resources(stack, options.kms),
        **alarm_resources(stack, options.pipeline, UPLOAD_DEAD_LETTERS, alarm_actions(options)),
        **notification_resources(stack, options),
    }
    if options.dashboard:
        resources.update(dashboard_resources(stack, options.pipeline))
        resources.update(
            operations_alarm_resources(stack, options.pipeline, alarm_actions(options))
        )
    if options.alarm_email and options.kms:
        # The alarm topic is under the stack key: CloudWatch must be able to use it.
        resources[KMS_KEY]["Properties"]["KeyPolicy"]["Statement"].append(alarm_key_statement())
    conditions: Json = {
        NAMED_QUERIES_CONDITION: {"Fn::Equals": [ref(NAMED_QUERIES_PARAMETER), "true"]},
        **secret_conditions(),
    }
    if options.dashboard:
        conditions[RATE_ALARMS_CONDITION] = {"Fn::Equals": [ref(RATE_ALARMS_PARAMETER), "true"]}
    return {
        "AWSTemplateFormatVersion": "2010-09-09",
        "Description": f"RadStream {stack}: chest X-ray inference pipeline (generated; do not edit)",
        "Parameters": _parameters(options),
        "Conditions": conditions,
        "Resources": resources,
        "Outputs": _outputs(options),
    }


def build_template(
    stack: str,
    *,
    memory_mb: int = 2048,
    architecture: str = "x86_64",
    state_machine_type: str = "STANDARD",
    express_artifacts: bool = False,
    model_endpoint: str | None = None,
    kms: bool = False,
    python_version: str = DEFAULT_PYTHON,
    settings_env: Mapping[str, str] | None = None,
    pipeline: Pipeline = PIPELINE,
    reserved_concurrency: Mapping[str, int] | None = None,
    alarm_topic: str | None = None,
    alarm_email: str | None = None,
    dashboard: bool = True,
) -> Json:
    """The CloudFormation template of stack ``stack``: :func:`render_template` with the
    :class:`TemplateOptions` given as keywords."""
    return render_template(
        stack,
        TemplateOptions(
            memory_mb=memory_mb,
            architecture=architecture,
            state_machine_type=state_machine_type,
            express_artifacts=express_artifacts,
            model_endpoint=model_endpoint,
            kms=kms,
            python_version=python_version,
            settings_env=dict(settings_env or {}),
            pipeline=pipeline,
            reserved_concurrency=dict(reserved_concurrency or {}),
            alarm_topic=alarm_topic,
            alarm_email=alarm_email,
            dashboard=dashboard,
        ),
    )


def template_json(stack: str, options: TemplateOptions | None = None, **overrides: Any) -> str:
    """The template as indented JSON text: ``options`` (default: the defaults) with any
    ``overrides`` given as :class:`TemplateOptions` field keywords."""
    chosen = replace(options or TemplateOptions(), **overrides)
    return json.dumps(render_template(stack, chosen), indent=2)
