"""Telemetry: an on-demand, encrypted Kinesis stream, and Firehose into the lake.

Firehose reads the stream, converts the JSON records to Parquet with the Glue table's
columns, and writes Hive-style ``telemetry/dt=…/hour=…/`` prefixes (errors under
``telemetry-errors/``). Its two roles live here, next to what they grant.
"""

from __future__ import annotations

from radstream.lake.glue import TABLE
from radstream.layout import TELEMETRY, Bucket

from .intrinsics import (
    BUCKETS,
    GLUE_DATABASE,
    KMS_KEY,
    STREAM,
    TELEMETRY_TABLE,
    Json,
    get_att,
    objects_arn,
    ref,
    role,
    statement,
    sub,
)
from .names import glue_database_name
from .storage import TELEMETRY_ERRORS

TELEMETRY_PREFIX = f"{TELEMETRY}dt=!{{timestamp:yyyy-MM-dd}}/hour=!{{timestamp:HH}}/"
"""Firehose's delivery prefix: Hive partitions the Glue table projects."""
TELEMETRY_ERROR_PREFIX = (
    f"{TELEMETRY_ERRORS}!{{firehose:error-output-type}}/dt=!{{timestamp:yyyy-MM-dd}}/"
)


def _source_role(kms: bool) -> Json:
    statements = [
        statement(
            [
                "kinesis:DescribeStream",
                "kinesis:GetShardIterator",
                "kinesis:GetRecords",
                "kinesis:ListShards",
            ],
            [get_att(STREAM, "Arn")],
        )
    ]
    if kms:  # the stream is encrypted with the stack key
        statements.append(statement(["kms:Decrypt"], [get_att(KMS_KEY, "Arn")]))
    return role("firehose.amazonaws.com", "read-telemetry-stream", statements)


def _delivery_role(stack: str, kms: bool) -> Json:
    telemetry = BUCKETS[Bucket.TELEMETRY]
    database = glue_database_name(stack)
    glue_arn = "arn:${AWS::Partition}:glue:${AWS::Region}:${AWS::AccountId}"
    statements = [
        statement(
            ["s3:GetBucketLocation", "s3:ListBucket", "s3:ListBucketMultipartUploads"],
            [get_att(telemetry, "Arn")],
        ),
        statement(
            ["s3:AbortMultipartUpload", "s3:GetObject", "s3:PutObject"],
            [objects_arn(telemetry, TELEMETRY), objects_arn(telemetry, TELEMETRY_ERRORS)],
        ),
        # Record format conversion reads the table's columns (JSON in, Parquet out).
        statement(
            ["glue:GetTable", "glue:GetTableVersion", "glue:GetTableVersions"],
            [
                sub(f"{glue_arn}:catalog"),
                sub(f"{glue_arn}:database/{database}"),
                sub(f"{glue_arn}:table/{database}/{TABLE}"),
            ],
        ),
    ]
    statements.append(statement(["logs:PutLogEvents"], [get_att(DELIVERY_LOG_GROUP, "Arn")]))
    if kms:
        statements.append(
            statement(["kms:GenerateDataKey", "kms:Decrypt"], [get_att(KMS_KEY, "Arn")])
        )
    return role("firehose.amazonaws.com", "write-telemetry-bucket", statements)


DELIVERY_LOG_GROUP = "TelemetryDeliveryLogGroup"
DELIVERY_LOG_STREAM = "TelemetryDeliveryLogStream"
DELIVERY_LOG_RETENTION_DAYS = 30


def _delivery_logs(stack: str, kms: bool) -> Json:
    """Where Firehose logs what it could not deliver or convert (a record it drops is
    otherwise seen only in the error prefix of the bucket)."""
    group: Json = {
        "LogGroupName": f"/aws/kinesisfirehose/{stack}-telemetry",
        "RetentionInDays": DELIVERY_LOG_RETENTION_DAYS,
    }
    if kms:
        group["KmsKeyId"] = get_att(KMS_KEY, "Arn")
    return {
        DELIVERY_LOG_GROUP: {"Type": "AWS::Logs::LogGroup", "Properties": group},
        DELIVERY_LOG_STREAM: {
            "Type": "AWS::Logs::LogStream",
            "Properties": {"LogGroupName": ref(DELIVERY_LOG_GROUP), "LogStreamName": "S3Delivery"},
        },
    }


def telemetry_resources(stack: str, kms: bool) -> Json:
    """The stream, the delivery stream and Firehose's two roles."""
    stream: Json = {
        "Type": "AWS::Kinesis::Stream",
        "Properties": {
            "StreamModeDetails": {"StreamMode": "ON_DEMAND"},
            "RetentionPeriodHours": 24,
            # With --kms the stack's key, like every other store of the stack.
            "StreamEncryption": {
                "EncryptionType": "KMS",
                "KeyId": get_att(KMS_KEY, "Arn") if kms else "alias/aws/kinesis",
            },
        },
    }
    delivery: Json = {
        "Type": "AWS::KinesisFirehose::DeliveryStream",
        "Properties": {
            "DeliveryStreamType": "KinesisStreamAsSource",
            "KinesisStreamSourceConfiguration": {
                "KinesisStreamARN": get_att(STREAM, "Arn"),
                "RoleARN": get_att("FirehoseSourceRole", "Arn"),
            },
            "ExtendedS3DestinationConfiguration": {
                "BucketARN": get_att(BUCKETS[Bucket.TELEMETRY], "Arn"),
                "RoleARN": get_att("FirehoseDeliveryRole", "Arn"),
                "Prefix": TELEMETRY_PREFIX,
                "ErrorOutputPrefix": TELEMETRY_ERROR_PREFIX,
                "CloudWatchLoggingOptions": {
                    "Enabled": True,
                    "LogGroupName": ref(DELIVERY_LOG_GROUP),
                    "LogStreamName": ref(DELIVERY_LOG_STREAM),
                },
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
                        "DatabaseName": ref(GLUE_DATABASE),
                        "TableName": ref(TELEMETRY_TABLE),
                        "Region": ref("AWS::Region"),
                        "RoleARN": get_att("FirehoseDeliveryRole", "Arn"),
                        "VersionId": "LATEST",
                    },
                },
            },
        },
    }
    return {
        **_delivery_logs(stack, kms),
        STREAM: stream,
        "FirehoseSourceRole": _source_role(kms),
        "FirehoseDeliveryRole": _delivery_role(stack, kms),
        "TelemetryDelivery": delivery,
    }
