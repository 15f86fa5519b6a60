"""The stack follows the stage declarations: each role grants what its StageDef declares,
each function gets the layers of its package groups, and a changed declaration changes them.

The grants are read back from the template's JSON and compared with an expectation built
here from ``StageDef.reads/writes/deletes/lists`` alone, so the IAM builder is checked
against the declaration, not against itself.
"""

from __future__ import annotations

import importlib
import itertools
import json
from dataclasses import replace
from typing import Any

import pytest

from radstream.aws.template import build_template
from radstream.layout import (
    MODEL_OBJECTS,
    RESULT_OBJECTS,
    TENSOR_OBJECTS,
    UPLOADS,
    Bucket,
    Objects,
)
from radstream.pipeline.definition import (
    IMAGING,
    MODEL_RUNTIME,
    PIPELINE,
    STORE,
    VALIDATE,
    Pipeline,
    StageDef,
)

STACK = "rs-decl"
ENDPOINT = "https://model.internal:8443"
GENERAL_BUCKETS = {
    Bucket.IMAGES: "ImagesBucket",
    Bucket.RESULTS: "ResultsBucket",
    Bucket.TELEMETRY: "TelemetryBucket",
    Bucket.ARTIFACTS: "ArtifactsBucket",
}
DIRECTORY_BUCKET = "ExpressArtifactsBucket"
ACTIONS = {
    "reads": "s3:GetObject",
    "writes": "s3:PutObject",
    "deletes": "s3:DeleteObject",
    "lists": "s3:ListBucket",
}
Grant = tuple[str, str, str]
"""(action, bucket logical id, key prefix); a directory-bucket session has prefix ""."""

VARIANTS = [
    {"model_endpoint": endpoint, "express_artifacts": express, "kms": kms}
    for endpoint, express, kms in itertools.product((None, ENDPOINT), (False, True), (False, True))
]


def _variant_id(variant: dict[str, Any]) -> str:
    return "-".join(
        [
            "endpoint" if variant["model_endpoint"] else "in-lambda",
            "express" if variant["express_artifacts"] else "standard",
            "kms" if variant["kms"] else "sse-s3",
        ]
    )


def _logical(stage: str) -> str:
    return "".join(p.capitalize() for p in stage.split("_"))


def _statements(template: dict[str, Any], stage: str) -> list[dict[str, Any]]:
    [policy] = template["Resources"][f"{_logical(stage)}Role"]["Properties"]["Policies"]
    statements: list[dict[str, Any]] = policy["PolicyDocument"]["Statement"]
    return statements


def _role_grants(template: dict[str, Any], stage: str) -> set[Grant]:
    """The S3 grants of ``stage``'s role, read back from the template."""
    grants: set[Grant] = set()
    for st in _statements(template, stage):
        for action in st["Action"]:
            if not action.startswith("s3"):
                continue
            for resource in st["Resource"]:
                if "Fn::Sub" in resource:  # "${Bucket.Arn}/prefix*": objects under a prefix
                    arn, _, pattern = resource["Fn::Sub"].partition("/")
                    assert arn.startswith("${") and arn.endswith(".Arn}"), resource
                    assert pattern.endswith("*"), resource
                    grants.add((action, arn[2:-5], pattern[:-1]))
                elif action == "s3:ListBucket":  # the bucket, limited to listed prefixes
                    bucket = resource["Fn::GetAtt"][0]
                    for pattern in st["Condition"]["StringLike"]["s3:prefix"]:
                        assert pattern.endswith("*"), st
                        grants.add((action, bucket, pattern[:-1]))
                else:  # a directory bucket: a session on the whole bucket
                    assert action == "s3express:CreateSession", st
                    grants.add((action, resource["Fn::GetAtt"][0], ""))
    return grants


def _declared_grants(stage: StageDef, *, endpoint: bool, express: bool) -> set[Grant]:
    """What ``stage``'s declaration says its role must grant on this stack."""
    reads = stage.reads + ((MODEL_OBJECTS,) if stage.uses_model and not endpoint else ())
    declared: dict[str, tuple[Objects, ...]] = {
        "reads": reads,
        "writes": stage.writes,
        "deletes": stage.deletes,
        # What a role reads it may list: S3 answers 403, not 404, for a missing key otherwise.
        "lists": stage.lists + reads,
    }
    grants: set[Grant] = set()
    for kind, objects in declared.items():
        for o in objects:
            if o.bucket is Bucket.TENSORS and express:
                grants.add(("s3express:CreateSession", DIRECTORY_BUCKET, ""))
            else:
                bucket = GENERAL_BUCKETS[
                    Bucket.ARTIFACTS if o.bucket is Bucket.TENSORS else o.bucket
                ]
                grants.add((ACTIONS[kind], bucket, o.prefix))
    return grants


def _layers(template: dict[str, Any], stage: str) -> list[str]:
    props = template["Resources"][f"{_logical(stage)}Function"]["Properties"]
    return [ref["Ref"] for ref in props.get("Layers", [])]


def _declared_layers(stage: StageDef, *, endpoint: bool) -> list[str]:
    groups = stage.packages_for(in_process_model=not endpoint)
    return [f"{group.capitalize()}Layer" for group in groups]


@pytest.mark.parametrize("variant", VARIANTS, ids=[_variant_id(v) for v in VARIANTS])
def test_every_role_grants_exactly_what_its_stage_declares(variant: dict[str, Any]) -> None:
    template = build_template(STACK, **variant)
    endpoint, express = variant["model_endpoint"] is not None, variant["express_artifacts"]
    for stage in PIPELINE.all_stages:
        expected = _declared_grants(stage, endpoint=endpoint, express=express)
        assert _role_grants(template, stage.name) == expected, stage.name
        assert _layers(template, stage.name) == _declared_layers(stage, endpoint=endpoint)
        kms = {a for st in _statements(template, stage.name) for a in st["Action"] if "kms:" in a}
        # With the stack key: Decrypt for what it reads and its secrets (the pseudonym
        # key: every stage), GenerateDataKey for telemetry on the stream (every stage).
        wanted = {"kms:Decrypt", "kms:GenerateDataKey"} if variant["kms"] else set()
        assert kms == wanted, stage.name


def test_the_declarations_reach_every_kind_of_grant() -> None:
    """The default pipeline exercises reads, writes, deletes, lists and the model file, so
    the comparison above is not vacuous."""
    grants = _role_grants(build_template(STACK), "validate") | _role_grants(
        build_template(STACK), "store"
    )
    assert {g[0] for g in grants} == set(ACTIONS.values())
    infer = _role_grants(build_template(STACK), "infer")
    assert ("s3:GetObject", "ArtifactsBucket", MODEL_OBJECTS.prefix) in infer
    assert ("s3:GetObject", "ArtifactsBucket", MODEL_OBJECTS.prefix) not in _role_grants(
        build_template(STACK, model_endpoint=ENDPOINT), "infer"
    )


def _with_stage(pipeline: Pipeline, stage: StageDef) -> Pipeline:
    """``pipeline`` with the declaration of ``stage.name`` replaced by ``stage``."""
    if stage.name == pipeline.failure.name:
        return replace(pipeline, failure=stage)
    stages = tuple(stage if s.name == stage.name else s for s in pipeline.stages)
    return replace(pipeline, stages=stages)


def test_a_changed_declaration_changes_the_role_and_the_layers() -> None:
    before = build_template(STACK)
    store = PIPELINE.stage(STORE)
    audited = replace(
        store,
        reads=(*store.reads, UPLOADS),
        lists=(RESULT_OBJECTS, Objects(Bucket.ARTIFACTS, "audit/")),
        packages=(IMAGING,),
    )
    after = build_template(STACK, pipeline=_with_stage(PIPELINE, audited))
    added = _role_grants(after, STORE) - _role_grants(before, STORE)
    assert added == {
        ("s3:GetObject", "ImagesBucket", UPLOADS.prefix),
        ("s3:ListBucket", "ImagesBucket", UPLOADS.prefix),  # it reads there
        ("s3:ListBucket", "ResultsBucket", RESULT_OBJECTS.prefix),
        ("s3:ListBucket", "ArtifactsBucket", "audit/"),
    }
    assert _role_grants(before, STORE) <= _role_grants(after, STORE)
    assert _layers(after, STORE) == ["ImagingLayer"]
    # Only the changed stage's role moved.
    for stage in PIPELINE.all_stages:
        if stage.name != STORE:
            assert _statements(after, stage.name) == _statements(before, stage.name), stage.name


def test_a_stage_that_stops_writing_loses_the_grant() -> None:
    validate = replace(PIPELINE.stage(VALIDATE), writes=(), lists=())
    template = build_template(STACK, pipeline=_with_stage(PIPELINE, validate))
    grants = _role_grants(template, VALIDATE)
    assert not any(action == "s3:PutObject" for action, _, _ in grants)
    # It still lists what it reads, and nothing else.
    listed = {(bucket, prefix) for action, bucket, prefix in grants if action == "s3:ListBucket"}
    read = {(bucket, prefix) for action, bucket, prefix in grants if action == "s3:GetObject"}
    assert listed == read
    assert grants == _declared_grants(validate, endpoint=False, express=False)


def test_the_model_file_and_layer_follow_uses_model() -> None:
    store = replace(PIPELINE.stage(STORE), uses_model=True)
    changed = _with_stage(PIPELINE, store)
    in_lambda = build_template(STACK, pipeline=changed)
    assert ("s3:GetObject", "ArtifactsBucket", MODEL_OBJECTS.prefix) in _role_grants(
        in_lambda, STORE
    )
    assert _layers(in_lambda, STORE) == [f"{MODEL_RUNTIME.capitalize()}Layer"]
    remote = build_template(STACK, pipeline=changed, model_endpoint=ENDPOINT)
    assert ("s3:GetObject", "ArtifactsBucket", MODEL_OBJECTS.prefix) not in _role_grants(
        remote, STORE
    )
    assert _layers(remote, STORE) == []


def test_a_new_stage_gets_its_function_role_and_layers_from_its_declaration() -> None:
    audit = StageDef(
        "audit",
        None,
        True,
        "read the result back and check it",
        function="radstream.stages.store:run",
        reads=(RESULT_OBJECTS, TENSOR_OBJECTS),
        packages=(IMAGING,),
    )
    stages = tuple(replace(s, next="audit") if s.name == STORE else s for s in PIPELINE.stages)
    pipeline = replace(PIPELINE, stages=(*stages, audit))
    template = build_template(STACK, pipeline=pipeline, express_artifacts=True)
    assert _role_grants(template, "audit") == {
        ("s3:GetObject", "ResultsBucket", RESULT_OBJECTS.prefix),
        ("s3:ListBucket", "ResultsBucket", RESULT_OBJECTS.prefix),
        ("s3express:CreateSession", DIRECTORY_BUCKET, ""),
    }
    assert _layers(template, "audit") == ["ImagingLayer"]
    function = template["Resources"]["AuditFunction"]["Properties"]
    assert function["Handler"] == "radstream.aws.handlers.audit"
    [invoke, _logs] = template["Resources"]["StateMachineRole"]["Properties"]["Policies"][0][
        "PolicyDocument"
    ]["Statement"]
    assert {"Fn::GetAtt": ["AuditFunction", "Arn"]} in invoke["Resource"]
    # The stack with the new stage is as deployable as the shipped one.
    try:
        api = importlib.import_module("cfnlint.api")
    except ImportError:
        pytest.skip("cfn-lint is not installed: pip install cfn-lint (a dev dependency)")
    matches = api.lint(json.dumps(template), config=api.ManualArgs(regions=["us-east-1"]))
    assert not matches, "\n".join(str(m) for m in matches)
