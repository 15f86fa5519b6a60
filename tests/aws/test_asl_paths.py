"""Paths through the rendered state machine: the states each one enters (what STANDARD bills)."""

from __future__ import annotations

import itertools
from typing import Any

import pytest

from radstream.aws.asl import (
    DUPLICATE_CHOICE,
    DUPLICATE_STATE,
    FAILED_STATE,
    SUCCEEDED_STATE,
    placeholder_state_machine,
    render_state_machine,
    state_name,
    states_entered,
)
from radstream.pipeline.definition import PIPELINE, RetryPolicy

ARNS = {
    name: f"arn:aws:lambda:eu-west-1:123456789012:function:rs-{name}"
    for name in (*PIPELINE.names, PIPELINE.failure_stage)
}


@pytest.fixture
def definition() -> dict[str, Any]:
    return render_state_machine(
        function_arns=ARNS, retry=RetryPolicy(max_attempts=4), artifacts_bucket="artifacts"
    )


def _edges(state: dict[str, Any]) -> set[str]:
    edges = {state[k] for k in ("Next", "Default") if k in state}
    edges |= {c["Next"] for c in state.get("Catch", [])}
    edges |= {c["Next"] for c in state.get("Choices", [])}
    return edges


def _is_a_walk(definition: dict[str, Any], path: list[str]) -> bool:
    """Starts at StartAt, follows only edges of the definition, ends in a terminal state."""
    states = definition["States"]
    return (
        path[0] == definition["StartAt"]
        and all(b in _edges(states[a]) for a, b in itertools.pairwise(path))
        and states[path[-1]]["Type"] in ("Succeed", "Fail")
    )


def test_success_enters_six_states(definition: dict[str, Any]) -> None:
    path = states_entered(definition)
    assert path == ["Validate", DUPLICATE_CHOICE, "Prepare", "Infer", "Store", SUCCEEDED_STATE]
    assert _is_a_walk(definition, path)


def test_a_duplicate_enters_three_states(definition: dict[str, Any]) -> None:
    path = states_entered(definition, duplicate=True)
    assert path == ["Validate", DUPLICATE_CHOICE, DUPLICATE_STATE]
    assert _is_a_walk(definition, path)


@pytest.mark.parametrize(
    ("stage", "count"), [("validate", 3), ("prepare", 5), ("infer", 6), ("store", 7)]
)
def test_a_failure_enters_the_states_up_to_its_stage_then_record_failure_and_fail(
    definition: dict[str, Any], stage: str, count: int
) -> None:
    path = states_entered(definition, fail_at=stage)
    assert len(path) == count
    assert path[-3:] == [state_name(stage), "RecordFailure", FAILED_STATE]
    assert _is_a_walk(definition, path)
    # The same by state name.
    assert states_entered(definition, fail_at=state_name(stage)) == path


def test_the_walk_does_not_depend_on_arns_or_retry_policy(definition: dict[str, Any]) -> None:
    placeholder = placeholder_state_machine()
    assert states_entered(placeholder) == states_entered(definition)
    assert states_entered(placeholder, duplicate=True) == states_entered(definition, duplicate=True)
    for stage in PIPELINE.names:
        assert states_entered(placeholder, fail_at=stage) == states_entered(
            definition, fail_at=stage
        )


def test_impossible_paths_are_refused(definition: dict[str, Any]) -> None:
    with pytest.raises(ValueError, match="not a Task"):
        states_entered(definition, fail_at="nowhere")
    with pytest.raises(ValueError, match="catches nothing"):
        states_entered(definition, fail_at=PIPELINE.failure_stage)
    with pytest.raises(ValueError, match="never enters"):
        states_entered(definition, fail_at="prepare", duplicate=True)
