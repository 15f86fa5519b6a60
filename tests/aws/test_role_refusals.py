"""README: each stage's role can touch only its own prefixes. The emulator test probes some
roles by assuming them; this one evaluates the IAM documents of every stage role, as the
template renders them, with a small IAM evaluator, for the requests each stage must be
refused (prepare writes no outcome, infer reads no upload, ...) and those it needs.

The evaluator implements what these documents use: Allow/Deny, wildcard actions and
resources, and the ``StringLike`` ``s3:prefix`` condition of ``s3:ListBucket``. An explicit
Deny wins, and no Allow means refused. Bucket policies are checked to grant roles nothing.
"""

from __future__ import annotations

import itertools
import re
from dataclasses import dataclass
from typing import Any

import pytest

from radstream.aws.template import build_template

STACK = "rs-iam"
ENDPOINT = "https://model.internal:8443"
VARIANTS = [
    {"model_endpoint": endpoint, "express_artifacts": express, "kms": kms}
    for endpoint, express, kms in itertools.product((None, ENDPOINT), (False, True), (False, True))
]
ROLES = {
    "validate": "ValidateRole",
    "prepare": "PrepareRole",
    "infer": "InferRole",
    "store": "StoreRole",
    "record_failure": "RecordFailureRole",
}


@dataclass(frozen=True)
class Request:
    """One S3 request: ``action`` on ``key`` of the bucket with logical id ``bucket``
    (``key`` None: the bucket itself, listed under ``prefix``)."""

    action: str
    bucket: str
    key: str | None = None
    prefix: str | None = None

    @property
    def arn(self) -> str:
        base = f"arn:aws:s3:::{self.bucket}"
        return base if self.key is None else f"{base}/{self.key}"


def _resolve(value: Any) -> str:
    """A Resource entry as an ARN pattern; a bucket's Arn stands for ``arn:aws:s3:::Logical``."""
    if isinstance(value, str):
        return value
    if "Fn::GetAtt" in value:
        logical, attribute = value["Fn::GetAtt"]
        return f"arn:aws:s3:::{logical}" if attribute == "Arn" else f"{logical}.{attribute}"
    if "Fn::Sub" in value:
        text = value["Fn::Sub"]
        return re.sub(r"\$\{(\w+)\.Arn\}", lambda m: f"arn:aws:s3:::{m[1]}", text)
    if "Ref" in value:
        return f"ref:{value['Ref']}"
    raise AssertionError(f"an intrinsic the evaluator does not know: {value}")


def _matches(pattern: str, value: str, *, case: bool = True) -> bool:
    """IAM wildcard match: ``*`` any run of characters, ``?`` one character."""
    regex = "".join(".*" if c == "*" else "." if c == "?" else re.escape(c) for c in pattern)
    return re.fullmatch(regex, value, 0 if case else re.IGNORECASE) is not None


def _listify(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


def _applies(statement: dict[str, Any], request: Request) -> bool:
    if not any(_matches(a, request.action, case=False) for a in _listify(statement["Action"])):
        return False
    if not any(_matches(_resolve(r), request.arn) for r in _listify(statement["Resource"])):
        return False
    for operator, conditions in statement.get("Condition", {}).items():
        for key, wanted in conditions.items():
            if operator == "StringLike" and key == "s3:prefix":
                if request.prefix is None or not any(
                    _matches(w, request.prefix) for w in _listify(wanted)
                ):
                    return False
            else:
                # A condition this evaluator does not know: not counted on either way
                # (the only such ones here deny plain HTTP, which no request below uses).
                return False
    return True


def allowed(statements: list[dict[str, Any]], request: Request) -> bool:
    """IAM's decision for one identity's statements: explicit Deny, else any Allow."""
    applying = [s for s in statements if _applies(s, request)]
    if any(s["Effect"] == "Deny" for s in applying):
        return False
    return any(s["Effect"] == "Allow" for s in applying)


def _role_statements(template: dict[str, Any], stage: str) -> list[dict[str, Any]]:
    """Every identity-policy statement attached to the stage's role."""
    logical = ROLES[stage]
    props = template["Resources"][logical]["Properties"]
    assert not props.get("ManagedPolicyArns"), "a managed policy would be outside this test"
    statements = [s for p in props.get("Policies", []) for s in p["PolicyDocument"]["Statement"]]
    for resource in template["Resources"].values():
        attached = {"Ref": logical} in resource.get("Properties", {}).get("Roles", [])
        if resource["Type"] in ("AWS::IAM::Policy", "AWS::IAM::ManagedPolicy") and attached:
            statements += resource["Properties"]["PolicyDocument"]["Statement"]
    assert statements
    return statements


def _tensor_requests(express: bool, action: str) -> Request:
    if express:  # a directory bucket: one session for the whole bucket
        return Request("s3express:CreateSession", "ExpressArtifactsBucket")
    return Request(action, "ArtifactsBucket", "tensors/e1.npy")


def _expectations(stage: str, *, endpoint: bool, express: bool) -> tuple[list[Request], ...]:
    """(requests the stage needs, requests it must be refused)."""
    upload = Request("s3:GetObject", "ImagesBucket", "incoming/s1/s1.png")
    dicom = Request("s3:GetObject", "ImagesBucket", "dicom/d/x.dcm")
    put_result = Request("s3:PutObject", "ResultsBucket", "results/s1/s1.json")
    put_failure = Request("s3:PutObject", "ResultsBucket", "failed/s1/s1.json")
    model = Request("s3:GetObject", "ArtifactsBucket", "models/m.onnx")
    everywhere = [
        Request("s3:PutObject", "ImagesBucket", "incoming/s1/s1.png"),
        Request("s3:DeleteObject", "ImagesBucket", "incoming/s1/s1.png"),
        Request("s3:GetObject", "TelemetryBucket", "lake/telemetry/x.parquet"),
        Request("s3:PutObject", "ArtifactsBucket", "models/m.onnx"),
        Request("s3:GetObject", "ImagesBucket", "elsewhere/x.png"),
        Request("s3:ListBucket", "ResultsBucket", prefix=""),
    ]
    if stage == "validate":
        need = [upload, Request("s3:ListBucket", "ImagesBucket", prefix="incoming/s1/")]
        refuse = [put_result, put_failure, model, _tensor_requests(False, "s3:GetObject")]
    elif stage == "prepare":
        need = [upload, dicom, _tensor_requests(express, "s3:PutObject")]
        refuse = [
            put_result,
            put_failure,
            Request("s3:GetObject", "ResultsBucket", "results/s1/s1.json"),
            Request("s3:DeleteObject", "ResultsBucket", "failed/s1/s1.json"),
            model,
        ]
    elif stage == "infer":
        need = [_tensor_requests(express, "s3:GetObject")] + ([] if endpoint else [model])
        refuse = [
            upload,
            dicom,
            Request("s3:ListBucket", "ImagesBucket", prefix="incoming/"),
            put_result,
            put_failure,
        ] + ([model] if endpoint else [])
    elif stage == "store":
        need = [put_result, Request("s3:DeleteObject", "ResultsBucket", "failed/s1/s1.json")]
        refuse = [upload, dicom, put_failure, model]
    else:
        need = [put_failure, Request("s3:DeleteObject", "ResultsBucket", "results/s1/s1.json")]
        refuse = [upload, dicom, put_result, model]
    return need, refuse + everywhere


def _variant_id(variant: dict[str, Any]) -> str:
    return "-".join(
        [
            "endpoint" if variant["model_endpoint"] else "in-lambda",
            "express" if variant["express_artifacts"] else "standard",
            "kms" if variant["kms"] else "sse-s3",
        ]
    )


@pytest.mark.parametrize("stage", list(ROLES))
@pytest.mark.parametrize("variant", VARIANTS, ids=[_variant_id(v) for v in VARIANTS])
def test_each_stage_role_allows_what_it_needs_and_refuses_the_rest(
    variant: dict[str, Any], stage: str
) -> None:
    template = build_template(STACK, **variant)
    statements = _role_statements(template, stage)
    need, refuse = _expectations(
        stage, endpoint=variant["model_endpoint"] is not None, express=variant["express_artifacts"]
    )
    assert [r for r in need if not allowed(statements, r)] == []
    assert [r for r in refuse if allowed(statements, r)] == []


@pytest.mark.parametrize("variant", VARIANTS, ids=[_variant_id(v) for v in VARIANTS])
def test_bucket_policies_grant_the_roles_nothing(variant: dict[str, Any]) -> None:
    template = build_template(STACK, **variant)
    policies = [
        r["Properties"]["PolicyDocument"]
        for r in template["Resources"].values()
        if r["Type"].endswith("::BucketPolicy")
    ]
    assert policies
    for document in policies:
        for st in document["Statement"]:
            if st["Effect"] == "Allow":
                assert set(st["Principal"]) == {"Service"}, st  # AWS services only


def test_the_evaluator_can_say_yes_and_no() -> None:
    # Guards the tests above from an evaluator that refuses (or allows) everything.
    wide = [
        {"Effect": "Allow", "Action": "s3:*", "Resource": {"Fn::Sub": "${ResultsBucket.Arn}/*"}}
    ]
    put = Request("s3:PutObject", "ResultsBucket", "results/a.json")
    assert allowed(wide, put)
    assert not allowed(wide, Request("s3:PutObject", "ImagesBucket", "results/a.json"))
    denied = [
        *wide,
        {
            "Effect": "Deny",
            "Action": ["s3:PutObject"],
            "Resource": [{"Fn::Sub": "${ResultsBucket.Arn}/results/*"}],
        },
    ]
    assert not allowed(denied, put)
    listing = [
        {
            "Effect": "Allow",
            "Action": ["s3:ListBucket"],
            "Resource": [{"Fn::GetAtt": ["ImagesBucket", "Arn"]}],
            "Condition": {"StringLike": {"s3:prefix": ["incoming/*"]}},
        }
    ]
    assert allowed(listing, Request("s3:ListBucket", "ImagesBucket", prefix="incoming/a/"))
    assert not allowed(listing, Request("s3:ListBucket", "ImagesBucket", prefix="dicom/"))
    assert not allowed(listing, Request("s3:ListBucket", "ImagesBucket", prefix=None))
