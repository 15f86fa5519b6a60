"""Storage: the buckets, their TLS-only policies and lifecycle rules, and the KMS key.

Four general-purpose buckets (images, results, telemetry, artifacts) with default
encryption (SSE-S3, or SSE-KMS with a key of this stack), every public access block on,
ACLs disabled, a bucket policy that denies any request not made over TLS, and lifecycle
rules that each name a prefix; results is versioned. Optionally an S3 Express One Zone
directory bucket for tensors.
"""

from __future__ import annotations

from radstream.layout import (
    ATHENA_RESULTS,
    CLAIMS,
    FAILED,
    INCOMING,
    MODELS,
    RESULTS,
    TELEMETRY,
    TENSORS,
    Bucket,
)

from .intrinsics import BUCKETS, EXPRESS_BUCKET, KMS_KEY, Json, get_att, objects_arn, ref, sub
from .options import TemplateOptions

TELEMETRY_ERRORS = "telemetry-errors/"
"""Where Firehose writes records it could not deliver (its own layout, not a pipeline one)."""


def _expire(rule_id: str, prefix: str, days: int) -> Json:
    return {"Id": rule_id, "Status": "Enabled", "Prefix": prefix, "ExpirationInDays": days}


def _abort_uploads(rule_id: str, prefix: str) -> Json:
    return {
        "Id": rule_id,
        "Status": "Enabled",
        "Prefix": prefix,
        "AbortIncompleteMultipartUpload": {"DaysAfterInitiation": 1},
    }


def _expire_old_versions(rule_id: str, prefix: str) -> Json:
    # A result deletes the image's stale failure and vice versa; in a versioned bucket each
    # delete leaves a marker, removed here once nothing is behind it.
    return {
        "Id": rule_id,
        "Status": "Enabled",
        "Prefix": prefix,
        "NoncurrentVersionExpiration": {"NoncurrentDays": 30},
        "ExpiredObjectDeleteMarker": True,
    }


def _expire_with_versions(rule_id: str, prefix: str, days: int) -> list[Json]:
    # In a versioned bucket an expiration only adds a delete marker and keeps the data as a
    # noncurrent version: that version goes a day later, then the marker left alone.
    return [
        {
            **_expire(rule_id, prefix, days),
            "NoncurrentVersionExpiration": {"NoncurrentDays": 1},
        },
        {
            "Id": f"{rule_id}-markers",
            "Status": "Enabled",
            "Prefix": prefix,
            "ExpiredObjectDeleteMarker": True,
        },
    ]


def lifecycle_rules(name: Bucket) -> list[Json]:
    """A bucket's lifecycle rules (new data each call); each names a layout prefix."""
    rules: dict[Bucket, list[Json]] = {
        Bucket.IMAGES: [_abort_uploads("abort-incomplete-uploads", INCOMING)],
        Bucket.RESULTS: [
            _expire_old_versions("expire-old-result-versions", RESULTS),
            _expire_old_versions("expire-old-failure-versions", FAILED),
            # Athena's results hold telemetry with study ids: gone after a week, every
            # version of them.
            *_expire_with_versions("expire-athena-results", ATHENA_RESULTS, 7),
        ],
        Bucket.TELEMETRY: [
            _expire("expire-delivery-errors", TELEMETRY_ERRORS, 30),
            _abort_uploads("abort-incomplete-uploads", TELEMETRY),
        ],
        Bucket.ARTIFACTS: [
            _expire("expire-tensors", TENSORS, 1),
            _expire("expire-upload-claims", CLAIMS, 30),
            _abort_uploads("abort-incomplete-model-uploads", MODELS),
        ],
    }
    return rules[name]


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


def bucket(name: Bucket, kms: bool) -> Json:
    """A general-purpose bucket of the stack: encrypted, private, with its lifecycle rules."""
    props: Json = {
        "BucketEncryption": _encryption(kms),
        "PublicAccessBlockConfiguration": {
            "BlockPublicAcls": True,
            "BlockPublicPolicy": True,
            "IgnorePublicAcls": True,
            "RestrictPublicBuckets": True,
        },
        "OwnershipControls": {"Rules": [{"ObjectOwnership": "BucketOwnerEnforced"}]},
        "LifecycleConfiguration": {"Rules": lifecycle_rules(name)},
        "Tags": [{"Key": "radstream:bucket", "Value": str(name)}],
    }
    if name is Bucket.RESULTS:
        # A result or failure object overwritten by a re-run keeps its previous version.
        props["VersioningConfiguration"] = {"Status": "Enabled"}
    if name is Bucket.IMAGES:
        props["NotificationConfiguration"] = {
            "EventBridgeConfiguration": {"EventBridgeEnabled": True}
        }
    return {"Type": "AWS::S3::Bucket", "Properties": props}


def tls_only_policy(bucket_id: str) -> Json:
    """A bucket policy that denies every request not made over TLS."""
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
                        "Resource": [get_att(bucket_id, "Arn"), objects_arn(bucket_id, "")],
                        "Condition": {"Bool": {"aws:SecureTransport": "false"}},
                    }
                ],
            },
        },
    }


def kms_key() -> Json:
    """The stack's data key (buckets and Athena results), with rotation."""
    return {
        "Type": "AWS::KMS::Key",
        "Properties": {
            "Description": "RadStream data key: buckets, Athena results, telemetry stream "
            "and log groups of this stack",
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
                    },
                    {
                        # CloudWatch Logs encrypts this stack's log groups with the key,
                        # and only log groups of this account and region.
                        "Sid": "AllowLogGroupsOfThisStack",
                        "Effect": "Allow",
                        "Principal": {"Service": sub("logs.${AWS::Region}.amazonaws.com")},
                        "Action": [
                            "kms:Encrypt*",
                            "kms:Decrypt*",
                            "kms:ReEncrypt*",
                            "kms:GenerateDataKey*",
                            "kms:Describe*",
                        ],
                        "Resource": "*",
                        "Condition": {
                            "ArnLike": {
                                "kms:EncryptionContext:aws:logs:arn": sub(
                                    "arn:${AWS::Partition}:logs:${AWS::Region}:${AWS::AccountId}:*"
                                )
                            }
                        },
                    },
                ],
            },
        },
    }


def express_bucket() -> Json:
    """The S3 Express One Zone directory bucket that holds the tensors."""
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
            "LifecycleConfiguration": {"Rules": [_expire("expire-tensors", TENSORS, 1)]},
        },
    }


def express_bucket_policy() -> Json:
    """Lets S3 Lifecycle open ReadWrite sessions on the directory bucket: without it the
    tensors' one-day expiry never runs (Amazon S3 user guide, "Managing the lifecycle of
    objects in directory buckets")."""
    return {
        "Type": "AWS::S3Express::BucketPolicy",
        "Properties": {
            "Bucket": ref(EXPRESS_BUCKET),
            "PolicyDocument": {
                "Version": "2012-10-17",
                "Statement": [
                    {
                        "Sid": "AllowLifecycleExpiry",
                        "Effect": "Allow",
                        "Principal": {"Service": "lifecycle.s3.amazonaws.com"},
                        "Action": "s3express:CreateSession",
                        "Resource": get_att(EXPRESS_BUCKET, "Arn"),
                        "Condition": {"StringEquals": {"s3express:SessionMode": "ReadWrite"}},
                    }
                ],
            },
        },
    }


def storage_resources(options: TemplateOptions) -> Json:
    """The KMS key (with ``kms``), the buckets and their policies, the directory bucket."""
    resources: Json = {}
    if options.kms:
        resources[KMS_KEY] = kms_key()
    for name, logical_id in BUCKETS.items():
        resources[logical_id] = bucket(name, options.kms)
        resources[f"{logical_id}Policy"] = tls_only_policy(logical_id)
    if options.express_artifacts:
        resources[EXPRESS_BUCKET] = express_bucket()
        resources[f"{EXPRESS_BUCKET}Policy"] = express_bucket_policy()
    return resources
