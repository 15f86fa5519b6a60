"""Alarms for loss: the ways a study can end with no outcome object.

A failed study is a FAILED execution with its failure object: normal, and no alarm. What
loses a study is rarer and silent, so each gets an alarm (notifying ``--alarm-topic``, an
SNS topic ARN, when given; else visible in the CloudWatch console):

* an upload EventBridge could not start an execution for within a day (the dead-letter
  queue holds its event);
* ``record_failure`` erring: the study's only outcome was not written;
* an execution that timed out or was aborted (an EXPRESS execution past five minutes):
  no state of it wrote an outcome.

``radstream reconcile --stack`` then lists the studies and requeues them.
"""

from __future__ import annotations

from radstream.pipeline.definition import Pipeline

from .intrinsics import STATE_MACHINE, Json, function_name, get_att, ref

ALARM_PERIOD_S = 300


def _alarm(
    description: str, namespace: str, metric: str, dimensions: list[Json], topic: str | None
) -> Json:
    props: Json = {
        "AlarmDescription": description,
        "Namespace": namespace,
        "MetricName": metric,
        "Dimensions": dimensions,
        "Statistic": "Maximum" if namespace == "AWS/SQS" else "Sum",
        "Period": ALARM_PERIOD_S,
        "EvaluationPeriods": 1,
        "Threshold": 1,
        "ComparisonOperator": "GreaterThanOrEqualToThreshold",
        # No data is no loss: a quiet stack is not in alarm.
        "TreatMissingData": "notBreaching",
    }
    if topic:
        props["AlarmActions"] = [topic]
        props["OKActions"] = [topic]
    return {"Type": "AWS::CloudWatch::Alarm", "Properties": props}


def alarm_resources(
    stack: str, pipeline: Pipeline, dead_letters: str, topic: str | None = None
) -> Json:
    """The loss alarms of ``stack`` (see the module doc)."""
    machine = [{"Name": "StateMachineArn", "Value": ref(STATE_MACHINE)}]
    record = function_name(stack, pipeline.failure_stage)
    return {
        "UploadsNotStartedAlarm": _alarm(
            f"RadStream {stack}: an upload's execution could not be started (see the "
            "UploadDeadLetters queue; re-upload or `radstream reconcile --requeue`)",
            "AWS/SQS",
            "ApproximateNumberOfMessagesVisible",
            [{"Name": "QueueName", "Value": get_att(dead_letters, "QueueName")}],
            topic,
        ),
        "FailuresNotRecordedAlarm": _alarm(
            f"RadStream {stack}: record_failure failed, a study has no outcome object "
            f"(`radstream reconcile --stack {stack}`)",
            "AWS/Lambda",
            "Errors",
            [{"Name": "FunctionName", "Value": record}],
            topic,
        ),
        "ExecutionsTimedOutAlarm": _alarm(
            f"RadStream {stack}: an execution timed out before writing an outcome "
            f"(`radstream reconcile --stack {stack}`)",
            "AWS/States",
            "ExecutionsTimedOut",
            machine,
            topic,
        ),
        "ExecutionsAbortedAlarm": _alarm(
            f"RadStream {stack}: an execution was aborted before writing an outcome "
            f"(`radstream reconcile --stack {stack}`)",
            "AWS/States",
            "ExecutionsAborted",
            machine,
            topic,
        ),
    }
