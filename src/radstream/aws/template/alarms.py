"""Alarms: for loss (always), for operations (with the dashboard), and where they notify.

**Loss.** A failed study is a FAILED execution with its failure object: normal, and no
alarm of its own. What loses a study is rarer and silent, so each gets an alarm:

* an upload EventBridge could not start an execution for within a day (the dead-letter
  queue holds its event);
* ``record_failure`` erring: the study's only outcome was not written;
* an execution that timed out or was aborted (an EXPRESS execution past five minutes):
  no state of it wrote an outcome.

``radstream reconcile --stack`` then lists the studies and requeues them.

**Operations** (left out with ``--no-dashboard``, like the dashboard they go with). A
single failed study stays normal, so failures alarm on their *rate*: the share of
executions that failed, and of each stage's invocations that erred (Lambda counts a
study the stage refused, and a transient retry, as an error), over a window with enough
traffic to mean something. Throttles, telemetry that stops reaching the lake and the p95
objective alarm on their own metric. The rates are metric math; an emulator whose
CloudFormation lacks it deploys without them (:data:`RATE_ALARMS_PARAMETER`).

**Notifications.** ``--alarm-topic`` (an existing SNS topic) and ``--alarm-email`` (a
topic of the stack with an e-mail subscription, under the stack key with ``--kms``)
both receive every alarm; with neither, the alarms are seen in the CloudWatch console.
"""

from __future__ import annotations

from collections.abc import Sequence

from radstream.aws.emf import END_TO_END_LATENCY, NAMESPACE, STACK_DIMENSION, STAGE_DIMENSION
from radstream.pipeline.definition import STORE, Pipeline

from .intrinsics import (
    KMS_KEY,
    STATE_MACHINE,
    STREAM,
    Json,
    function_name,
    get_att,
    logical,
    ref,
    sub,
)
from .options import TemplateOptions

ALARM_PERIOD_S = 300
RATE_PERIOD_S = 900
"""The window of the rate alarms: 15 minutes, long enough for a few studies at the
throughput objective (10 a minute)."""
RATE_MIN_COUNT = 10
"""A rate alarm looks only at windows with at least this many executions (invocations):
below, one bad upload would be a high rate."""
FAILED_EXECUTIONS_PERCENT = 5.0
"""Failed executions above this share of those started: five times the error budget of
the 99 % success objective."""
STAGE_ERRORS_PERCENT = 10.0
"""A stage erring on more than this share of its invocations (refused studies and
transient retries included, so above the executions' threshold)."""
SUSTAINED_PERIODS = 3
"""Throttling, failing delivery, a stream falling behind and a slow p95 alarm when they
last this many periods (15 minutes), not for one bad minute."""
DATA_FRESHNESS_S = 900
"""Firehose's oldest undelivered record older than this: AWS's advice is to alarm past
the longest buffering interval (15 minutes); the stack buffers 60 s."""
ITERATOR_AGE_MS = 900_000
"""Firehose 15 minutes behind the stream (the stream keeps records 24 hours)."""
LATENCY_OBJECTIVE_MS = 5000.0
"""The p95 objective: end-to-end latency of the successful studies under 5 s."""

RATE_ALARMS_PARAMETER = "RateAlarms"
RATE_ALARMS_CONDITION = "CreateRateAlarms"
ALARM_TOPIC = "AlarmTopic"
FIREHOSE = "TelemetryDelivery"


def alarm_actions(options: TemplateOptions) -> list[Json | str]:
    """Where every alarm notifies: the stack's e-mail topic and/or ``--alarm-topic``."""
    actions: list[Json | str] = []
    if options.alarm_email:
        actions.append(ref(ALARM_TOPIC))
    if options.alarm_topic:
        actions.append(options.alarm_topic)
    return actions


def _alarm(
    description: str,
    namespace: str,
    metric: str,
    dimensions: list[Json],
    actions: Sequence[Json | str],
    **settings: object,
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
        # No data is no loss, and no trouble: a quiet stack is not in alarm.
        "TreatMissingData": "notBreaching",
        **settings,
    }
    if "ExtendedStatistic" in settings:
        del props["Statistic"]
    if actions:
        props["AlarmActions"] = list(actions)
        props["OKActions"] = list(actions)
    return {"Type": "AWS::CloudWatch::Alarm", "Properties": props}


def _rate_alarm(
    description: str,
    namespace: str,
    failed: str,
    total: str,
    dimensions: list[Json],
    percent: float,
    actions: Sequence[Json | str],
) -> Json:
    """``failed`` as a percentage of ``total`` over :data:`RATE_PERIOD_S`, in windows with
    at least :data:`RATE_MIN_COUNT` of ``total``."""

    def stat(metric_id: str, metric: str) -> Json:
        return {
            "Id": metric_id,
            "ReturnData": False,
            "MetricStat": {
                "Metric": {"Namespace": namespace, "MetricName": metric, "Dimensions": dimensions},
                "Period": RATE_PERIOD_S,
                "Stat": "Sum",
            },
        }

    props: Json = {
        "AlarmDescription": description,
        "Metrics": [
            stat("failed", failed),
            stat("total", total),
            {
                "Id": "rate",
                "Label": f"{failed} per 100 {total}",
                "ReturnData": True,
                "Expression": (
                    f"IF(FILL(total, 0) >= {RATE_MIN_COUNT}, "
                    "100 * FILL(failed, 0) / FILL(total, 0), 0)"
                ),
            },
        ],
        "EvaluationPeriods": 1,
        "Threshold": percent,
        "ComparisonOperator": "GreaterThanThreshold",
        "TreatMissingData": "notBreaching",
    }
    if actions:
        props["AlarmActions"] = list(actions)
        props["OKActions"] = list(actions)
    return {
        "Type": "AWS::CloudWatch::Alarm",
        "Condition": RATE_ALARMS_CONDITION,
        "Properties": props,
    }


def alarm_resources(
    stack: str, pipeline: Pipeline, dead_letters: str, actions: Sequence[Json | str] = ()
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
            actions,
        ),
        "FailuresNotRecordedAlarm": _alarm(
            f"RadStream {stack}: record_failure failed, a study has no outcome object "
            f"(`radstream reconcile --stack {stack}`)",
            "AWS/Lambda",
            "Errors",
            [{"Name": "FunctionName", "Value": record}],
            actions,
        ),
        "ExecutionsTimedOutAlarm": _alarm(
            f"RadStream {stack}: an execution timed out before writing an outcome "
            f"(`radstream reconcile --stack {stack}`)",
            "AWS/States",
            "ExecutionsTimedOut",
            machine,
            actions,
        ),
        "ExecutionsAbortedAlarm": _alarm(
            f"RadStream {stack}: an execution was aborted before writing an outcome "
            f"(`radstream reconcile --stack {stack}`)",
            "AWS/States",
            "ExecutionsAborted",
            machine,
            actions,
        ),
    }


def operations_alarm_resources(
    stack: str, pipeline: Pipeline, actions: Sequence[Json | str] = ()
) -> Json:
    """The operational alarms of ``stack`` (see the module doc)."""
    machine = [{"Name": "StateMachineArn", "Value": ref(STATE_MACHINE)}]
    delivery = [{"Name": "DeliveryStreamName", "Value": ref(FIREHOSE)}]
    sustained = {"EvaluationPeriods": SUSTAINED_PERIODS, "DatapointsToAlarm": SUSTAINED_PERIODS}
    resources: Json = {
        "ExecutionsFailingAlarm": _rate_alarm(
            f"RadStream {stack}: more than {FAILED_EXECUTIONS_PERCENT:g}% of executions "
            f"failed in {RATE_PERIOD_S // 60} min. `radstream query failures_by_code --stack "
            f"{stack}` shows which code; one code everywhere (MODEL_UNAVAILABLE, "
            "STORE_ACCESS_DENIED) is the stack, many codes are bad uploads",
            "AWS/States",
            "ExecutionsFailed",
            "ExecutionsStarted",
            machine,
            FAILED_EXECUTIONS_PERCENT,
            actions,
        ),
    }
    for stage in pipeline.all_stages:
        name = logical(stage.name)
        function = [{"Name": "FunctionName", "Value": function_name(stack, stage.name)}]
        if stage.name != pipeline.failure_stage:  # its every error is a loss alarm
            resources[f"{name}ErrorsAlarm"] = _rate_alarm(
                f"RadStream {stack}: {stage.name} erred on more than "
                f"{STAGE_ERRORS_PERCENT:g}% of its invocations in {RATE_PERIOD_S // 60} min. "
                f"Its log group /aws/lambda/{function_name(stack, stage.name)} names the "
                "code of each error; a bug or a missing permission shows as the same code "
                "on every study",
                "AWS/Lambda",
                "Errors",
                "Invocations",
                function,
                STAGE_ERRORS_PERCENT,
                actions,
            )
        resources[f"{name}ThrottlesAlarm"] = _alarm(
            f"RadStream {stack}: {stage.name} was throttled for {SUSTAINED_PERIODS * 5} min "
            "(Step Functions retries, so studies slow down before they fail). Raise the "
            "account's Lambda concurrency quota, or the stage's --reserved-concurrency",
            "AWS/Lambda",
            "Throttles",
            function,
            actions,
            **sustained,
        )
    resources["TelemetryDeliveryStaleAlarm"] = _alarm(
        f"RadStream {stack}: telemetry older than {DATA_FRESHNESS_S // 60} min has not "
        f"reached the lake. See the /aws/kinesisfirehose/{stack}-telemetry log group "
        "(S3, KMS or Glue permissions, a deleted table)",
        "AWS/Firehose",
        "DeliveryToS3.DataFreshness",
        delivery,
        actions,
        Statistic="Maximum",
        Threshold=DATA_FRESHNESS_S,
    )
    resources["TelemetryDeliveryFailingAlarm"] = _alarm(
        f"RadStream {stack}: Firehose's writes to the telemetry bucket have been failing "
        f"for {SUSTAINED_PERIODS * 5} min (it retries for a day). See the "
        f"/aws/kinesisfirehose/{stack}-telemetry log group",
        "AWS/Firehose",
        "DeliveryToS3.Success",
        delivery,
        actions,
        Statistic="Average",
        ComparisonOperator="LessThanThreshold",
        **sustained,
    )
    resources["TelemetryConversionFailedAlarm"] = _alarm(
        f"RadStream {stack}: telemetry records did not match the Glue table and went to "
        "telemetry-errors/ instead of the lake: the table's columns and the handlers' "
        "records differ (redeploy the stack from the same RadStream version)",
        "AWS/Firehose",
        "FailedConversion.Records",
        delivery,
        actions,
    )
    # Firehose is the stream's one consumer and reads it with GetRecords (no enhanced
    # fan-out), so the stream's iterator age is how far Firehose is behind.
    resources["TelemetryStreamBehindAlarm"] = _alarm(
        f"RadStream {stack}: Firehose has been more than {ITERATOR_AGE_MS // 60000} min "
        f"behind the telemetry stream for {SUSTAINED_PERIODS * 5} min; records older than "
        f"24 h are lost. See the /aws/kinesisfirehose/{stack}-telemetry log group and "
        "the delivery stream's ThrottledGetRecords metric",
        "AWS/Kinesis",
        "GetRecords.IteratorAgeMilliseconds",
        [{"Name": "StreamName", "Value": ref(STREAM)}],
        actions,
        Statistic="Maximum",
        Threshold=ITERATOR_AGE_MS,
        **sustained,
    )
    resources["LatencyObjectiveAlarm"] = _alarm(
        f"RadStream {stack}: end-to-end p95 of successful studies above "
        f"{LATENCY_OBJECTIVE_MS / 1000:g} s for {SUSTAINED_PERIODS * 5} min. The dashboard's "
        "stage latencies show which stage; `radstream query stage_latency --stack "
        f"{stack}` confirms. Cold starts: reserved concurrency; infer: memory or the "
        "model endpoint",
        NAMESPACE,
        END_TO_END_LATENCY,
        [
            {"Name": STACK_DIMENSION, "Value": stack},
            {"Name": STAGE_DIMENSION, "Value": STORE},
        ],
        actions,
        ExtendedStatistic="p95",
        Threshold=LATENCY_OBJECTIVE_MS,
        ComparisonOperator="GreaterThanThreshold",
        **sustained,
    )
    return resources


def notification_resources(stack: str, options: TemplateOptions) -> Json:
    """The stack's alarm topic and its e-mail subscription (``--alarm-email``), if any."""
    if not options.alarm_email:
        return {}
    topic: Json = {
        "Type": "AWS::SNS::Topic",
        "Properties": {"TopicName": f"{stack}-alarms", "DisplayName": f"RadStream {stack}"},
    }
    if options.kms:
        # The stack key; its policy lets CloudWatch use it (alarm_key_statement).
        topic["Properties"]["KmsMasterKeyId"] = get_att(KMS_KEY, "Arn")
    else:
        # CloudWatch cannot publish to a topic under SNS's AWS managed key (whose policy
        # cannot grant it), and without --kms there is no key of the stack.
        topic["Metadata"] = {
            "checkov": {
                "skip": [
                    {
                        "id": "CKV_AWS_26",
                        "comment": "alarm notifications carry no patient field; with --kms "
                        "the topic uses the stack key",
                    }
                ]
            }
        }
    subscription: Json = {
        "Type": "AWS::SNS::Subscription",
        "Properties": {
            "TopicArn": ref(ALARM_TOPIC),
            "Protocol": "email",
            "Endpoint": options.alarm_email,
        },
    }
    return {ALARM_TOPIC: topic, "AlarmEmailSubscription": subscription}


def alarm_key_statement() -> Json:
    """The data key's policy statement that lets CloudWatch alarms of this account
    publish to the stack's encrypted alarm topic."""
    return {
        "Sid": "AllowAlarmsToNotify",
        "Effect": "Allow",
        "Principal": {"Service": "cloudwatch.amazonaws.com"},
        "Action": ["kms:Decrypt", "kms:GenerateDataKey*"],
        # A key policy's own "*" is the key itself. The conditions keep the service
        # principal to alarms of this account (no confused deputy); CloudWatch sends both
        # keys when it publishes to an encrypted topic.
        "Resource": "*",
        "Condition": {
            "StringEquals": {"aws:SourceAccount": ref("AWS::AccountId")},
            "ArnLike": {
                "aws:SourceArn": sub(
                    "arn:${AWS::Partition}:cloudwatch:${AWS::Region}:${AWS::AccountId}:alarm:*"
                )
            },
        },
    }
