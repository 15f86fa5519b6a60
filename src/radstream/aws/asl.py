"""The pipeline definition rendered as an Amazon States Language (ASL) state machine.

The local executor and Step Functions run the same :data:`~radstream.pipeline.definition.PIPELINE`:
one Task state per stage, in order, then ``Succeed``. Retry and catch follow the error
classes of :mod:`radstream.errors`, so the two engines agree on what is transient:

* every stage retries the codes of :class:`~radstream.errors.TransientError` subclasses
  (and the Lambda service's own transient errors) with the
  :class:`~radstream.backoff.Backoff` of a :class:`~radstream.pipeline.definition.RetryPolicy`:
  ``IntervalSeconds``, ``BackoffRate`` and ``MaxDelaySeconds`` are its base, rate and cap
  (in whole seconds), and ``"JitterStrategy": "FULL"`` is its jitter, the rule the local
  executor draws its waits from;
* an outage (``MODEL_UNAVAILABLE``) is retried for a time budget: ``MaxAttempts`` is the
  count whose *expected* waits under full jitter fill the budget
  (:meth:`~radstream.backoff.Backoff.attempts_within`), so it lasts about as long on AWS
  as locally;
* any other error (invalid input, exhausted retries, a bug) is caught by ``States.ALL``
  into the ``RecordFailure`` task, which writes ``failed/{study_id}/{stem}.json``, and then
  into a ``Fail`` state. A failed study is therefore a FAILED execution, never SUCCEEDED.

Contract for the Lambda handlers (``radstream.aws.handlers``):

* A handler receives the state as its event and returns the next state. It **raises** on
  failure (never returns ``success: false``), and the raised exception's Lambda error
  type (``errorType``) is the RadStream error code, e.g. ``MODEL_UNAVAILABLE``: that is
  the name the ``Retry`` rules match. Invalid-input codes appear in no ``Retry``.
* The input of an execution is what the EventBridge rule's input transformer builds:
  ``bucket``, ``key``, ``etag`` and ``sequencer`` of the sidecar, plus ``event_time`` and
  ``event_id``. ``validate`` claims the upload (key + sequencer) with a conditional PUT;
  a second execution for the same upload (a duplicate delivery) ends in
  ``DuplicateIgnored`` without touching the study.
  ``IMAGE_NOT_YET_PRESENT`` is self-bounded: ``validate`` measures its wait from
  ``event_time`` and raises ``IMAGE_MISSING`` (not retried) when the wait is over, so its
  retrier's ``MaxAttempts`` is only a backstop.
* Large payloads go by reference. Step Functions limits a state to 256 KB, and the tensor
  alone is 200 KB of float32. ``prepare`` therefore writes the tensor to the artifacts
  bucket (``tensors/{execution}.npy``, or the S3 Express directory bucket when that is
  deployed), named by the execution (``radstream.layout.tensor_key``), and ``infer`` reads
  it from there: the state never carries it. The artifacts bucket's lifecycle rule
  expires tensors after a day.
* Each Task keeps only the Lambda's ``Payload`` (``OutputPath``), not the invocation
  metadata, so the state stays small.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from typing import Any

from radstream.backoff import Backoff
from radstream.errors import TransientError, all_error_classes
from radstream.layout import failure_key
from radstream.pipeline.definition import PIPELINE, Pipeline, RetryPolicy

Json = dict[str, Any]
"""A JSON object of the rendered definition."""

LAMBDA_INVOKE = "arn:aws:states:::lambda:invoke"
LAMBDA_SERVICE_ERRORS: tuple[str, ...] = (
    "Lambda.ServiceException",
    "Lambda.AWSLambdaException",
    "Lambda.SdkClientException",
    "Lambda.ClientExecutionTimeoutException",
    "Lambda.TooManyRequestsException",
)
"""Transient errors of the Lambda service itself, which AWS recommends retrying (Step
Functions developer guide, "Handle transient Lambda service exceptions"). Not
``Lambda.Unknown``: that is a function that timed out or ran out of memory, which a retry
would only repeat (it is caught and filed as ``STAGE_TIMEOUT``)."""
FAILED_STATE = "StudyFailed"
SUCCEEDED_STATE = "StudySucceeded"
FAILURE_ERROR = "RadStream.StudyFailed"
DUPLICATE_CHOICE = "AlreadyClaimed"
DUPLICATE_STATE = "DuplicateIgnored"
SELF_BOUNDED_MAX_ATTEMPTS = 60
OUTAGE_MAX_DELAY_S = 30
DEFAULT_OUTAGE_BUDGET_S = 600.0
"""How long an outage (``MODEL_UNAVAILABLE``) is retried, as ``engine.outage_budget_s``."""
RECORD_FAILURE_ATTEMPTS = 3
"""Retries of ``record_failure`` whatever the error: it writes the study's only outcome."""
RECORD_FAILURE_BACKOFF = Backoff(base_s=2.0, max_s=8.0, rate=2.0)
_FAILURE_OBJECT = failure_key("{study_id}", "{stem}")
JITTER_STRATEGY = "FULL"
"""Step Functions' name for :class:`~radstream.backoff.Backoff`'s jitter: a wait drawn
uniformly between 0 and the computed interval."""


def state_name(stage: str) -> str:
    """The ASL state name of a stage: ``record_failure`` → ``RecordFailure``."""
    return "".join(part.capitalize() for part in stage.split("_"))


def transient_codes(
    *, self_bounded: bool | None = None, time_bounded: bool | None = None
) -> list[str]:
    """Codes of the retryable error classes, sorted; optionally only (non-)self-bounded or
    (non-)time-bounded ones."""
    codes = {
        cls.code
        for cls in all_error_classes()
        if issubclass(cls, TransientError)
        and (self_bounded is None or cls.self_bounded == self_bounded)
        and (time_bounded is None or cls.time_bounded == time_bounded)
    }
    return sorted(codes)


def asl_backoff(backoff: Backoff) -> Backoff:
    """The backoff as Step Functions can run it: whole seconds, at least one."""
    return Backoff(
        base_s=float(max(1, math.ceil(backoff.base_s))),
        max_s=float(max(1, math.ceil(backoff.max_s))),
        rate=max(1.0, float(backoff.rate)),
    )


def retrier_timing(backoff: Backoff) -> Json:
    """The waiting fields of an ASL retrier that waits as ``backoff`` (see :func:`asl_backoff`)."""
    rendered = asl_backoff(backoff)
    return {
        "IntervalSeconds": int(rendered.base_s),
        "BackoffRate": rendered.rate,
        "MaxDelaySeconds": int(rendered.max_s),
        "JitterStrategy": JITTER_STRATEGY,
    }


def retrier_backoff(retrier: Mapping[str, Any]) -> Backoff:
    """The :class:`Backoff` an ASL retrier waits with (the inverse of :func:`retrier_timing`)."""
    if retrier.get("JitterStrategy") != JITTER_STRATEGY:
        raise ValueError(f"retrier does not use full jitter: {retrier!r}")
    return Backoff(
        base_s=float(retrier.get("IntervalSeconds", 1)),
        max_s=float(retrier.get("MaxDelaySeconds", math.inf)),
        rate=float(retrier.get("BackoffRate", 2.0)),
    )


def outage_backoff(retry: RetryPolicy) -> Backoff:
    """How an outage is waited out on AWS: the policy's backoff, capped at 30 s, not 5 s."""
    base = asl_backoff(retry.backoff)
    return Backoff(base_s=base.base_s, max_s=float(OUTAGE_MAX_DELAY_S), rate=base.rate)


def _retriers(retry: RetryPolicy, outage_budget_s: float) -> list[Json]:
    timing = retrier_timing(retry.backoff)
    retriers: list[Json] = []
    bounded = transient_codes(self_bounded=True)
    if bounded:
        # A backstop: the stage ends a self-bounded wait itself (see the module doc).
        retriers.append(
            {"ErrorEquals": bounded, **timing, "MaxAttempts": SELF_BOUNDED_MAX_ATTEMPTS}
        )
    outage = transient_codes(self_bounded=False, time_bounded=True)
    if outage:
        # As locally: an outage (an endpoint restarting) is retried for a time budget, not
        # a handful of attempts, or every study in flight would fail within seconds.
        backoff = outage_backoff(retry)
        retriers.append(
            {
                "ErrorEquals": outage,
                **retrier_timing(backoff),
                "MaxAttempts": backoff.attempts_within(outage_budget_s),
            }
        )
    # RetryPolicy.max_attempts counts every attempt; ASL's MaxAttempts counts retries.
    retriers.append(
        {
            "ErrorEquals": [
                *transient_codes(self_bounded=False, time_bounded=False),
                *LAMBDA_SERVICE_ERRORS,
            ],
            **timing,
            "MaxAttempts": max(0, retry.max_attempts - 1),
        }
    )
    return retriers


def _task(function_arn: str, retry: RetryPolicy, outage_budget_s: float) -> Json:
    return {
        "Type": "Task",
        "Resource": LAMBDA_INVOKE,
        # The handler gets the state plus what only the context object knows: the execution
        # (its id in results and telemetry) and the retry count (the attempt number).
        "Parameters": {
            "FunctionName": function_arn,
            "Payload": {
                "state.$": "$",
                "execution.$": "$$.Execution.Name",
                "attempt.$": "$$.State.RetryCount",
            },
        },
        "Retry": _retriers(retry, outage_budget_s),
    }


def render_state_machine(
    pipeline: Pipeline = PIPELINE,
    *,
    function_arns: Mapping[str, str],
    retry: RetryPolicy,
    artifacts_bucket: str,
    outage_budget_s: float = DEFAULT_OUTAGE_BUDGET_S,
) -> Json:
    """The ASL definition of ``pipeline``; ``function_arns`` maps stage name → Lambda ARN.

    ``artifacts_bucket`` is recorded in the ``Comment``: the tensor travels through it by
    reference (see the module doc), never inline in the state.
    """
    needed = [*pipeline.names, pipeline.failure_stage]
    missing = [name for name in needed if name not in function_arns]
    if missing:
        raise KeyError(f"no function ARN for stage(s) {', '.join(missing)}")
    failure = state_name(pipeline.failure_stage)
    states: Json = {}
    for stage in pipeline.stages:
        state = _task(function_arns[stage.name], retry, outage_budget_s)
        state["Comment"] = stage.description
        state["OutputPath"] = "$.Payload"
        state["Catch"] = [{"ErrorEquals": ["States.ALL"], "ResultPath": "$.error", "Next": failure}]
        state["Next"] = state_name(stage.next) if stage.next else SUCCEEDED_STATE
        if stage.name == pipeline.start:
            # S3 and EventBridge deliver at least once: the first stage claims the upload,
            # and an execution that lost the claim ends here, having done nothing.
            states[DUPLICATE_CHOICE] = {
                "Type": "Choice",
                "Choices": [
                    {"Variable": "$.duplicate", "BooleanEquals": True, "Next": DUPLICATE_STATE}
                ],
                "Default": state["Next"],
            }
            states[DUPLICATE_STATE] = {
                "Type": "Succeed",
                "Comment": "another execution already processes this upload",
            }
            state["Next"] = DUPLICATE_CHOICE
        states[state_name(stage.name)] = state
    record = _task(function_arns[pipeline.failure_stage], retry, outage_budget_s)
    # Writing the failure object is idempotent, and it is the study's only outcome: retry
    # whatever goes wrong (a throttled S3, a container that died) before giving up.
    record["Retry"].append(
        {
            "ErrorEquals": ["States.ALL"],
            **retrier_timing(RECORD_FAILURE_BACKOFF),
            "MaxAttempts": RECORD_FAILURE_ATTEMPTS,
        }
    )
    record["Comment"] = f"write {_FAILURE_OBJECT} with the error code"
    # Keep the input (the state plus $.error) so the Fail state can name the error.
    record["ResultPath"] = None
    record["Next"] = FAILED_STATE
    states[failure] = record
    states[SUCCEEDED_STATE] = {"Type": "Succeed"}
    states[FAILED_STATE] = {
        "Type": "Fail",
        "Comment": "the study failed; its failure object and telemetry carry the code",
        "Error": FAILURE_ERROR,
        "Cause": f"see {_FAILURE_OBJECT} in the results bucket",
    }
    return {
        "Comment": (
            "RadStream: one execution per study sidecar. Tensors travel by reference "
            f"through {artifacts_bucket}, never inline."
        ),
        "StartAt": state_name(pipeline.start),
        "States": states,
    }


def asl_json(
    pipeline: Pipeline = PIPELINE,
    *,
    function_arns: Mapping[str, str],
    retry: RetryPolicy,
    artifacts_bucket: str,
    outage_budget_s: float = DEFAULT_OUTAGE_BUDGET_S,
) -> str:
    """:func:`render_state_machine` as indented JSON text."""
    definition = render_state_machine(
        pipeline,
        function_arns=function_arns,
        retry=retry,
        artifacts_bucket=artifacts_bucket,
        outage_budget_s=outage_budget_s,
    )
    return json.dumps(definition, indent=2)


# --- paths through the rendered definition (what Step Functions STANDARD bills) ----------

_TERMINAL_TYPES = ("Succeed", "Fail")


def _choice_next(state: Mapping[str, Any], variables: Mapping[str, object]) -> str:
    # Only the rule shapes the renderer emits: a boolean variable compared for equality.
    for rule in state.get("Choices", []):
        variable = str(rule["Variable"])
        if not variable.startswith("$."):
            raise ValueError(f"unsupported Choice variable {variable!r}")
        if "BooleanEquals" not in rule:
            raise ValueError(f"unsupported Choice rule {rule!r}")
        if variables.get(variable[2:], False) == rule["BooleanEquals"]:
            return str(rule["Next"])
    return str(state["Default"])


def states_entered(
    definition: Mapping[str, Any], *, fail_at: str | None = None, duplicate: bool = False
) -> list[str]:
    """The states an execution of a rendered definition enters, in order, start to end.

    ``fail_at`` (a stage name such as ``prepare``, or a state name) is the Task whose error
    is caught (``States.ALL``) after its retries; ``duplicate`` is what the first stage
    returns as ``$.duplicate``. The walk follows ``StartAt``, each Task's ``Next`` (or its
    ``Catch`` at ``fail_at``), each Choice's rules, and stops at a ``Succeed`` or ``Fail``
    state, which is included: Step Functions counts "a state transition each time a step
    of your workflow is executed", the terminal step and Choice steps included. Retries are
    not on the path (each one is one more transition).

    Raises ``ValueError`` if ``fail_at`` is never entered or the path does not end.
    """
    states: Mapping[str, Any] = definition["States"]
    failing = None if fail_at is None else (fail_at if fail_at in states else state_name(fail_at))
    if failing is not None and states.get(failing, {}).get("Type") != "Task":
        raise ValueError(f"{fail_at!r} is not a Task state of this definition")
    if failing is not None and not states[failing].get("Catch"):
        raise ValueError(f"{failing!r} catches nothing: it cannot fail into another state")
    variables = {"duplicate": duplicate}
    path: list[str] = []
    name = str(definition["StartAt"])
    failed = False
    while True:
        if len(path) > len(states):
            raise ValueError(f"the path loops: {' -> '.join(path)}")
        path.append(name)
        state = states[name]
        kind = state["Type"]
        if kind in _TERMINAL_TYPES or state.get("End") is True:
            break
        if kind == "Choice":
            name = _choice_next(state, variables)
        elif name == failing and not failed:
            failed = True
            name = str(state["Catch"][0]["Next"])
        else:
            name = str(state["Next"])
    if failing is not None and not failed:
        raise ValueError(f"the path never enters {failing!r}: {' -> '.join(path)}")
    return path


def placeholder_state_machine(pipeline: Pipeline = PIPELINE) -> Json:
    """``pipeline`` rendered as the template deploys it, with placeholder ARNs and bucket.

    The shape (states, Next, Catch, Choice) does not depend on the ARNs or the retry
    policy, so this is what a cost model walks to count the states a path enters.
    """
    arns = {
        name: f"arn:aws:lambda:us-east-1:000000000000:function:{name}"
        for name in (*pipeline.names, pipeline.failure_stage)
    }
    return render_state_machine(
        pipeline, function_arns=arns, retry=RetryPolicy(), artifacts_bucket="artifacts"
    )
