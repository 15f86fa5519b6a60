"""CloudFormation's intrinsic functions, the logical ids builders refer to, and IAM shapes.

Everything the builders emit is plain JSON data: :data:`Json` is that boundary.
"""

from __future__ import annotations

from typing import Any

from radstream.layout import Bucket

Json = dict[str, Any]
"""A CloudFormation fragment: JSON data, whose shape CloudFormation (and cfn-lint) check."""

BUCKETS: dict[Bucket, str] = {
    Bucket.IMAGES: "ImagesBucket",
    Bucket.RESULTS: "ResultsBucket",
    Bucket.TELEMETRY: "TelemetryBucket",
    Bucket.ARTIFACTS: "ArtifactsBucket",
}
"""The general-purpose buckets of the stack by logical bucket. ``tensors`` is not here: it
is the Express directory bucket when there is one, else the artifacts bucket."""
EXPRESS_BUCKET = "ExpressArtifactsBucket"
KMS_KEY = "DataKey"
STATE_MACHINE = "StateMachine"
STREAM = "TelemetryStream"
WORKGROUP = "AthenaWorkGroup"
GLUE_DATABASE = "GlueDatabase"
TELEMETRY_TABLE = "TelemetryTable"


def ref(logical_id: str) -> Json:
    """``{"Ref": logical_id}``."""
    return {"Ref": logical_id}


def get_att(logical_id: str, attribute: str) -> Json:
    """``{"Fn::GetAtt": [logical_id, attribute]}``."""
    return {"Fn::GetAtt": [logical_id, attribute]}


def sub(text: str) -> Json:
    """``{"Fn::Sub": text}``."""
    return {"Fn::Sub": text}


def objects_arn(bucket_id: str, prefix: str) -> Json:
    """ARN of the objects under ``prefix`` in the bucket ``bucket_id`` of this stack."""
    return sub(f"${{{bucket_id}.Arn}}/{prefix}*")


def statement(actions: list[str], resources: list[Json | str], **extra: Json) -> Json:
    """An ``Allow`` policy statement (``extra``: e.g. ``Condition``)."""
    return {"Effect": "Allow", "Action": actions, "Resource": resources, **extra}


def role(service: str, policy_name: str, statements: list[Json]) -> Json:
    """An IAM role that ``service`` assumes, with one inline policy of ``statements``."""
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


def logical(stage: str) -> str:
    """The logical-id stem of a stage's resources: ``record_failure`` → ``RecordFailure``."""
    return "".join(part.capitalize() for part in stage.split("_"))


def function_name(stack: str, stage: str) -> str:
    """The Lambda function name of ``stage`` in ``stack``."""
    return f"{stack}-{stage.replace('_', '-')}"
