"""The ASL rendering of the pipeline: retries only the transient, every failure ends FAILED."""

from __future__ import annotations

import json
from typing import Any

import pytest

from radstream.aws.asl import (
    DEFAULT_OUTAGE_BUDGET_S,
    LAMBDA_INVOKE,
    LAMBDA_SERVICE_ERRORS,
    OUTAGE_MAX_DELAY_S,
    asl_json,
    outage_backoff,
    render_state_machine,
    retrier_backoff,
    state_name,
    transient_codes,
)
from radstream.backoff import Backoff
from radstream.errors import InvalidInputError, TransientError, all_error_classes
from radstream.pipeline.definition import PIPELINE, RetryPolicy

ARNS = {
    name: f"arn:aws:lambda:eu-west-1:123456789012:function:rs-{name}"
    for name in (*PIPELINE.names, PIPELINE.failure_stage)
}
POLICY = RetryPolicy(max_attempts=4, base_s=0.2, max_s=5.0, rate=2.0)


@pytest.fixture
def definition() -> dict[str, Any]:
    text = asl_json(function_arns=ARNS, retry=POLICY, artifacts_bucket="artifacts")
    parsed: dict[str, Any] = json.loads(text)
    return parsed


def _targets(state: dict[str, Any]) -> list[str]:
    targets = [state[k] for k in ("Next", "Default") if k in state]
    targets += [c["Next"] for c in state.get("Catch", [])]
    targets += [c["Next"] for c in state.get("Choices", [])]
    return targets


def test_json_round_trips_to_the_rendered_dict(definition: dict[str, Any]) -> None:
    assert definition == render_state_machine(
        function_arns=ARNS, retry=POLICY, artifacts_bucket="artifacts"
    )


def test_every_transition_names_an_existing_state(definition: dict[str, Any]) -> None:
    states = definition["States"]
    assert definition["StartAt"] == state_name(PIPELINE.start) == "Validate"
    for name, state in states.items():
        for target in _targets(state):
            assert target in states, f"{name} → {target} does not exist"
        if state["Type"] not in ("Succeed", "Fail", "Choice"):
            assert "Next" in state or state.get("End") is True, name
        if state["Type"] == "Choice":
            assert "Default" in state, name


def test_main_path_follows_the_pipeline_and_succeeds(definition: dict[str, Any]) -> None:
    states = definition["States"]
    path, current = [], definition["StartAt"]
    while states[current]["Type"] in ("Task", "Choice"):
        if states[current]["Type"] == "Task":
            path.append(current)
            current = states[current]["Next"]
        else:  # the duplicate check: its default is the main path
            current = states[current]["Default"]
    assert path == [state_name(n) for n in PIPELINE.names]
    assert states[current]["Type"] == "Succeed"


def test_a_duplicate_execution_ends_after_validate_without_touching_the_study(
    definition: dict[str, Any],
) -> None:
    states = definition["States"]
    choice = states[states["Validate"]["Next"]]
    assert choice["Type"] == "Choice"
    assert choice["Default"] == "Prepare"
    (rule,) = choice["Choices"]
    assert rule == {"Variable": "$.duplicate", "BooleanEquals": True, "Next": "DuplicateIgnored"}
    assert states["DuplicateIgnored"]["Type"] == "Succeed"


def test_every_stage_invokes_its_function_and_keeps_only_the_payload(
    definition: dict[str, Any],
) -> None:
    for stage in (*PIPELINE.names, PIPELINE.failure_stage):
        state = definition["States"][state_name(stage)]
        assert state["Resource"] == LAMBDA_INVOKE
        assert state["Parameters"] == {
            "FunctionName": ARNS[stage],
            "Payload": {
                "state.$": "$",
                "execution.$": "$$.Execution.Name",
                "attempt.$": "$$.State.RetryCount",
            },
        }
    for stage in PIPELINE.names:
        assert definition["States"][state_name(stage)]["OutputPath"] == "$.Payload"


def test_every_stage_retries_transient_errors_with_the_policy(definition: dict[str, Any]) -> None:
    expected = {cls.code for cls in all_error_classes() if issubclass(cls, TransientError)}
    assert {"MODEL_UNAVAILABLE", "IMAGE_NOT_YET_PRESENT"} <= expected
    for stage in (*PIPELINE.names, PIPELINE.failure_stage):
        retriers = [
            r
            for r in definition["States"][state_name(stage)]["Retry"]
            if r["ErrorEquals"] != ["States.ALL"]
        ]
        retried = {e for r in retriers for e in r["ErrorEquals"]}
        assert retried == expected | set(LAMBDA_SERVICE_ERRORS), stage
        for r in retriers:
            assert r["JitterStrategy"] == "FULL"
            assert r["IntervalSeconds"] == 1  # 0.2 s rounds up to ASL's whole seconds
            assert r["BackoffRate"] == 2.0
            assert isinstance(r["MaxAttempts"], int)
        general = next(r for r in retriers if "Lambda.ServiceException" in r["ErrorEquals"])
        assert general["MaxAttempts"] == POLICY.max_attempts - 1  # ASL counts retries
        assert general["MaxDelaySeconds"] == 5
        assert "MODEL_UNAVAILABLE" not in general["ErrorEquals"]
        # AWS's recommended retrier, but not Lambda.Unknown (a timeout or an OOM kill).
        assert "Lambda.ClientExecutionTimeoutException" in general["ErrorEquals"]
        assert "Lambda.Unknown" not in retried


def test_an_outage_is_retried_for_its_time_budget_as_locally(definition: dict[str, Any]) -> None:
    outage = next(
        r for r in definition["States"]["Infer"]["Retry"] if "MODEL_UNAVAILABLE" in r["ErrorEquals"]
    )
    assert outage["MaxDelaySeconds"] == OUTAGE_MAX_DELAY_S
    assert outage["JitterStrategy"] == "FULL"
    backoff = retrier_backoff(outage)
    assert backoff == outage_backoff(POLICY)
    retries = outage["MaxAttempts"]
    # Under full jitter a wait averages half its ceiling: the expected waits of the
    # rendered retries cover the budget, and one retry fewer would not.
    expected = [backoff.expected_delay(k) for k in range(1, retries + 1)]
    assert sum(expected) >= DEFAULT_OUTAGE_BUDGET_S > sum(expected[:-1])
    # Counting retries at their full ceilings (the old rule) stops far too early: their
    # expected total wait is about half the budget, so an outage ends studies early.
    at_ceilings = next(n for n in range(1, 1000) if backoff.worst_case_s(n) >= 600)
    assert at_ceilings < retries
    assert sum(backoff.expected_delay(k) for k in range(1, at_ceilings + 1)) < 600
    short = render_state_machine(
        function_arns=ARNS, retry=POLICY, artifacts_bucket="a", outage_budget_s=120
    )
    fewer = next(
        r for r in short["States"]["Infer"]["Retry"] if "MODEL_UNAVAILABLE" in r["ErrorEquals"]
    )
    assert fewer["MaxAttempts"] < outage["MaxAttempts"]


def test_every_retrier_renders_a_pipeline_backoff(definition: dict[str, Any]) -> None:
    whole = RetryPolicy(max_attempts=4, base_s=1.0, max_s=4.0, rate=3.0)
    rendered = render_state_machine(function_arns=ARNS, retry=whole, artifacts_bucket="a")
    general = next(
        r
        for r in rendered["States"]["Store"]["Retry"]
        if "Lambda.ServiceException" in r["ErrorEquals"]
    )
    assert retrier_backoff(general) == whole.backoff == Backoff(base_s=1.0, max_s=4.0, rate=3.0)
    for state in definition["States"].values():
        for retrier in state.get("Retry", []):
            assert isinstance(retrier_backoff(retrier), Backoff)  # FULL jitter, every one


def test_only_record_failure_retries_every_error_since_it_writes_the_only_outcome(
    definition: dict[str, Any],
) -> None:
    for name, state in definition["States"].items():
        catch_all = [r for r in state.get("Retry", []) if r["ErrorEquals"] == ["States.ALL"]]
        if name == "RecordFailure":
            assert len(catch_all) == 1 and catch_all[0]["MaxAttempts"] >= 2
        else:
            assert not catch_all, name


def test_invalid_input_is_never_retried(definition: dict[str, Any]) -> None:
    invalid = {c.code for c in all_error_classes() if not c.retryable}
    assert {"SIDECAR_INVALID_JSON", "IMAGE_UNDECODABLE", "IMAGE_MISSING"} <= invalid
    assert issubclass(all_error_classes()[0], Exception)
    for name, state in definition["States"].items():
        for retrier in state.get("Retry", []):
            assert not invalid & set(retrier["ErrorEquals"]), name
    assert not {c.code for c in all_error_classes() if issubclass(c, InvalidInputError)} & set(
        transient_codes()
    )


def test_every_stage_catches_into_record_failure_which_ends_in_fail(
    definition: dict[str, Any],
) -> None:
    states = definition["States"]
    failure = state_name(PIPELINE.failure_stage)
    assert failure == "RecordFailure"
    for stage in PIPELINE.names:
        [catch] = states[state_name(stage)]["Catch"]
        assert catch == {"ErrorEquals": ["States.ALL"], "ResultPath": "$.error", "Next": failure}
    record = states[failure]
    assert "Catch" not in record  # if recording fails too, the execution fails with that error
    assert record["ResultPath"] is None  # $.error passes through
    assert states[record["Next"]]["Type"] == "Fail"


def test_no_failure_path_reaches_succeed(definition: dict[str, Any]) -> None:
    states = definition["States"]
    seen: set[str] = set()
    frontier = [c["Next"] for s in states.values() for c in s.get("Catch", [])]
    while frontier:
        name = frontier.pop()
        if name in seen:
            continue
        seen.add(name)
        assert states[name]["Type"] != "Succeed", f"failure path reaches {name}"
        frontier.extend(_targets(states[name]))
    assert any(states[n]["Type"] == "Fail" for n in seen)


def test_missing_function_arn_is_refused() -> None:
    arns = dict(ARNS)
    del arns[PIPELINE.failure_stage]
    with pytest.raises(KeyError, match="record_failure"):
        render_state_machine(function_arns=arns, retry=POLICY, artifacts_bucket="a")
