"""The RadStream stack as one CloudFormation template, built as plain Python data.

Declarative on purpose: ``radstream aws deploy`` creates *or updates* this stack through a
change set, so a changed setting (memory, architecture, state machine type) reaches
existing resources instead of being skipped.

What the template holds:

* four S3 buckets (images, results, telemetry, artifacts): default encryption (SSE-S3, or
  SSE-KMS with a key of this stack), every public access block on, ACLs disabled, a
  bucket policy that denies any request not made over TLS, lifecycle rules that each name
  a prefix; results is versioned. Optionally an S3 Express One Zone directory bucket for
  tensors (the storage A/B scenario).
* EventBridge: notifications on the images bucket and ONE rule (Object Created, key
  ``incoming/*.json``) that starts the state machine through an input transformer, so one
  sidecar starts one execution, and only its bucket, key and etag travel.
* the state machine rendered from the pipeline definition (:mod:`radstream.aws.asl`),
  logging at level ERROR without execution data, so no sidecar field reaches CloudWatch.
* five Lambda functions from one package, each with its own role and log group. A role
  grants only the actions, buckets and prefixes of its own stage.
* telemetry: an on-demand, encrypted Kinesis stream; Firehose reads it, converts the JSON
  records to Parquet with the Glue table's columns, and writes Hive-style
  ``telemetry/dt=…/hour=…/`` prefixes (errors under ``telemetry-errors/``).
* the Glue database and table (partition projection) and an Athena workgroup with its
  result location and the shipped named queries.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from typing import Any, Literal

from radstream.aws.asl import DEFAULT_OUTAGE_BUDGET_S, asl_json
from radstream.aws.athena_runner import positional_names, to_positional
from radstream.aws.package import (
    DEFAULT_PYTHON,
    LAYER_IMAGING,
    LAYER_MODEL,
    STAGE_LAYERS,
    SUPPORTED_PYTHON,
)
from radstream.errors import ConfigInvalid
from radstream.lake.glue import DATABASE, TABLE, table_input
from radstream.lake.queries import NamedQuery, named_queries
from radstream.pipeline.definition import (
    INFER,
    PIPELINE,
    PREPARE,
    RECORD_FAILURE,
    STORE,
    VALIDATE,
    RetryPolicy,
)

Json = dict[str, Any]

LOG_RETENTION_DAYS = 30
STAGES: tuple[str, ...] = (*PIPELINE.names, PIPELINE.failure_stage)
LAYERS: tuple[str, ...] = (LAYER_IMAGING, LAYER_MODEL)
LAYER_RESOURCES: dict[str, str] = {layer: f"{layer.capitalize()}Layer" for layer in LAYERS}
LAYER_KEY_PARAMETERS: dict[str, str] = {layer: f"{layer.capitalize()}LayerKey" for layer in LAYERS}
EXPRESS_OUTAGE_BUDGET_S = 120.0
SECRET_PARAMETERS: dict[str, str] = {
    "RADSTREAM_MODEL__TOKEN": "ModelToken",
    "RADSTREAM_TELEMETRY__PSEUDONYM_KEY": "PseudonymKey",
}
"""Settings the functions need that must not appear in the template: env var → parameter."""
NAMED_QUERIES_PARAMETER = "NamedQueries"
NAMED_QUERIES_CONDITION = "CreateNamedQueries"
LAMBDA_TIMEOUT_S: dict[str, int] = {
    VALIDATE: 30,
    PREPARE: 60,
    INFER: 120,
    STORE: 30,
    RECORD_FAILURE: 30,
}
INCOMING_PREFIX = "incoming/"
SIDECAR_PATTERN = "incoming/*.json"
TENSOR_PREFIX = "tensors/"
CLAIM_PREFIX = "claims/"
MODEL_PREFIX = "models/"
RESULT_PREFIX = "results/"
FAILED_PREFIX = "failed/"
ATHENA_PREFIX = "athena-results/"
TELEMETRY_PREFIX = "telemetry/dt=!{timestamp:yyyy-MM-dd}/hour=!{timestamp:HH}/"
TELEMETRY_ERROR_PREFIX = (
    "telemetry-errors/!{firehose:error-output-type}/dt=!{timestamp:yyyy-MM-dd}/"
)

BUCKETS: dict[str, str] = {
    "images": "ImagesBucket",
    "results": "ResultsBucket",
    "telemetry": "TelemetryBucket",
    "artifacts": "ArtifactsBucket",
}
EXPRESS_BUCKET = "ExpressArtifactsBucket"
KMS_KEY = "DataKey"
STATE_MACHINE = "StateMachine"
STREAM = "TelemetryStream"
WORKGROUP = "AthenaWorkGroup"

STEP_FUNCTIONS_LOG_DELIVERY_ACTIONS: tuple[str, ...] = (
    "logs:CreateLogDelivery",
    "logs:GetLogDelivery",
    "logs:UpdateLogDelivery",
    "logs:DeleteLogDelivery",
    "logs:ListLogDeliveries",
    "logs:PutResourcePolicy",
    "logs:DescribeResourcePolicies",
    "logs:DescribeLogGroups",
)
"""What Step Functions needs to deliver its logs to CloudWatch Logs. These actions support
no resource-level permissions, so AWS documents them with ``Resource: "*"``: the one
wildcard resource in the stack (the least-privilege test lists it as an exception)."""

_STACK_NAME = re.compile(r"[A-Za-z][A-Za-z0-9-]{0,39}")


# --- intrinsic functions -------------------------------------------------------------


def ref(logical_id: str) -> Json:
    """``{"Ref": logical_id}``."""
    return {"Ref": logical_id}


def get_att(logical_id: str, attribute: str) -> Json:
    """``{"Fn::GetAtt": [logical_id, attribute]}``."""
    return {"Fn::GetAtt": [logical_id, attribute]}


def sub(text: str) -> Json:
    """``{"Fn::Sub": text}``."""
    return {"Fn::Sub": text}


def _objects(bucket_id: str, prefix: str) -> Json:
    """ARN of the objects under ``prefix`` in a bucket of this stack."""
    return sub(f"${{{bucket_id}.Arn}}/{prefix}*")


def _statement(actions: list[str], resources: list[Any], **extra: Any) -> Json:
    return {"Effect": "Allow", "Action": actions, "Resource": resources, **extra}


def _role(service: str, policy_name: str, statements: list[Json]) -> Json:
    return {
        "Type": "AWS::IAM::Role",
        "Properties": {
            "AssumeRolePolicyDocument": {
                "Version": "2012-10-17",
                "Statement": [
                    {
                        "Effect": "Allow",
                        "Principal": {"Service": service},
                        "Action": "sts:AssumeRole",
                    }
                ],
            },
            "Policies": [
                {
                    "PolicyName": policy_name,
                    "PolicyDocument": {"Version": "2012-10-17", "Statement": statements},
                }
            ],
        },
    }


def _logical(stage: str) -> str:
    return "".join(part.capitalize() for part in stage.split("_"))


# --- buckets -------------------------------------------------------------------------


def _encryption(kms: bool) -> Json:
    if kms:
        default: Json = {"SSEAlgorithm": "aws:kms", "KMSMasterKeyID": get_att(KMS_KEY, "Arn")}
    else:
        default = {"SSEAlgorithm": "AES256"}
    return {
        "ServerSideEncryptionConfiguration": [
            {"ServerSideEncryptionByDefault": default, "BucketKeyEnabled": kms}
        ]
    }


def _lifecycle_rules(name: str) -> list[Json]:
    abort = {"DaysAfterInitiation": 1}
    rules: dict[str, list[Json]] = {
        "images": [
            {
                "Id": "abort-incomplete-uploads",
                "Status": "Enabled",
                "Prefix": INCOMING_PREFIX,
                "AbortIncompleteMultipartUpload": abort,
            }
        ],
        "results": [
            # A result deletes the image's stale failure and vice versa; in a versioned
            # bucket each delete leaves a marker, removed here once nothing is behind it.
            {
                "Id": "expire-old-result-versions",
                "Status": "Enabled",
                "Prefix": RESULT_PREFIX,
                "NoncurrentVersionExpiration": {"NoncurrentDays": 30},
                "ExpiredObjectDeleteMarker": True,
            },
            {
                "Id": "expire-old-failure-versions",
                "Status": "Enabled",
                "Prefix": FAILED_PREFIX,
                "NoncurrentVersionExpiration": {"NoncurrentDays": 30},
                "ExpiredObjectDeleteMarker": True,
            },
            {
                "Id": "expire-athena-results",
                "Status": "Enabled",
                "Prefix": ATHENA_PREFIX,
                "ExpirationInDays": 7,
            },
        ],
        "telemetry": [
            {
                "Id": "expire-delivery-errors",
                "Status": "Enabled",
                "Prefix": "telemetry-errors/",
                "ExpirationInDays": 30,
            },
            {
                "Id": "abort-incomplete-uploads",
                "Status": "Enabled",
                "Prefix": "telemetry/",
                "AbortIncompleteMultipartUpload": abort,
            },
        ],
        "artifacts": [
            {
                "Id": "expire-tensors",
                "Status": "Enabled",
                "Prefix": TENSOR_PREFIX,
                "ExpirationInDays": 1,
            },
            {
                "Id": "expire-upload-claims",
                "Status": "Enabled",
                "Prefix": CLAIM_PREFIX,
                "ExpirationInDays": 30,
            },
            {
                "Id": "abort-incomplete-model-uploads",
                "Status": "Enabled",
                "Prefix": MODEL_PREFIX,
                "AbortIncompleteMultipartUpload": abort,
            },
        ],
    }
    return rules[name]


def _bucket(name: str, kms: bool) -> Json:
    props: Json = {
        "BucketEncryption": _encryption(kms),
        "PublicAccessBlockConfiguration": {
            "BlockPublicAcls": True,
            "BlockPublicPolicy": True,
            "IgnorePublicAcls": True,
            "RestrictPublicBuckets": True,
        },
        "OwnershipControls": {"Rules": [{"ObjectOwnership": "BucketOwnerEnforced"}]},
        "LifecycleConfiguration": {"Rules": _lifecycle_rules(name)},
        "Tags": [{"Key": "radstream:bucket", "Value": name}],
    }
    if name == "results":
        # A result or failure object overwritten by a re-run keeps its previous version.
        props["VersioningConfiguration"] = {"Status": "Enabled"}
    if name == "images":
        props["NotificationConfiguration"] = {
            "EventBridgeConfiguration": {"EventBridgeEnabled": True}
        }
    return {"Type": "AWS::S3::Bucket", "Properties": props}


def _tls_only_policy(bucket_id: str) -> Json:
    return {
        "Type": "AWS::S3::BucketPolicy",
        "Properties": {
            "Bucket": ref(bucket_id),
            "PolicyDocument": {
                "Version": "2012-10-17",
                "Statement": [
                    {
                        "Sid": "DenyInsecureTransport",
                        "Effect": "Deny",
                        "Principal": "*",
                        "Action": "s3:*",
                        "Resource": [get_att(bucket_id, "Arn"), _objects(bucket_id, "")],
                        "Condition": {"Bool": {"aws:SecureTransport": "false"}},
                    }
                ],
            },
        },
    }


def _kms_key() -> Json:
    return {
        "Type": "AWS::KMS::Key",
        "Properties": {
            "Description": "RadStream data key: buckets and Athena results of this stack",
            "EnableKeyRotation": True,
            "KeyPolicy": {
                "Version": "2012-10-17",
                "Statement": [
                    {
                        # The account's IAM policies decide who may use the key; the roles
                        # of this stack get only the KMS actions their stage needs.
                        "Sid": "DelegateToIam",
                        "Effect": "Allow",
                        "Principal": {
                            "AWS": sub("arn:${AWS::Partition}:iam::${AWS::AccountId}:root")
                        },
                        "Action": "kms:*",
                        "Resource": "*",
                    }
                ],
            },
        },
    }


def _express_bucket() -> Json:
    # Directory buckets always block public access and accept only session-authenticated
    # (CreateSession) requests; their lifecycle rules take a Prefix like general buckets.
    return {
        "Type": "AWS::S3Express::DirectoryBucket",
        "Properties": {
            "DataRedundancy": "SingleAvailabilityZone",
            "LocationName": ref("ExpressZoneId"),
            "BucketEncryption": {
                "ServerSideEncryptionConfiguration": [
                    {"ServerSideEncryptionByDefault": {"SSEAlgorithm": "AES256"}}
                ]
            },
            "LifecycleConfiguration": {
                "Rules": [
                    {
                        "Id": "expire-tensors",
                        "Status": "Enabled",
                        "Prefix": TENSOR_PREFIX,
                        "ExpirationInDays": 1,
                    }
                ]
            },
        },
    }


# --- Lambda --------------------------------------------------------------------------


def _stage_statements(
    stage: str, *, kms: bool, express_artifacts: bool, in_lambda_model: bool
) -> list[Json]:
    images, results, artifacts = BUCKETS["images"], BUCKETS["results"], BUCKETS["artifacts"]
    reads: list[Any] = []
    writes: list[Any] = []
    deletes: list[Any] = []
    extra: list[Json] = []

    def tensors(mode: Literal["ReadOnly", "ReadWrite"]) -> None:
        if express_artifacts:
            # botocore opens directory-bucket sessions itself, always in ReadWrite mode, so a
            # ReadOnly condition would refuse infer's reads. The bucket holds only tensors.
            extra.append(_statement(["s3express:CreateSession"], [get_att(EXPRESS_BUCKET, "Arn")]))
        elif mode == "ReadOnly":
            reads.append(_objects(artifacts, TENSOR_PREFIX))
        else:
            writes.append(_objects(artifacts, TENSOR_PREFIX))

    if stage == VALIDATE:
        reads.append(_objects(images, INCOMING_PREFIX))
        # One execution per upload: validate claims it with a conditional PUT, and reads
        # the claim back when another execution got there first.
        reads.append(_objects(artifacts, CLAIM_PREFIX))
        writes.append(_objects(artifacts, CLAIM_PREFIX))
        extra.append(
            _statement(
                ["s3:ListBucket"],
                [get_att(images, "Arn")],
                Condition={"StringLike": {"s3:prefix": [f"{INCOMING_PREFIX}*"]}},
            )
        )
    elif stage == PREPARE:
        reads.append(_objects(images, INCOMING_PREFIX))
        tensors("ReadWrite")
    elif stage == INFER:
        tensors("ReadOnly")
        if in_lambda_model:
            reads.append(_objects(artifacts, MODEL_PREFIX))
    elif stage == STORE:
        writes.append(_objects(results, RESULT_PREFIX))
        deletes.append(_objects(results, FAILED_PREFIX))
    elif stage == RECORD_FAILURE:
        writes.append(_objects(results, FAILED_PREFIX))
        deletes.append(_objects(results, RESULT_PREFIX))
    else:  # pragma: no cover - STAGES is fixed
        raise KeyError(stage)

    statements: list[Json] = []
    if reads:
        statements.append(_statement(["s3:GetObject"], reads))
    if writes:
        statements.append(_statement(["s3:PutObject"], writes))
    if deletes:
        statements.append(_statement(["s3:DeleteObject"], deletes))
    statements.extend(extra)
    if kms:
        kms_actions = (["kms:Decrypt"] if reads else []) + (
            ["kms:GenerateDataKey"] if writes else []
        )
        if kms_actions:
            statements.append(_statement(kms_actions, [get_att(KMS_KEY, "Arn")]))
    statements.append(_statement(["kinesis:PutRecords"], [get_att(STREAM, "Arn")]))
    statements.append(
        _statement(
            ["logs:CreateLogStream", "logs:PutLogEvents"],
            [get_att(f"{_logical(stage)}LogGroup", "Arn")],
        )
    )
    return statements


def _function(
    stack: str,
    stage: str,
    *,
    runtime: str,
    memory_mb: int,
    architecture: str,
    environment: Json,
) -> Json:
    layers = [ref(LAYER_RESOURCES[layer]) for layer in STAGE_LAYERS[stage]]
    function: Json = {
        "Type": "AWS::Lambda::Function",
        "Properties": {
            "FunctionName": _function_name(stack, stage),
            "Description": f"RadStream {stage} stage",
            "Runtime": runtime,
            "Handler": f"radstream.aws.handlers.{stage}",
            "Code": {"S3Bucket": ref("CodeBucket"), "S3Key": ref("CodeKey")},
            "Role": get_att(f"{_logical(stage)}Role", "Arn"),
            "MemorySize": memory_mb,
            "Architectures": [architecture],
            "Timeout": LAMBDA_TIMEOUT_S[stage],
            "LoggingConfig": {"LogGroup": ref(f"{_logical(stage)}LogGroup")},
            "Environment": {"Variables": environment},
        },
    }
    if layers:
        function["Properties"]["Layers"] = layers
    return function


def _layer(stack: str, layer: str, architecture: str, runtime: str) -> Json:
    return {
        "Type": "AWS::Lambda::LayerVersion",
        "Properties": {
            "LayerName": f"{stack}-{layer}",
            "Description": f"RadStream {layer} libraries (radstream aws package)",
            "Content": {"S3Bucket": ref("CodeBucket"), "S3Key": ref(LAYER_KEY_PARAMETERS[layer])},
            "CompatibleRuntimes": [runtime],
            "CompatibleArchitectures": [architecture],
        },
    }


def _function_name(stack: str, stage: str) -> str:
    return f"{stack}-{stage.replace('_', '-')}"


# --- the template --------------------------------------------------------------------


def _check(stack: str, memory_mb: int, architecture: str, state_machine_type: str) -> None:
    if not _STACK_NAME.fullmatch(stack):
        raise ConfigInvalid(
            f"stack name {stack!r} must start with a letter and have 1-40 letters, digits "
            "or '-' (it prefixes function names, which are limited to 64 characters)"
        )
    if not 128 <= memory_mb <= 10240:
        raise ConfigInvalid(f"Lambda memory {memory_mb} MB is outside 128-10240")
    if architecture not in ("x86_64", "arm64"):
        raise ConfigInvalid(f"architecture {architecture!r} is not x86_64 or arm64")
    if state_machine_type not in ("STANDARD", "EXPRESS"):
        raise ConfigInvalid(f"state machine type {state_machine_type!r} is not STANDARD/EXPRESS")


def _glue_table() -> Json:
    """``table_input`` with its location as ``Fn::Sub`` on the telemetry bucket."""
    marker = "radstream-telemetry-bucket-placeholder"
    spec = table_input(f"s3://{marker}/telemetry/")

    def resolve(value: Any) -> Any:
        if isinstance(value, dict):
            return {k: resolve(v) for k, v in value.items()}
        if isinstance(value, list):
            return [resolve(v) for v in value]
        if isinstance(value, str) and marker in value:
            # ${dt}/${hour} are Athena projection variables: escape them from Fn::Sub.
            text = value.replace("${", "${!").replace(marker, "${" + BUCKETS["telemetry"] + "}")
            return sub(text)
        return value

    return {
        "Type": "AWS::Glue::Table",
        "Properties": {
            "CatalogId": ref("AWS::AccountId"),
            "DatabaseName": ref("GlueDatabase"),
            "TableInput": resolve(spec),
        },
    }


def _telemetry(kms: bool) -> dict[str, Json]:
    telemetry = BUCKETS["telemetry"]
    source_role = _role(
        "firehose.amazonaws.com",
        "read-telemetry-stream",
        [
            _statement(
                [
                    "kinesis:DescribeStream",
                    "kinesis:GetShardIterator",
                    "kinesis:GetRecords",
                    "kinesis:ListShards",
                ],
                [get_att(STREAM, "Arn")],
            )
        ],
    )
    glue_arn = "arn:${AWS::Partition}:glue:${AWS::Region}:${AWS::AccountId}"
    delivery_statements = [
        _statement(
            ["s3:GetBucketLocation", "s3:ListBucket", "s3:ListBucketMultipartUploads"],
            [get_att(telemetry, "Arn")],
        ),
        _statement(
            ["s3:AbortMultipartUpload", "s3:GetObject", "s3:PutObject"],
            [_objects(telemetry, "telemetry/"), _objects(telemetry, "telemetry-errors/")],
        ),
        # Record format conversion reads the table's columns (JSON in, Parquet out).
        _statement(
            ["glue:GetTable", "glue:GetTableVersion", "glue:GetTableVersions"],
            [
                sub(f"{glue_arn}:catalog"),
                sub(f"{glue_arn}:database/{DATABASE}"),
                sub(f"{glue_arn}:table/{DATABASE}/{TABLE}"),
            ],
        ),
    ]
    if kms:
        delivery_statements.append(
            _statement(["kms:GenerateDataKey", "kms:Decrypt"], [get_att(KMS_KEY, "Arn")])
        )
    delivery_role = _role("firehose.amazonaws.com", "write-telemetry-bucket", delivery_statements)
    stream = {
        "Type": "AWS::Kinesis::Stream",
        "Properties": {
            "StreamModeDetails": {"StreamMode": "ON_DEMAND"},
            "RetentionPeriodHours": 24,
            "StreamEncryption": {"EncryptionType": "KMS", "KeyId": "alias/aws/kinesis"},
        },
    }
    delivery = {
        "Type": "AWS::KinesisFirehose::DeliveryStream",
        "Properties": {
            "DeliveryStreamType": "KinesisStreamAsSource",
            "KinesisStreamSourceConfiguration": {
                "KinesisStreamARN": get_att(STREAM, "Arn"),
                "RoleARN": get_att("FirehoseSourceRole", "Arn"),
            },
            "ExtendedS3DestinationConfiguration": {
                "BucketARN": get_att(telemetry, "Arn"),
                "RoleARN": get_att("FirehoseDeliveryRole", "Arn"),
                "Prefix": TELEMETRY_PREFIX,
                "ErrorOutputPrefix": TELEMETRY_ERROR_PREFIX,
                # Record format conversion needs a buffer of at least 64 MB.
                "BufferingHints": {"IntervalInSeconds": 60, "SizeInMBs": 64},
                "CompressionFormat": "UNCOMPRESSED",
                "DataFormatConversionConfiguration": {
                    "Enabled": True,
                    "InputFormatConfiguration": {"Deserializer": {"OpenXJsonSerDe": {}}},
                    "OutputFormatConfiguration": {
                        "Serializer": {"ParquetSerDe": {"Compression": "SNAPPY"}}
                    },
                    "SchemaConfiguration": {
                        "CatalogId": ref("AWS::AccountId"),
                        "DatabaseName": ref("GlueDatabase"),
                        "TableName": ref("TelemetryTable"),
                        "Region": ref("AWS::Region"),
                        "RoleARN": get_att("FirehoseDeliveryRole", "Arn"),
                        "VersionId": "LATEST",
                    },
                },
            },
        },
    }
    return {
        STREAM: stream,
        "FirehoseSourceRole": source_role,
        "FirehoseDeliveryRole": delivery_role,
        "TelemetryDelivery": delivery,
    }


def _athena(stack: str, kms: bool) -> dict[str, Json]:
    encryption: Json = (
        {"EncryptionOption": "SSE_KMS", "KmsKey": get_att(KMS_KEY, "Arn")}
        if kms
        else {"EncryptionOption": "SSE_S3"}
    )
    resources: dict[str, Json] = {
        WORKGROUP: {
            "Type": "AWS::Athena::WorkGroup",
            "Properties": {
                "Name": f"{stack}-radstream",
                "Description": "RadStream telemetry queries",
                "RecursiveDeleteOption": True,
                "WorkGroupConfiguration": {
                    "EnforceWorkGroupConfiguration": True,
                    "PublishCloudWatchMetricsEnabled": True,
                    "ResultConfiguration": {
                        "OutputLocation": sub(f"s3://${{{BUCKETS['results']}}}/{ATHENA_PREFIX}"),
                        "EncryptionConfiguration": encryption,
                    },
                },
            },
        }
    }
    for query in named_queries().values():
        logical = "Query" + "".join(p.capitalize() for p in re.split(r"[^A-Za-z0-9]+", query.name))
        resources[logical] = {
            "Type": "AWS::Athena::NamedQuery",
            "Condition": NAMED_QUERIES_CONDITION,
            "DependsOn": "TelemetryTable",
            "Properties": {
                "Name": query.name,
                "Description": _query_description(query)[:1024],
                "Database": ref("GlueDatabase"),
                "WorkGroup": ref(WORKGROUP),
                # Athena's own parameter syntax, so the saved query runs from the console,
                # which asks for each `?` in turn.
                "QueryString": to_positional(query.sql, query.bind({}))[0],
            },
        }
    return resources


def _query_description(query: NamedQuery) -> str:
    if not query.params:
        return query.description
    order = ", ".join(positional_names(query.sql))
    return f"{query.description} Parameters (each ?, in order): {order}."


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
) -> Json:
    """The CloudFormation template of stack ``stack`` (see the module doc)."""
    _check(stack, memory_mb, architecture, state_machine_type)
    if python_version not in SUPPORTED_PYTHON:
        raise ConfigInvalid(f"Python {python_version} is not one of {', '.join(SUPPORTED_PYTHON)}")
    runtime = f"python{python_version}"
    in_lambda_model = model_endpoint is None
    parameters: Json = {
        "CodeBucket": {
            "Type": "String",
            "Description": "S3 bucket holding the Lambda package (radstream aws package)",
        },
        "CodeKey": {"Type": "String", "Description": "key of the Lambda package zip"},
        **{
            LAYER_KEY_PARAMETERS[layer]: {
                "Type": "String",
                "Description": f"key of the {layer} layer zip (radstream aws package)",
            }
            for layer in LAYERS
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
                "Description": f"{env} for the stage functions (empty: unset)",
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
    if in_lambda_model:
        parameters["ModelKey"] = {
            "Type": "String",
            "Default": f"{MODEL_PREFIX}radstream.onnx",
            "AllowedPattern": f"^{MODEL_PREFIX}.+",
            "Description": "ONNX model key in the artifacts bucket (infer loads it once per container)",
        }
    if express_artifacts:
        parameters["ExpressZoneId"] = {
            "Type": "String",
            "Description": "Availability Zone id of the directory bucket, e.g. use1-az4",
        }

    resources: Json = {}
    if kms:
        resources[KMS_KEY] = _kms_key()
    for name, logical in BUCKETS.items():
        resources[logical] = _bucket(name, kms)
        resources[f"{logical}Policy"] = _tls_only_policy(logical)
    tensor_bucket = BUCKETS["artifacts"]
    if express_artifacts:
        resources[EXPRESS_BUCKET] = _express_bucket()
        tensor_bucket = EXPRESS_BUCKET

    environment: Json = {
        "RADSTREAM_AWS__IMAGES_BUCKET": ref(BUCKETS["images"]),
        "RADSTREAM_AWS__RESULTS_BUCKET": ref(BUCKETS["results"]),
        "RADSTREAM_AWS__ARTIFACTS_BUCKET": ref(BUCKETS["artifacts"]),
        "RADSTREAM_AWS__TENSOR_BUCKET": ref(tensor_bucket),
        "RADSTREAM_AWS__TELEMETRY_STREAM": ref(STREAM),
        "RADSTREAM_COST__MEMORY_MB": str(memory_mb),
        "RADSTREAM_COST__ARCHITECTURE": architecture,
        "RADSTREAM_COST__STATE_MACHINE": state_machine_type,
        "RADSTREAM_COST__STORAGE_CLASS": "express" if express_artifacts else "standard",
        "RADSTREAM_AWS__PREPROCESSING": ref("ModelPreprocessing"),
        # Secrets travel as NoEcho parameters, never in the template text.
        **{env: ref(parameter) for env, parameter in SECRET_PARAMETERS.items()},
        **(settings_env or {}),
    }
    if model_endpoint is not None:
        environment["RADSTREAM_MODEL__ENDPOINT"] = model_endpoint
    else:
        environment["RADSTREAM_AWS__MODEL_KEY"] = ref("ModelKey")

    for layer in LAYERS:
        resources[LAYER_RESOURCES[layer]] = _layer(stack, layer, architecture, runtime)
    for stage in STAGES:
        logical = _logical(stage)
        resources[f"{logical}LogGroup"] = {
            "Type": "AWS::Logs::LogGroup",
            "Properties": {
                "LogGroupName": f"/aws/lambda/{_function_name(stack, stage)}",
                "RetentionInDays": LOG_RETENTION_DAYS,
            },
        }
        resources[f"{logical}Role"] = _role(
            "lambda.amazonaws.com",
            f"{stage}-stage",
            _stage_statements(
                stage, kms=kms, express_artifacts=express_artifacts, in_lambda_model=in_lambda_model
            ),
        )
        resources[f"{logical}Function"] = _function(
            stack,
            stage,
            runtime=runtime,
            memory_mb=memory_mb,
            architecture=architecture,
            environment=environment,
        )

    function_arns = {stage: f"${{{_logical(stage)}FunctionArn}}" for stage in STAGES}
    substitutions: Json = {
        f"{_logical(stage)}FunctionArn": get_att(f"{_logical(stage)}Function", "Arn")
        for stage in STAGES
    }
    substitutions["TensorBucket"] = ref(tensor_bucket)
    resources["StateMachineLogGroup"] = {
        "Type": "AWS::Logs::LogGroup",
        "Properties": {
            "LogGroupName": f"/aws/vendedlogs/states/{stack}-pipeline",
            "RetentionInDays": LOG_RETENTION_DAYS,
        },
    }
    resources["StateMachineRole"] = _role(
        "states.amazonaws.com",
        "invoke-stage-functions",
        [
            _statement(
                ["lambda:InvokeFunction"],
                [get_att(f"{_logical(stage)}Function", "Arn") for stage in STAGES],
            ),
            # Exception, documented by AWS: log delivery actions take no resource ARN.
            _statement(list(STEP_FUNCTIONS_LOG_DELIVERY_ACTIONS), ["*"]),
        ],
    )
    resources[STATE_MACHINE] = {
        "Type": "AWS::StepFunctions::StateMachine",
        "Properties": {
            # The type is in the name: changing it replaces the state machine, and
            # CloudFormation cannot replace a resource under the same fixed name.
            "StateMachineName": f"{stack}-pipeline-{state_machine_type.lower()}",
            "StateMachineType": state_machine_type,
            "RoleArn": get_att("StateMachineRole", "Arn"),
            "DefinitionString": asl_json(
                function_arns=function_arns,
                retry=RetryPolicy(),
                artifacts_bucket="${TensorBucket}",
                # An EXPRESS execution may last 5 minutes in all, so its outage budget is
                # shorter; the rest of that time is for the stages themselves.
                outage_budget_s=(
                    EXPRESS_OUTAGE_BUDGET_S
                    if state_machine_type == "EXPRESS"
                    else DEFAULT_OUTAGE_BUDGET_S
                ),
            ),
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
    resources["UploadRuleRole"] = _role(
        "events.amazonaws.com",
        "start-pipeline",
        [_statement(["states:StartExecution"], [ref(STATE_MACHINE)])],
    )
    resources["UploadRule"] = {
        "Type": "AWS::Events::Rule",
        "Properties": {
            "Description": "one execution per study: the sidecar (incoming/**.json) is the trigger",
            "State": "ENABLED",
            "EventPattern": {
                "source": ["aws.s3"],
                "detail-type": ["Object Created"],
                "detail": {
                    "bucket": {"name": [ref(BUCKETS["images"])]},
                    "object": {"key": [{"wildcard": SIDECAR_PATTERN}]},
                },
            },
            "Targets": [
                {
                    "Id": "pipeline",
                    "Arn": ref(STATE_MACHINE),
                    "RoleArn": get_att("UploadRuleRole", "Arn"),
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
    resources.update(_telemetry(kms))
    resources["GlueDatabase"] = {
        "Type": "AWS::Glue::Database",
        "Properties": {
            "CatalogId": ref("AWS::AccountId"),
            "DatabaseInput": {"Name": DATABASE, "Description": "RadStream telemetry lake"},
        },
    }
    resources["TelemetryTable"] = _glue_table()
    resources.update(_athena(stack, kms))

    outputs: Json = {
        f"{name.capitalize()}BucketName": {"Value": ref(logical)}
        for name, logical in BUCKETS.items()
    }
    if express_artifacts:
        outputs["ExpressArtifactsBucketName"] = {"Value": ref(EXPRESS_BUCKET)}
    outputs["StateMachineArn"] = {"Value": ref(STATE_MACHINE)}
    outputs["TelemetryStreamName"] = {"Value": ref(STREAM)}
    outputs["AthenaWorkGroup"] = {"Value": ref(WORKGROUP)}
    outputs["GlueDatabase"] = {"Value": ref("GlueDatabase")}

    return {
        "AWSTemplateFormatVersion": "2010-09-09",
        "Description": f"RadStream {stack}: chest X-ray inference pipeline (generated; do not edit)",
        "Parameters": parameters,
        "Conditions": {
            NAMED_QUERIES_CONDITION: {"Fn::Equals": [ref(NAMED_QUERIES_PARAMETER), "true"]}
        },
        "Resources": resources,
        "Outputs": outputs,
    }


def template_json(stack: str, **options: Any) -> str:
    """:func:`build_template` as indented JSON text."""
    return json.dumps(build_template(stack, **options), indent=2)
