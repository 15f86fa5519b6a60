"""The CloudFormation template: lint-clean, least-privilege, one trigger, safe buckets."""

from __future__ import annotations

import importlib
import itertools
import json
import os
import re
from typing import Any

import pytest

from radstream.aws.asl import LAMBDA_SERVICE_ERRORS, transient_codes
from radstream.aws.athena_runner import positional_names, to_positional
from radstream.aws.secrets import load_secrets
from radstream.aws.template import (
    BUCKETS,
    STEP_FUNCTIONS_LOG_DELIVERY_ACTIONS,
    build_template,
    template_json,
)
from radstream.aws.template.compute import definition_of
from radstream.errors import ConfigInvalid
from radstream.lake.glue import DATABASE, TABLE, glue_columns
from radstream.lake.queries import named_queries
from radstream.layout import is_dicom_drop, is_sidecar
from radstream.pipeline.definition import PIPELINE

STACK = "rs-test"
VARIANTS: list[dict[str, Any]] = [
    {
        "state_machine_type": machine,
        "model_endpoint": endpoint,
        "kms": kms,
        "express_artifacts": express,
    }
    for machine, endpoint, kms, express in itertools.product(
        ("STANDARD", "EXPRESS"), (None, "https://model.internal:8443"), (False, True), (False, True)
    )
]
# Graviton and per-stage reserved concurrency, on top of the 16 above.
VARIANTS.append(
    {
        "state_machine_type": "EXPRESS",
        "model_endpoint": "https://model.internal:8443",
        "kms": True,
        "express_artifacts": True,
        "architecture": "arm64",
        "reserved_concurrency": {"infer": 10},
    }
)
# The dashboard left out, and the alarm e-mail topic with and without the stack key.
VARIANTS += [
    {**VARIANTS[0], "dashboard": False},
    {**VARIANTS[0], "alarm_email": "ops@example.com"},
    {**VARIANTS[0], "kms": True, "alarm_email": "ops@example.com",
     "alarm_topic": "arn:aws:sns:us-east-1:123456789012:ops"},
]  # fmt: skip
# Two variants differ in every option; the lint test covers all 20.
DEFAULT = build_template(STACK)
FULL = build_template(
    STACK,
    memory_mb=3008,
    architecture="arm64",
    state_machine_type="EXPRESS",
    express_artifacts=True,
    model_endpoint="https://model.internal:8443",
    kms=True,
)

# Role policy statements allowed a "*" resource, each with its reason. Step Functions'
# log delivery actions support no resource-level permissions; AWS documents them with
# Resource "*" (Step Functions developer guide, "IAM policies for logging to CloudWatch").
WILDCARD_RESOURCE_ALLOWED: dict[str, frozenset[str]] = {
    "StateMachineRole": frozenset(STEP_FUNCTIONS_LOG_DELIVERY_ACTIONS),
}


def _id(variant: dict[str, Any]) -> str:
    return "-".join(
        [
            variant["state_machine_type"].lower(),
            "endpoint" if variant["model_endpoint"] else "in-lambda",
            "kms" if variant["kms"] else "sse-s3",
            "express" if variant["express_artifacts"] else "standard-s3",
            *([variant["architecture"]] if "architecture" in variant else []),
            *(["no-dashboard"] if variant.get("dashboard") is False else []),
            *(["alarm-email"] if "alarm_email" in variant else []),
        ]
    )


def _resources(template: dict[str, Any], kind: str) -> dict[str, dict[str, Any]]:
    return {k: v for k, v in template["Resources"].items() if v["Type"] == kind}


def _as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


def _text(value: Any) -> str | None:
    """The literal text of a resource value; None for Ref/GetAtt (a specific resource)."""
    if isinstance(value, str):
        return value
    if isinstance(value, dict) and "Fn::Sub" in value:
        sub = value["Fn::Sub"]
        return sub if isinstance(sub, str) else str(sub[0])
    return None


@pytest.mark.parametrize("variant", VARIANTS, ids=[_id(v) for v in VARIANTS])
def test_cfn_lint_reports_no_errors(variant: dict[str, Any]) -> None:
    try:
        api = importlib.import_module("cfnlint.api")
    except ImportError:
        pytest.skip("cfn-lint is not installed: pip install cfn-lint (a dev dependency)")
    matches = api.lint(
        template_json(STACK, **variant), config=api.ManualArgs(regions=["us-east-1", "eu-west-1"])
    )
    # Errors and warnings both fail: warnings are where a first version hid its mistakes.
    assert not matches, "\n".join(str(m) for m in matches)


@pytest.mark.parametrize("template", [DEFAULT, FULL], ids=["default", "full"])
def test_role_policies_have_no_wildcards(template: dict[str, Any]) -> None:
    roles = _resources(template, "AWS::IAM::Role")
    assert len(roles) >= 5 + 4  # 5 stages + state machine, rule, firehose x2
    for name, role in roles.items():
        props = role["Properties"]
        assert "ManagedPolicyArns" not in props, name
        for policy in props["Policies"]:
            for st in policy["PolicyDocument"]["Statement"]:
                assert st["Effect"] == "Allow", name
                assert "NotAction" not in st and "NotResource" not in st, name
                actions = _as_list(st["Action"])
                for action in actions:
                    assert "*" not in action, f"{name}: wildcard action {action}"
                for resource in _as_list(st["Resource"]):
                    text = _text(resource)
                    if text == "*":
                        allowed = WILDCARD_RESOURCE_ALLOWED.get(name, frozenset())
                        assert set(actions) <= allowed, f"{name}: {actions} on *"
                        continue
                    if text is None:
                        continue
                    assert not text.endswith(":*"), f"{name}: {text}"
                    # Objects only under a prefix: never a whole bucket's objects.
                    assert not text.endswith(".Arn}/*"), f"{name}: all objects of {text}"


def _stage_statements(template: dict[str, Any], stage: str) -> list[dict[str, Any]]:
    logical = "".join(p.capitalize() for p in stage.split("_"))
    role = template["Resources"][f"{logical}Role"]
    [policy] = role["Properties"]["Policies"]
    statements: list[dict[str, Any]] = policy["PolicyDocument"]["Statement"]
    return statements


def _grants(template: dict[str, Any], stage: str) -> set[tuple[str, str]]:
    grants = set()
    for st in _stage_statements(template, stage):
        for action in _as_list(st["Action"]):
            for resource in _as_list(st["Resource"]):
                grants.add((action, _text(resource) or json.dumps(resource)))
    return grants


def test_each_stage_role_grants_only_its_own_prefixes() -> None:
    s3 = {
        stage: {g for g in _grants(DEFAULT, stage) if g[0].startswith("s3:")}
        for stage in (*PIPELINE.names, PIPELINE.failure_stage)
    }
    images_bucket = json.dumps({"Fn::GetAtt": ["ImagesBucket", "Arn"]})
    artifacts_bucket = json.dumps({"Fn::GetAtt": ["ArtifactsBucket", "Arn"]})
    assert s3["validate"] == {
        ("s3:GetObject", "${ImagesBucket.Arn}/incoming/*"),
        # a DICOM uploaded without a sidecar is its own trigger (layout.DICOM_DROPS)
        ("s3:GetObject", "${ImagesBucket.Arn}/dicom/*"),
        ("s3:ListBucket", images_bucket),
        # the one-execution-per-upload claim (a conditional PUT, read back when lost)
        ("s3:PutObject", "${ArtifactsBucket.Arn}/claims/*"),
        ("s3:GetObject", "${ArtifactsBucket.Arn}/claims/*"),
        ("s3:ListBucket", artifacts_bucket),
    }
    # A reader lists what it reads: a missing key is then a 404, not a 403.
    assert s3["prepare"] == {
        ("s3:GetObject", "${ImagesBucket.Arn}/incoming/*"),
        ("s3:GetObject", "${ImagesBucket.Arn}/dicom/*"),
        ("s3:ListBucket", images_bucket),
        ("s3:PutObject", "${ArtifactsBucket.Arn}/tensors/*"),
    }
    assert s3["infer"] == {
        ("s3:GetObject", "${ArtifactsBucket.Arn}/tensors/*"),
        ("s3:GetObject", "${ArtifactsBucket.Arn}/models/*"),
        ("s3:ListBucket", artifacts_bucket),
    }
    assert s3["store"] == {
        ("s3:PutObject", "${ResultsBucket.Arn}/results/*"),
        ("s3:DeleteObject", "${ResultsBucket.Arn}/failed/*"),
    }
    assert s3["record_failure"] == {
        ("s3:PutObject", "${ResultsBucket.Arn}/failed/*"),
        ("s3:DeleteObject", "${ResultsBucket.Arn}/results/*"),
    }
    [listing] = [
        st
        for st in _stage_statements(DEFAULT, "validate")
        if "s3:ListBucket" in st["Action"] and st["Resource"] == [json.loads(images_bucket)]
    ]
    assert listing["Condition"] == {"StringLike": {"s3:prefix": ["incoming/*", "dicom/*"]}}
    [infer_listing] = [
        st for st in _stage_statements(DEFAULT, "infer") if "s3:ListBucket" in st["Action"]
    ]
    assert infer_listing["Condition"] == {"StringLike": {"s3:prefix": ["tensors/*", "models/*"]}}
    for stage in s3:
        actions = {a for a, _ in _grants(DEFAULT, stage)}
        assert "kinesis:PutRecords" in actions
        assert {"logs:CreateLogStream", "logs:PutLogEvents"} <= actions
        assert not any(a.startswith("kms:") for a in actions)  # SSE-S3 needs none


def test_endpoint_model_needs_no_model_objects_and_express_uses_sessions() -> None:
    infer = _grants(FULL, "infer")
    assert not any(a.startswith("s3:") for a, _ in infer)  # endpoint + directory bucket
    [session] = [
        st for st in _stage_statements(FULL, "infer") if st["Action"] == ["s3express:CreateSession"]
    ]
    # botocore opens directory-bucket sessions in ReadWrite mode: no mode condition.
    assert session["Resource"] == [{"Fn::GetAtt": ["ExpressArtifactsBucket", "Arn"]}]
    assert ("kms:GenerateDataKey", json.dumps({"Fn::GetAtt": ["DataKey", "Arn"]})) in _grants(
        FULL, "store"
    )
    env = FULL["Resources"]["InferFunction"]["Properties"]["Environment"]["Variables"]
    assert env["RADSTREAM_MODEL__ENDPOINT"] == "https://model.internal:8443"
    assert env["RADSTREAM_AWS__TENSOR_BUCKET"] == {"Ref": "ExpressArtifactsBucket"}
    assert "ModelKey" not in FULL["Parameters"]
    assert "ModelKey" in DEFAULT["Parameters"]


def test_a_remote_model_endpoint_ships_no_model_layer() -> None:
    infer = FULL["Resources"]["InferFunction"]["Properties"]
    assert "Layers" not in infer  # the model runs behind the endpoint: no ONNX Runtime here
    assert "ModelLayer" not in FULL["Resources"]
    assert "ModelLayerKey" not in FULL["Parameters"]
    prepare = FULL["Resources"]["PrepareFunction"]["Properties"]
    assert prepare["Layers"] == [{"Ref": "ImagingLayer"}]
    assert DEFAULT["Resources"]["InferFunction"]["Properties"]["Layers"] == [{"Ref": "ModelLayer"}]
    assert {"ModelLayerKey", "ImagingLayerKey"} <= set(DEFAULT["Parameters"])


def test_functions_use_one_package_and_the_settings() -> None:
    functions = _resources(FULL, "AWS::Lambda::Function")
    assert len(functions) == 5
    handlers = set()
    for fn in functions.values():
        props = fn["Properties"]
        assert props["Code"] == {"S3Bucket": {"Ref": "CodeBucket"}, "S3Key": {"Ref": "CodeKey"}}
        assert props["MemorySize"] == 3008
        assert props["Architectures"] == ["arm64"]
        handlers.add(props["Handler"])
    assert handlers == {
        f"radstream.aws.handlers.{s}" for s in (*PIPELINE.names, PIPELINE.failure_stage)
    }
    # 5 functions, the state machine, Firehose's delivery errors
    assert len(_resources(FULL, "AWS::Logs::LogGroup")) == 7


def test_exactly_one_rule_matches_only_sidecars_and_dicom_drops() -> None:
    for template in (DEFAULT, FULL):
        [rule] = _resources(template, "AWS::Events::Rule").values()
        pattern = rule["Properties"]["EventPattern"]
        assert pattern["source"] == ["aws.s3"]
        assert pattern["detail-type"] == ["Object Created"]
        assert pattern["detail"]["bucket"]["name"] == [{"Ref": "ImagesBucket"}]
        assert pattern["detail"]["object"]["key"] == [
            {"wildcard": "incoming/*.json"},
            {"wildcard": "dicom/*/*"},
        ]
        [target] = rule["Properties"]["Targets"]
        assert target["Arn"] == {"Ref": "StateMachine"}
        transformer = target["InputTransformer"]
        paths = transformer["InputPathsMap"]
        assert paths["bucket"] == "$.detail.bucket.name"
        assert paths["key"] == "$.detail.object.key"
        assert paths["etag"] == "$.detail.object.etag"
        assert "study_id" not in paths and "study_id" not in transformer["InputTemplate"]
        role = template["Resources"][target["RoleArn"]["Fn::GetAtt"][0]]
        [policy] = role["Properties"]["Policies"]
        assert policy["PolicyDocument"]["Statement"] == [
            {
                "Effect": "Allow",
                "Action": ["states:StartExecution"],
                "Resource": [{"Ref": "StateMachine"}],
            }
        ]
    images = DEFAULT["Resources"]["ImagesBucket"]["Properties"]
    assert images["NotificationConfiguration"] == {
        "EventBridgeConfiguration": {"EventBridgeEnabled": True}
    }


def _wildcard(pattern: str, key: str) -> bool:
    """EventBridge's wildcard: ``*`` is any run of characters, ``/`` included."""
    return re.fullmatch(".*".join(map(re.escape, pattern.split("*"))), key) is not None


@pytest.mark.parametrize(
    ("key", "starts"),
    [
        ("incoming/s1/a.json", True),  # a sidecar
        ("incoming/s1/a.png", False),  # its image: the sidecar starts the study
        ("incoming/s1/a.dcm", False),  # a DICOM with its sidecar: the sidecar only
        ("dicom/pacs/IM0001", True),  # a DICOM without a sidecar, its own trigger
        ("dicom/pacs/IM0001.dcm", True),
        ("dicom/IM0001", False),  # no folder: not a drop key
        ("results/s1/a.json", False),
    ],
)
def test_the_rule_starts_sidecars_and_dicom_drops_and_nothing_else(key: str, starts: bool) -> None:
    [rule] = _resources(DEFAULT, "AWS::Events::Rule").values()
    patterns = [
        p["wildcard"] for p in rule["Properties"]["EventPattern"]["detail"]["object"]["key"]
    ]
    assert sum(_wildcard(p, key) for p in patterns) == int(starts)
    # What the rule starts, validate takes as a sidecar or as a DICOM drop.
    assert starts == (is_sidecar(key) or is_dicom_drop(key))


def test_input_template_is_json_once_filled() -> None:
    [rule] = _resources(DEFAULT, "AWS::Events::Rule").values()
    transformer = rule["Properties"]["Targets"][0]["InputTransformer"]
    filled = transformer["InputTemplate"]
    for name in transformer["InputPathsMap"]:
        filled = filled.replace(f"<{name}>", json.dumps(f"value of {name}"))
    assert set(json.loads(filled)) == set(transformer["InputPathsMap"])


@pytest.mark.parametrize("kms", [False, True])
def test_every_bucket_is_encrypted_private_tls_only_with_filtered_lifecycle(kms: bool) -> None:
    template = build_template(STACK, kms=kms, express_artifacts=True)
    buckets = _resources(template, "AWS::S3::Bucket")
    assert set(buckets) == set(BUCKETS.values())
    policies = {
        p["Properties"]["Bucket"]["Ref"]: p["Properties"]["PolicyDocument"]
        for p in _resources(template, "AWS::S3::BucketPolicy").values()
    }
    for name, bucket in buckets.items():
        props = bucket["Properties"]
        [rule] = props["BucketEncryption"]["ServerSideEncryptionConfiguration"]
        default = rule["ServerSideEncryptionByDefault"]
        if kms:
            assert default == {
                "SSEAlgorithm": "aws:kms",
                "KMSMasterKeyID": {"Fn::GetAtt": ["DataKey", "Arn"]},
            }
        else:
            assert default == {"SSEAlgorithm": "AES256"}
        assert props["PublicAccessBlockConfiguration"] == dict.fromkeys(
            ("BlockPublicAcls", "BlockPublicPolicy", "IgnorePublicAcls", "RestrictPublicBuckets"),
            True,
        )
        [deny] = policies[name]["Statement"]
        assert deny["Effect"] == "Deny"
        assert deny["Condition"] == {"Bool": {"aws:SecureTransport": "false"}}
        rules = props["LifecycleConfiguration"]["Rules"]
        assert rules
        for lc in rules:
            assert lc["Status"] == "Enabled"
            assert isinstance(lc.get("Prefix"), str) and lc["Prefix"].endswith("/"), lc
    assert buckets["ResultsBucket"]["Properties"]["VersioningConfiguration"] == {
        "Status": "Enabled"
    }
    artifacts = buckets["ArtifactsBucket"]["Properties"]["LifecycleConfiguration"]["Rules"]
    assert {"Prefix": "tensors/", "ExpirationInDays": 1}.items() <= artifacts[0].items()
    [directory] = _resources(template, "AWS::S3Express::DirectoryBucket").values()
    for lc in directory["Properties"]["LifecycleConfiguration"]["Rules"]:
        assert lc["Prefix"]
    assert ("DataKey" in template["Resources"]) is kms


def test_glue_table_columns_and_named_queries() -> None:
    database = DEFAULT["Resources"]["GlueDatabase"]["Properties"]["DatabaseInput"]
    assert database["Name"] == f"{DATABASE}_rs_test"  # one database per stack
    table = DEFAULT["Resources"]["TelemetryTable"]["Properties"]["TableInput"]
    assert table["Name"] == TABLE
    assert table["StorageDescriptor"]["Columns"] == glue_columns()
    assert table["StorageDescriptor"]["Location"] == {
        "Fn::Sub": "s3://${TelemetryBucket}/telemetry/"
    }
    # Athena's projection variables are escaped from Fn::Sub.
    assert table["Parameters"]["storage.location.template"] == {
        "Fn::Sub": "s3://${TelemetryBucket}/telemetry/dt=${!dt}/hour=${!hour}/"
    }
    queries = _resources(DEFAULT, "AWS::Athena::NamedQuery")
    assert sorted(q["Properties"]["Name"] for q in queries.values()) == sorted(named_queries())
    for q in queries.values():
        props = q["Properties"]
        query = named_queries()[props["Name"]]
        # Saved with Athena's own `?` parameters, which the console asks for in order.
        assert ":" + (query.params or ["-"])[0] not in props["QueryString"]
        assert props["QueryString"].count("?") == len(positional_names(query.sql))
        assert props["QueryString"] == to_positional(query.sql, query.bind({}))[0].replace(
            f"{DATABASE}.{TABLE}", f"{database['Name']}.{TABLE}"
        )
        if query.params:
            assert "Parameters (each ?, in order)" in props["Description"]
        assert q["Condition"] == "CreateNamedQueries"
        assert props["WorkGroup"] == {"Ref": "AthenaWorkGroup"}
        assert props["Database"] == {"Ref": "GlueDatabase"}
    workgroup = DEFAULT["Resources"]["AthenaWorkGroup"]["Properties"]["WorkGroupConfiguration"]
    assert workgroup["EnforceWorkGroupConfiguration"] is True
    assert workgroup["ResultConfiguration"]["OutputLocation"] == {
        "Fn::Sub": "s3://${ResultsBucket}/athena-results/"
    }


def test_telemetry_flows_from_the_stream_through_firehose_in_hive_layout() -> None:
    stream = DEFAULT["Resources"]["TelemetryStream"]["Properties"]
    assert stream["StreamModeDetails"] == {"StreamMode": "ON_DEMAND"}
    assert stream["StreamEncryption"] == {"EncryptionType": "KMS", "KeyId": "alias/aws/kinesis"}
    [delivery] = _resources(DEFAULT, "AWS::KinesisFirehose::DeliveryStream").values()
    props = delivery["Properties"]
    assert props["DeliveryStreamType"] == "KinesisStreamAsSource"
    source = props["KinesisStreamSourceConfiguration"]
    assert source["KinesisStreamARN"] == {"Fn::GetAtt": ["TelemetryStream", "Arn"]}
    destination = props["ExtendedS3DestinationConfiguration"]
    assert destination["Prefix"] == "telemetry/dt=!{timestamp:yyyy-MM-dd}/hour=!{timestamp:HH}/"
    assert destination["ErrorOutputPrefix"].startswith(
        "telemetry-errors/!{firehose:error-output-type}/"
    )
    assert source["RoleARN"] != destination["RoleARN"]
    conversion = destination["DataFormatConversionConfiguration"]
    assert conversion["SchemaConfiguration"]["TableName"] == {"Ref": "TelemetryTable"}


def test_state_machine_logs_no_execution_data_and_has_its_definition() -> None:
    for template, kind in ((DEFAULT, "STANDARD"), (FULL, "EXPRESS")):
        props = template["Resources"]["StateMachine"]["Properties"]
        assert props["StateMachineType"] == kind
        logging = props["LoggingConfiguration"]
        assert logging["Level"] == "ERROR"
        assert logging["IncludeExecutionData"] is False
        definition = definition_of(template["Resources"]["StateMachine"])
        used = {
            s["Parameters"]["FunctionName"][2:-1]
            for s in definition["States"].values()
            if s["Type"] == "Task"
        }
        assert used == set(props["DefinitionSubstitutions"]) - {"TensorBucket"}
        for state in definition["States"].values():
            for retrier in state.get("Retry", []):
                if retrier["ErrorEquals"] == ["States.ALL"]:
                    continue  # RecordFailure's own last resort (see the ASL tests)
                assert retrier["ErrorEquals"]
                assert set(retrier["ErrorEquals"]) <= {*transient_codes(), *LAMBDA_SERVICE_ERRORS}


def test_outputs_name_what_the_tools_need() -> None:
    assert {
        "ImagesBucketName",
        "ResultsBucketName",
        "TelemetryBucketName",
        "ArtifactsBucketName",
        "StateMachineArn",
        "TelemetryStreamName",
        "AthenaWorkGroup",
    } <= set(DEFAULT["Outputs"])
    assert "ExpressArtifactsBucketName" in FULL["Outputs"]


@pytest.mark.parametrize(
    "options",
    [
        {"stack": "1bad"},
        {"stack": "has_underscore"},
        {"stack": "x" * 41},
        {"stack": "ok", "memory_mb": 64},
        {"stack": "ok", "architecture": "arm"},
        {"stack": "ok", "state_machine_type": "FAST"},
    ],
)
def test_bad_options_are_refused(options: dict[str, Any]) -> None:
    with pytest.raises(ConfigInvalid):
        build_template(**options)


def test_settings_reach_the_functions_and_secrets_stay_out_of_the_template(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from radstream.aws.deploy import lambda_settings
    from radstream.settings import Settings

    settings = Settings(
        model={"endpoint_model": "cxr", "token": "s3cret"},
        telemetry={"pseudonymise": True, "pseudonym_key": "k3y", "variant": "B"},
        engine={"image_wait_s": 45},
    )
    env, secrets = lambda_settings(settings)
    assert "s3cret" not in json.dumps(env) and "k3y" not in json.dumps(env)
    assert secrets == {"ModelToken": "s3cret", "PseudonymKey": "k3y"}
    template = build_template("rs", settings_env=env)
    assert "s3cret" not in json.dumps(template) and "k3y" not in json.dumps(template)
    for parameter in secrets:
        assert template["Parameters"][parameter]["NoEcho"] is True
    variables = template["Resources"]["ValidateFunction"]["Properties"]["Environment"]["Variables"]
    assert variables["RADSTREAM_MODEL__ENDPOINT_MODEL"] == "cxr"
    assert variables["RADSTREAM_TELEMETRY__PSEUDONYMISE"] == "true"
    assert variables["RADSTREAM_TELEMETRY__VARIANT"] == "B"
    assert variables["RADSTREAM_ENGINE__IMAGE_WAIT_S"] == "45.0"
    # No secret in a function's configuration: the ARN of its secret, when it is set.
    assert "RADSTREAM_TELEMETRY__PSEUDONYM_KEY" not in variables
    assert "RADSTREAM_MODEL__TOKEN" not in variables
    assert variables["SECRET_ID_RADSTREAM_TELEMETRY__PSEUDONYM_KEY"] == {
        "Fn::If": ["HasPseudonymKey", "rs/radstream/pseudonym-key", {"Ref": "AWS::NoValue"}]
    }
    # What a function parses from that environment, once its container fetched the
    # secret, is what this machine has.
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("SECRET_ID_RADSTREAM_TELEMETRY__PSEUDONYM_KEY", "rs/radstream/pseudonym-key")
    monkeypatch.setenv("RADSTREAM_CONFIG", "/nonexistent.toml")

    class Secrets:
        def get_secret_value(self, SecretId: str) -> dict[str, str]:  # noqa: N803 (boto's name)
            return {"SecretString": {"rs/radstream/pseudonym-key": "k3y"}[SecretId]}

    # load_secrets writes os.environ itself: registered here first, so teardown restores it.
    monkeypatch.setenv("RADSTREAM_TELEMETRY__PSEUDONYM_KEY", "")
    assert load_secrets(os.environ, Secrets) == ["RADSTREAM_TELEMETRY__PSEUDONYM_KEY"]
    parsed = Settings()
    assert parsed.telemetry == settings.telemetry
    assert parsed.engine.image_wait_s == 45
    assert parsed.model.endpoint_model == "cxr"
    assert parsed.imaging == settings.imaging
