"""An EXPRESS execution ends hard at five minutes: the template fits its worst case in
them, or refuses the configuration and names the setting to change."""

from __future__ import annotations

from typing import Any

import pytest

from radstream.aws.asl import outage_backoff, transient_codes
from radstream.aws.template import TemplateOptions, render_template
from radstream.aws.template.compute import LAMBDA_TIMEOUT_S, definition_of, execution_times
from radstream.aws.template.limits import EXPRESS_LIMIT_S
from radstream.errors import ConfigInvalid
from radstream.pipeline.definition import RetryPolicy

ENDPOINT = "https://model.internal:8443"


def _outage_retries(options: TemplateOptions) -> int:
    """The outage retrier's MaxAttempts in the rendered state machine (every Task alike)."""
    template = render_template("rs", options)
    definition = definition_of(template["Resources"]["StateMachine"])
    outage = transient_codes(self_bounded=False, time_bounded=True)
    found = {
        retrier["MaxAttempts"]
        for state in definition["States"].values()
        for retrier in state.get("Retry", [])
        if retrier["ErrorEquals"] == outage
    }
    [retries] = found
    assert isinstance(retries, int)
    return retries


@pytest.mark.parametrize("endpoint", [None, ENDPOINT])
@pytest.mark.parametrize(
    "settings",
    [{}, {"model_timeout_s": 5.0, "model_retries": 1}, {"image_wait_s": 0.0}],
    ids=["defaults", "short-requests", "no-image-wait"],
)
def test_the_worst_express_execution_fits_in_five_minutes(
    endpoint: str | None, settings: dict[str, Any]
) -> None:
    options = TemplateOptions(state_machine_type="EXPRESS", model_endpoint=endpoint, **settings)
    retries = _outage_retries(options)
    times = execution_times(options)
    assert times.worst_case(retries).total_s <= EXPRESS_LIMIT_S
    if endpoint is not None:
        assert retries >= 1  # an endpoint restart does not fail every study in flight
        # As many as fit: one more would not.
        assert times.worst_case(retries + 1).total_s > EXPRESS_LIMIT_S or retries == (
            outage_backoff(RetryPolicy()).attempts_within(120.0)
        )


def test_the_worst_case_counts_in_lambda_retries_and_waits_at_their_ceilings() -> None:
    times = execution_times(TemplateOptions(model_endpoint=ENDPOINT, image_wait_s=30.0))
    worst = times.worst_case(2)
    assert worst.attempt_s == 4 * 10.0 + 3 * 1.0  # 1 + 3 tries of 10 s, waits of up to 1 s
    assert worst.outage_waits_s == 1.0 + 2.0  # full jitter: each wait at most its ceiling
    assert worst.before_s == LAMBDA_TIMEOUT_S["validate"] + LAMBDA_TIMEOUT_S["prepare"] + 30.0
    assert worst.record_failure_s == LAMBDA_TIMEOUT_S["record_failure"]
    assert worst.total_s == worst.before_s + 3 * worst.attempt_s + 3.0 + worst.record_failure_s


def test_the_issue_configuration_was_over_five_minutes() -> None:
    """1 + 3 retries of 10 s and a 120 s outage budget: the old MaxAttempts did not fit."""
    options = TemplateOptions(state_machine_type="EXPRESS", model_endpoint=ENDPOINT)
    old = outage_backoff(RetryPolicy()).attempts_within(120.0)
    assert execution_times(options).worst_case(old).total_s > EXPRESS_LIMIT_S
    assert _outage_retries(options) < old


@pytest.mark.parametrize(
    ("settings", "named"),
    [
        ({"model_timeout_s": 30.0}, "model.timeout_s"),
        ({"model_retries": 10}, "model.retries"),
        ({"image_wait_s": 200.0}, "engine.image_wait_s"),
    ],
)
def test_an_express_configuration_that_cannot_fit_is_refused_naming_the_setting(
    settings: dict[str, Any], named: str
) -> None:
    endpoint = None if "image_wait_s" in settings else ENDPOINT
    options = TemplateOptions(state_machine_type="EXPRESS", model_endpoint=endpoint, **settings)
    with pytest.raises(ConfigInvalid, match=named) as refused:
        render_template("rs", options)
    assert "STANDARD" in str(refused.value)
    # The same settings are fine on a STANDARD state machine, which has no such limit.
    render_template("rs", TemplateOptions(model_endpoint=endpoint, **settings))


def test_standard_retries_an_outage_for_the_configured_budget() -> None:
    backoff = outage_backoff(RetryPolicy())
    assert _outage_retries(TemplateOptions()) == backoff.attempts_within(600.0)
    assert _outage_retries(TemplateOptions(outage_budget_s=60.0)) == backoff.attempts_within(60.0)
