"""IAM: each stage's role, derived from its declaration; the state machine's and the rule's.

A stage role grants exactly the objects its :class:`~radstream.pipeline.definition.StageDef`
declares (``reads``/``writes``/``deletes``/``lists``, each a :class:`~radstream.layout.Objects`
of a bucket and a prefix), plus the model file for a ``uses_model`` stage that runs the
model in the Lambda, and a listing of each prefix it reads (so a missing key is a 404). Nothing here spells a key prefix, so a grant cannot drift from the key
its stage writes.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from radstream.layout import MODEL_OBJECTS, Bucket, Objects
from radstream.pipeline.definition import StageDef

from .intrinsics import (
    EXPRESS_BUCKET,
    KMS_KEY,
    STATE_MACHINE,
    STREAM,
    Json,
    get_att,
    logical,
    objects_arn,
    ref,
    role,
    statement,
)
from .options import TemplateOptions
from .secrets import secret_statements, uses_secrets

GET, PUT, DELETE, LIST = "s3:GetObject", "s3:PutObject", "s3:DeleteObject", "s3:ListBucket"
CREATE_SESSION = "s3express:CreateSession"

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


@dataclass(frozen=True)
class StageAccess:
    """The objects one stage function touches on AWS, by S3 action."""

    reads: tuple[Objects, ...]
    writes: tuple[Objects, ...]
    deletes: tuple[Objects, ...]
    lists: tuple[Objects, ...]

    @property
    def all(self) -> tuple[Objects, ...]:
        """Every object set, whatever the action."""
        return (*self.reads, *self.writes, *self.deletes, *self.lists)


def stage_access(stage: StageDef, *, in_process_model: bool) -> StageAccess:
    """What ``stage`` declares, plus the model file when it runs the model itself, and a
    listing of every prefix it reads.

    S3 answers a GET of a missing key with 403, not 404, when the caller may not list the
    bucket: without the listing a missing tensor, image or model would be filed as
    ``STORE_ACCESS_DENIED`` (a broken deployment) instead of a missing object. The listing
    is limited to the prefixes the role may already read, so it shows no other key.
    """
    model = (MODEL_OBJECTS,) if stage.uses_model and in_process_model else ()
    reads = tuple(dict.fromkeys((*stage.reads, *model)))
    return StageAccess(
        reads=reads,
        writes=tuple(dict.fromkeys(stage.writes)),
        deletes=tuple(dict.fromkeys(stage.deletes)),
        lists=tuple(dict.fromkeys((*stage.lists, *reads))),
    )


def stage_statements(stage: StageDef, options: TemplateOptions, *, stack: str) -> list[Json]:
    """The policy statements of ``stage``'s role: S3 (or S3 Express sessions), KMS for its
    reads and writes when the buckets use the stack's key, Kinesis, and its own log group."""
    access = stage_access(stage, in_process_model=options.in_process_model)

    def general(objects: Iterable[Objects]) -> list[Objects]:
        # With a directory bucket the tensors are reached through a session, not object ARNs.
        return [
            o for o in objects if not (options.express_artifacts and o.bucket is Bucket.TENSORS)
        ]

    def arns(objects: Iterable[Objects]) -> list[Json | str]:
        return [objects_arn(options.bucket_id(o.bucket), o.prefix) for o in general(objects)]

    reads, writes, deletes = arns(access.reads), arns(access.writes), arns(access.deletes)
    statements = [
        statement([action], resources)
        for action, resources in ((GET, reads), (PUT, writes), (DELETE, deletes))
        if resources
    ]
    statements.extend(_list_statements(general(access.lists), options))
    if options.express_artifacts and any(o.bucket is Bucket.TENSORS for o in access.all):
        # botocore opens directory-bucket sessions itself, always in ReadWrite mode, so a
        # ReadOnly condition would refuse infer's reads. The bucket holds only tensors.
        statements.append(statement([CREATE_SESSION], [get_att(EXPRESS_BUCKET, "Arn")]))
    if options.kms:
        # Deletes need no key; the directory bucket uses SSE-S3. Every stage puts telemetry
        # records on the stream, which the stack key encrypts: GenerateDataKey always.
        decrypts = bool(reads) or uses_secrets(stage, options)  # objects, or its secrets
        kms_actions = (["kms:Decrypt"] if decrypts else []) + ["kms:GenerateDataKey"]
        statements.append(statement(kms_actions, [get_att(KMS_KEY, "Arn")]))
    statements.extend(secret_statements(stack, stage, options))
    statements.append(statement(["kinesis:PutRecords"], [get_att(STREAM, "Arn")]))
    statements.append(
        statement(
            ["logs:CreateLogStream", "logs:PutLogEvents"],
            [get_att(f"{logical(stage.name)}LogGroup", "Arn")],
        )
    )
    return statements


def _list_statements(lists: list[Objects], options: TemplateOptions) -> list[Json]:
    """One ``s3:ListBucket`` per bucket of the stack, limited to the listed prefixes (the
    tensors and the artifacts share one bucket unless tensors have a directory bucket)."""
    prefixes: dict[str, list[str]] = {}
    for objects in lists:
        listed = prefixes.setdefault(options.bucket_id(objects.bucket), [])
        if f"{objects.prefix}*" not in listed:
            listed.append(f"{objects.prefix}*")
    return [
        statement(
            [LIST], [get_att(bucket_id, "Arn")], Condition={"StringLike": {"s3:prefix": listed}}
        )
        for bucket_id, listed in prefixes.items()
    ]


def stage_role(stage: StageDef, options: TemplateOptions, *, stack: str) -> Json:
    """The role of ``stage``'s function: only its own actions, buckets and prefixes."""
    return role(
        "lambda.amazonaws.com", f"{stage.name}-stage", stage_statements(stage, options, stack=stack)
    )


def state_machine_role(stages: Iterable[StageDef]) -> Json:
    """The state machine's role: invoke the stage functions, deliver its logs."""
    return role(
        "states.amazonaws.com",
        "invoke-stage-functions",
        [
            statement(
                ["lambda:InvokeFunction"],
                [get_att(f"{logical(stage.name)}Function", "Arn") for stage in stages],
            ),
            # Exception, documented by AWS: log delivery actions take no resource ARN.
            statement(list(STEP_FUNCTIONS_LOG_DELIVERY_ACTIONS), ["*"]),
        ],
    )


def upload_rule_role() -> Json:
    """The EventBridge rule's role: start the state machine, nothing else."""
    return role(
        "events.amazonaws.com",
        "start-pipeline",
        [statement(["states:StartExecution"], [ref(STATE_MACHINE)])],
    )
