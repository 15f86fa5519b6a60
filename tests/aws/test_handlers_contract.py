"""The Lambda error contract: what a handler raises, and how record_failure reads it back.

The end-to-end test runs the handlers on ministack, whose Lambda reports every error as
``Runtime.HandlerError`` with the bare message. Real Lambda reports the exception's class
name as ``errorType`` and wraps the message in a JSON ``Cause``; that shape is built here by
hand from AWS's documented format, since no emulator here produces it.
"""

from __future__ import annotations

import json
import traceback

from radstream.aws.handlers import error_from_cause, lambda_error
from radstream.errors import ImageTruncated, ModelUnavailable


def _lambda_cause(exc: Exception) -> str:
    # What the Lambda Python runtime puts in a task failure's Cause.
    return json.dumps(
        {
            "errorMessage": str(exc),
            "errorType": type(exc).__name__,
            "requestId": "0d3d6a9e",
            "stackTrace": traceback.format_exception(exc),
        }
    )


def test_the_lambda_error_type_is_the_code_so_retry_rules_can_match_it() -> None:
    exc = lambda_error(ModelUnavailable("endpoint down"), "infer", attempt=2)
    assert type(exc).__name__ == "MODEL_UNAVAILABLE"
    payload = json.loads(str(exc))
    assert payload["code"] == "MODEL_UNAVAILABLE"
    assert payload["retryable"] is True
    assert (payload["stage"], payload["attempt"]) == ("infer", 2)


def test_record_failure_reads_the_code_from_real_lambdas_cause() -> None:
    exc = lambda_error(ImageTruncated("the PNG ends early"), "prepare")
    error = {"Error": type(exc).__name__, "Cause": _lambda_cause(exc)}
    decoded = error_from_cause(error, {})
    assert decoded.code == "IMAGE_TRUNCATED"
    assert decoded.stage == "prepare"
    assert decoded.message == "the PNG ends early"
    assert decoded.hint == ImageTruncated.hint
    assert decoded.attempt == 1


def test_record_failure_reads_the_code_from_a_bare_message_as_emulators_send_it() -> None:
    exc = lambda_error(ImageTruncated("the PNG ends early"), "prepare")
    decoded = error_from_cause({"Error": "Runtime.HandlerError", "Cause": str(exc)}, {})
    assert decoded.code == "IMAGE_TRUNCATED"


def test_a_timeout_is_filed_under_its_own_code_at_the_first_unfinished_stage() -> None:
    stage_ms = {"validate": 3.0, "prepare": 40.0}
    decoded = error_from_cause({"Error": "States.Timeout", "Cause": ""}, stage_ms)
    assert decoded.code == "STAGE_TIMEOUT"
    assert decoded.stage == "infer"
    assert decoded.retryable is False


def test_an_error_radstream_did_not_raise_is_a_crash_with_a_capped_cause() -> None:
    cause = "x" * 5000
    decoded = error_from_cause({"Error": "Runtime.ExitError", "Cause": cause}, {})
    assert decoded.code == "STAGE_CRASHED"
    assert decoded.stage == "validate"
    assert len(decoded.message) < 600
