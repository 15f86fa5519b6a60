"""What the emulator forgives and AWS does not: retention, the partition, the stack key,
directory-bucket lifecycle, and the operations safety nets."""

from __future__ import annotations

import json
from typing import Any

import pytest

from radstream.aws.template import build_template
from radstream.aws.template.compute import definition_of
from radstream.errors import ConfigInvalid

STACK = "rs-test"


def _rules(template: dict[str, Any], bucket: str) -> list[dict[str, Any]]:
    rules: list[dict[str, Any]] = template["Resources"][bucket]["Properties"][
        "LifecycleConfiguration"
    ]["Rules"]
    return rules


def test_athena_results_expire_with_every_version() -> None:
    """The results bucket is versioned: an expiration alone leaves the data behind a
    delete marker, forever."""
    rules = [
        r
        for r in _rules(build_template(STACK), "ResultsBucket")
        if r["Prefix"] == "athena-results/"
    ]
    current = [r for r in rules if "ExpirationInDays" in r]
    assert [r["ExpirationInDays"] for r in current] == [7]
    assert current[0]["NoncurrentVersionExpiration"] == {"NoncurrentDays": 1}
    assert any(r.get("ExpiredObjectDeleteMarker") is True for r in rules)
    for rule in rules:  # S3 refuses a delete-marker expiry beside days in one rule
        assert not ("ExpiredObjectDeleteMarker" in rule and "ExpirationInDays" in rule)


def test_the_directory_bucket_lets_lifecycle_expire_tensors() -> None:
    template = build_template(STACK, express_artifacts=True)
    [policy] = [
        r for r in template["Resources"].values() if r["Type"] == "AWS::S3Express::BucketPolicy"
    ]
    assert policy["Properties"]["Bucket"] == {"Ref": "ExpressArtifactsBucket"}
    [grant] = policy["Properties"]["PolicyDocument"]["Statement"]
    assert grant["Principal"] == {"Service": "lifecycle.s3.amazonaws.com"}
    assert grant["Action"] == "s3express:CreateSession"
    assert grant["Condition"] == {"StringEquals": {"s3express:SessionMode": "ReadWrite"}}
    expiry = template["Resources"]["ExpressArtifactsBucket"]["Properties"]
    assert expiry["LifecycleConfiguration"]["Rules"][0]["ExpirationInDays"] == 1
    assert not [
        r
        for r in build_template(STACK)["Resources"].values()
        if r["Type"] == "AWS::S3Express::BucketPolicy"
    ]


def test_no_arn_names_the_aws_partition() -> None:
    """aws-cn and aws-us-gov stacks: every ARN takes the partition from the stack."""
    template = build_template(STACK, express_artifacts=True, kms=True)
    assert "arn:aws:" not in json.dumps(template)
    definition = definition_of(template["Resources"]["StateMachine"], partition="aws-cn")
    tasks = [s for s in definition["States"].values() if s["Type"] == "Task"]
    assert tasks
    assert {t["Resource"] for t in tasks} == {"arn:aws-cn:states:::lambda:invoke"}
    # The other placeholders are left to DefinitionSubstitutions, unescaped.
    assert all(t["Parameters"]["FunctionName"].startswith("${") for t in tasks)


def test_with_kms_the_log_groups_and_the_stream_use_the_stack_key() -> None:
    key = {"Fn::GetAtt": ["DataKey", "Arn"]}
    template = build_template(STACK, kms=True)
    resources = template["Resources"]
    groups = [r for r in resources.values() if r["Type"] == "AWS::Logs::LogGroup"]
    assert groups and all(g["Properties"]["KmsKeyId"] == key for g in groups)
    stream = resources["TelemetryStream"]["Properties"]["StreamEncryption"]
    assert stream == {"EncryptionType": "KMS", "KeyId": key}
    statements = resources["DataKey"]["Properties"]["KeyPolicy"]["Statement"]
    [logs] = [s for s in statements if "Service" in s["Principal"]]
    assert logs["Principal"]["Service"] == {"Fn::Sub": "logs.${AWS::Region}.amazonaws.com"}
    assert "kms:EncryptionContext:aws:logs:arn" in logs["Condition"]["ArnLike"]
    source = resources["FirehoseSourceRole"]["Properties"]["Policies"][0]["PolicyDocument"]
    assert {"Effect": "Allow", "Action": ["kms:Decrypt"], "Resource": [key]} in source["Statement"]
    plain = build_template(STACK)["Resources"]
    assert all(
        "KmsKeyId" not in r["Properties"]
        for r in plain.values()
        if r["Type"] == "AWS::Logs::LogGroup"
    )
    assert plain["TelemetryStream"]["Properties"]["StreamEncryption"]["KeyId"] == (
        "alias/aws/kinesis"
    )


def test_the_upload_rule_retries_for_a_day_then_keeps_the_event() -> None:
    resources = build_template(STACK)["Resources"]
    [target] = resources["UploadRule"]["Properties"]["Targets"]
    assert target["RetryPolicy"] == {
        "MaximumRetryAttempts": 185,
        "MaximumEventAgeInSeconds": 86400,
    }
    assert target["DeadLetterConfig"] == {"Arn": {"Fn::GetAtt": ["UploadDeadLetters", "Arn"]}}
    queue = resources["UploadDeadLetters"]
    assert queue["Type"] == "AWS::SQS::Queue"
    assert queue["Properties"]["SqsManagedSseEnabled"] is True  # encrypted at rest
    policy = resources["UploadDeadLettersPolicy"]["Properties"]
    allow, deny = policy["PolicyDocument"]["Statement"]
    assert allow["Principal"] == {"Service": "events.amazonaws.com"}
    # Only this stack's rule may write to it.
    assert allow["Condition"] == {
        "ArnEquals": {"aws:SourceArn": {"Fn::GetAtt": ["UploadRule", "Arn"]}}
    }
    assert deny["Effect"] == "Deny" and deny["Condition"]["Bool"] == {
        "aws:SecureTransport": "false"
    }


def test_reserved_concurrency_is_set_per_stage_only_when_asked() -> None:
    capped = build_template(STACK, reserved_concurrency={"infer": 20})["Resources"]
    assert capped["InferFunction"]["Properties"]["ReservedConcurrentExecutions"] == 20
    assert "ReservedConcurrentExecutions" not in capped["StoreFunction"]["Properties"]
    plain = build_template(STACK)["Resources"]
    assert all(
        "ReservedConcurrentExecutions" not in r["Properties"]
        for r in plain.values()
        if r["Type"] == "AWS::Lambda::Function"
    )


@pytest.mark.parametrize(
    ("reserved", "message"),
    [({"nope": 2}, "no such stage"), ({"infer": 0}, "outside"), ({"store": 10**6}, "outside")],
)
def test_bad_reserved_concurrency_is_refused(reserved: dict[str, int], message: str) -> None:
    with pytest.raises(ConfigInvalid, match=message):
        build_template(STACK, reserved_concurrency=reserved)


def test_firehose_logs_its_delivery_errors() -> None:
    resources = build_template(STACK, kms=True)["Resources"]
    destination = resources["TelemetryDelivery"]["Properties"]["ExtendedS3DestinationConfiguration"]
    assert destination["CloudWatchLoggingOptions"] == {
        "Enabled": True,
        "LogGroupName": {"Ref": "TelemetryDeliveryLogGroup"},
        "LogStreamName": {"Ref": "TelemetryDeliveryLogStream"},
    }
    group = resources["TelemetryDeliveryLogGroup"]["Properties"]
    assert group["LogGroupName"] == f"/aws/kinesisfirehose/{STACK}-telemetry"
    assert group["KmsKeyId"] == {"Fn::GetAtt": ["DataKey", "Arn"]}
    role = resources["FirehoseDeliveryRole"]["Properties"]["Policies"][0]["PolicyDocument"]
    assert {
        "Effect": "Allow",
        "Action": ["logs:PutLogEvents"],
        "Resource": [{"Fn::GetAtt": ["TelemetryDeliveryLogGroup", "Arn"]}],
    } in role["Statement"]


def _role_statements(resources: dict[str, Any], stage: str) -> list[Any]:
    policy = resources[f"{stage}Role"]["Properties"]["Policies"][0]["PolicyDocument"]
    statements: list[Any] = policy["Statement"]
    return statements


def test_secrets_live_in_secrets_manager_read_only_by_their_functions() -> None:
    template = build_template(STACK, model_endpoint="https://model.internal:8443", kms=True)
    resources = template["Resources"]
    for name, parameter in (
        ("ModelTokenSecret", "ModelToken"),
        ("PseudonymKeySecret", "PseudonymKey"),
    ):
        secret = resources[name]
        assert secret["Type"] == "AWS::SecretsManager::Secret"
        assert secret["Properties"]["SecretString"] == {"Ref": parameter}
        assert secret["Properties"]["KmsKeyId"] == {"Fn::GetAtt": ["DataKey", "Arn"]}
        # Only when given: an empty parameter creates no secret.
        assert template["Conditions"][secret["Condition"]] == {
            "Fn::Not": [{"Fn::Equals": [{"Ref": parameter}, ""]}]
        }
    arn = "arn:${AWS::Partition}:secretsmanager:${AWS::Region}:${AWS::AccountId}:secret:"
    token_arn = {"Fn::Sub": f"{arn}{STACK}/radstream/model-token-??????"}
    key_arn = {"Fn::Sub": f"{arn}{STACK}/radstream/pseudonym-key-??????"}
    for stage in ("Validate", "Prepare", "Infer", "Store", "RecordFailure"):
        statements = _role_statements(resources, stage)
        variables = resources[f"{stage}Function"]["Properties"]["Environment"]["Variables"]
        [reads] = [s for s in statements if s["Action"] == ["secretsmanager:GetSecretValue"]]
        # The token: the stage that calls the endpoint, alone.
        assert (token_arn in reads["Resource"]) is (stage == "Infer")
        assert ("SECRET_ID_RADSTREAM_MODEL__TOKEN" in variables) is (stage == "Infer")
        # The pseudonym key: every stage writes telemetry.
        assert key_arn in reads["Resource"]
        assert variables["SECRET_ID_RADSTREAM_TELEMETRY__PSEUDONYM_KEY"] == {
            "Fn::If": [
                "HasPseudonymKey",
                f"{STACK}/radstream/pseudonym-key",
                {"Ref": "AWS::NoValue"},
            ]
        }
        assert "RADSTREAM_MODEL__TOKEN" not in variables
        kms = [s for s in statements if "kms:Decrypt" in s["Action"]]
        assert kms, f"{stage} cannot decrypt its secrets"
    in_lambda = build_template(STACK)["Resources"]
    assert all(
        "SECRET_ARN_RADSTREAM_MODEL__TOKEN" not in r["Properties"]["Environment"]["Variables"]
        for r in in_lambda.values()
        if r["Type"] == "AWS::Lambda::Function"
    )


def test_loss_has_alarms_and_failure_does_not() -> None:
    topic = "arn:aws:sns:eu-west-1:123456789012:radstream-ops"
    # The loss alarms alone: the operational ones come with the dashboard
    # (tests/aws/test_template_operations.py).
    resources = build_template(STACK, alarm_topic=topic, dashboard=False)["Resources"]
    alarms = {
        k: r["Properties"] for k, r in resources.items() if r["Type"] == "AWS::CloudWatch::Alarm"
    }
    watched = {(a["Namespace"], a["MetricName"]) for a in alarms.values()}
    assert watched == {
        ("AWS/SQS", "ApproximateNumberOfMessagesVisible"),  # an execution never started
        ("AWS/Lambda", "Errors"),  # on record_failure: its outcome not written
        ("AWS/States", "ExecutionsTimedOut"),
        ("AWS/States", "ExecutionsAborted"),
    }
    assert ("AWS/States", "ExecutionsFailed") not in watched  # a recorded failure is normal
    [record] = [a for a in alarms.values() if a["MetricName"] == "Errors"]
    assert record["Dimensions"] == [{"Name": "FunctionName", "Value": f"{STACK}-record-failure"}]
    for alarm in alarms.values():
        assert alarm["AlarmActions"] == [topic]
        assert alarm["Threshold"] == 1 and alarm["TreatMissingData"] == "notBreaching"
    quiet = build_template(STACK)["Resources"]
    assert all(
        "AlarmActions" not in r["Properties"]
        for r in quiet.values()
        if r["Type"] == "AWS::CloudWatch::Alarm"
    )
    with pytest.raises(ConfigInvalid, match="SNS topic"):
        build_template(STACK, alarm_topic="ops@example.com")
