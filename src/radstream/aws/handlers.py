"""AWS Lambda handlers: one per pipeline stage, on the same stage functions as the local engine.

Contract with the state machine (:mod:`radstream.aws.asl`):

* The event is ``{"state": …, "execution": $$.Execution.Name, "attempt": $$.State.RetryCount}``.
  ``state`` is the execution's JSON context: the EventBridge input (``bucket``, ``key``,
  ``etag``, ``sequencer``, ``event_time``) plus what earlier stages added. A handler returns
  the next state.
* A handler **raises** on failure, never returns ``success: false``. The exception's class
  name, which Lambda reports as ``errorType`` and Step Functions as the error name, is the
  RadStream code (``MODEL_UNAVAILABLE``…), and its message is the error as JSON, so
  ``record_failure`` can file the code, message and hint whatever the emulator or Lambda
  wraps around it.
* The tensor travels by reference: ``prepare`` writes ``tensors/{execution}.npy`` to the
  tensor bucket and ``infer`` reads it (Step Functions limits a state to 256 KB).
* Every attempt emits one telemetry record to Kinesis, flushed before the handler returns,
  and logs as JSON lines (execution id, stage, attempt, code) to CloudWatch.
* Every successful attempt writes its latency (and, where it completes the execution, the
  end-to-end latency) to stdout in Embedded Metric Format: CloudWatch metrics for the
  stack's dashboard and alarms (:mod:`radstream.aws.emf`).

Each handler runs the function its ``StageDef`` declares, the one the local runner runs:
this module only adapts the wire (the state as an :class:`ExecutionContext`, errors as
typed Lambda errors) and lends the stages their AWS ports (S3, the tensor hand-off through
S3, the upload claim as a conditional PUT).

Heavy libraries (NumPy, the DICOM codecs, ONNX Runtime) are imported inside the stages
that use them: the ``store`` and ``record_failure`` functions ship without them, and
``validate`` carries the imaging layer only for the header of a DICOM uploaded without a
sidecar (``dicom/…``, the rule's second trigger; its input is the same
``bucket``/``key``/``etag``/``sequencer``).
"""

from __future__ import annotations

import functools
import hashlib
import io
import json
import os
import re
import tempfile
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from radstream.aws import emf
from radstream.aws.kinesis_sink import KinesisTelemetrySink
from radstream.aws.s3_store import S3ObjectStore
from radstream.aws.secrets import load_secrets
from radstream.aws.session import AwsTarget
from radstream.errors import (
    ConfigInvalid,
    RadStreamError,
    StageCrashed,
    StageTimedOut,
    error_from_exception,
)
from radstream.layout import Bucket, claim_key, tensor_key
from radstream.logs import configure_from_env, get_logger, log_context
from radstream.pipeline.definition import (
    PIPELINE,
    VALIDATE,
    StageDef,
)
from radstream.pricing import load_pricing
from radstream.schema.telemetry import StageStatus
from radstream.settings import Settings
from radstream.stages.context import ExecutionContext, JsonObject, StageError
from radstream.stages.ports import StageOptions, StagePorts
from radstream.stages.registry import stage_function
from radstream.stages.telemetry import StageRecorder

if TYPE_CHECKING:
    import numpy as np
    import numpy.typing as npt

    from radstream.imaging import Preprocessing
    from radstream.model import ModelClient

logger = get_logger(__name__)

MODEL_FILE = Path(tempfile.gettempdir()) / "radstream-model.onnx"
_TIMEOUT_ERRORS = ("States.Timeout", "Sandbox.Timedout", "Runtime.OutOfMemory")
# Step Functions reports a function that timed out or was killed for memory as
# Lambda.Unknown (the function returned no error type); only its Cause tells which.
_UNKNOWN_ERRORS = ("Lambda.Unknown", "Runtime.ExitError", "Unhandled")
_EXHAUSTED_CAUSE = re.compile(
    r"task timed out|timed out after|out of memory|outofmemory|memory size exceeded"
    r"|signal: killed|max memory used",
    re.IGNORECASE,
)
MIN_BOTOCORE = (1, 35)
"""The log level of the handlers (INFO when unset)."""


# --- the AWS ports ----------------------------------------------------------------------


class S3TensorHandoff:
    """The tensor between ``prepare`` and ``infer``: ``tensors/{execution}.npy`` on S3."""

    def __init__(self, store: S3ObjectStore) -> None:
        self._store = store

    def put(self, execution_id: str, tensor: npt.NDArray[np.float32]) -> None:
        """Write the tensor as ``.npy`` (no pickles)."""
        import numpy as np

        buffer = io.BytesIO()
        np.save(buffer, tensor, allow_pickle=False)
        self._store.put(Bucket.TENSORS, tensor_key(execution_id), buffer.getvalue())

    def get(self, execution_id: str) -> npt.NDArray[np.float32]:
        """Read the tensor ``prepare`` wrote for this execution."""
        import numpy as np

        data = self._store.get(Bucket.TENSORS, tensor_key(execution_id))
        tensor: npt.NDArray[np.float32] = np.load(io.BytesIO(data), allow_pickle=False)
        return tensor


class S3UploadClaims:
    """One execution per upload, by a conditional PUT to ``claims/`` in the artifacts bucket.

    One key per upload: the sidecar key plus S3's per-write sequencer (or the ETag), written
    only if absent (``If-None-Match: *``), so exactly one execution wins per upload, while a
    later re-upload of the same sidecar (a retry after a fix) still runs.
    """

    def __init__(self, store: S3ObjectStore) -> None:
        self._store = store

    def claim(self, context: ExecutionContext) -> bool:
        """True if this execution holds the upload's claim (now, or from an earlier try)."""
        marker = str(context.extra("sequencer") or context.extra("etag") or "")
        digest = hashlib.sha256(f"{context.key}\n{marker}".encode()).hexdigest()[:40]
        owner = self._store.put_if_absent(
            Bucket.ARTIFACTS, claim_key(digest), context.execution_id.encode()
        )
        return owner == context.execution_id.encode()


class LambdaModel:
    """The model client of a container, made on first use (only ``infer`` ever asks)."""

    def __init__(self, settings: Settings, store: S3ObjectStore) -> None:
        self._settings = settings
        self._store = store
        self._client: ModelClient | None = None

    def __call__(self) -> ModelClient:
        """The client: in process from the artifacts bucket's model file, or the endpoint."""
        if self._client is None:
            from radstream.model.loading import load_model_client

            settings = self._settings
            if not settings.model.endpoint:
                self._download(settings.aws.model_key)
                settings = settings.model_copy(
                    update={"model": settings.model.model_copy(update={"path": MODEL_FILE})}
                )
            self._client = load_model_client(settings)
        return self._client

    def _download(self, key: str) -> None:
        # Once per container: /tmp outlives invocations, so a warm start skips this.
        if MODEL_FILE.exists():
            return
        data = self._store.get(Bucket.ARTIFACTS, key)
        # A private temporary name, then an atomic rename: a reader never sees a
        # half-written model, even where containers share /tmp (an emulator).
        with tempfile.NamedTemporaryFile(
            dir=MODEL_FILE.parent, prefix=MODEL_FILE.name, delete=False
        ) as partial:
            partial.write(data)
        os.replace(partial.name, MODEL_FILE)


def _preprocessing_of(settings: Settings) -> Callable[[], Preprocessing]:
    def preprocessing() -> Preprocessing:
        from radstream.imaging import Preprocessing

        return Preprocessing(**json.loads(settings.aws.preprocessing or "{}"))

    return preprocessing


# --- one container ----------------------------------------------------------------------


@dataclass
class _Container:
    """What one Lambda container keeps between invocations (clients, the model)."""

    settings: Settings
    ports: StagePorts
    sink: KinesisTelemetrySink
    recorder: StageRecorder
    cold: bool = True


@functools.cache
def _configure_logs() -> None:
    # Once per container: Lambda sends stderr to CloudWatch, one JSON object per line.
    # Only inside Lambda: a process that merely calls a handler (a test, a tool) keeps
    # the logging it configured itself.
    if os.environ.get("AWS_LAMBDA_FUNCTION_NAME"):
        configure_from_env()


@functools.cache
def _container() -> _Container:
    _check_sdk()
    # Secrets come from Secrets Manager, once per container, before the settings are read.
    region = os.environ.get("AWS_REGION")
    load_secrets(
        os.environ,
        lambda: AwsTarget(region=region or Settings().aws.region, endpoint_url=None).client(
            "secretsmanager"
        ),
    )
    settings = Settings()
    aws = settings.aws
    # Inside Lambda the SDK finds the region (and, under an emulator, AWS_ENDPOINT_URL)
    # in the environment; botocore reads both.
    target = AwsTarget(region=os.environ.get("AWS_REGION", aws.region), endpoint_url=None)
    store = S3ObjectStore(
        target.client("s3"),
        {
            Bucket.IMAGES: aws.images_bucket,
            Bucket.RESULTS: aws.results_bucket,
            Bucket.ARTIFACTS: aws.artifacts_bucket,
            Bucket.TENSORS: aws.tensor_bucket or aws.artifacts_bucket,
        },
    )
    sink = KinesisTelemetrySink(
        target.client("kinesis", fast=True),
        aws.telemetry_stream,
        flush_budget_s=aws.telemetry_flush_s,
    )
    endpoint = settings.model.endpoint
    backend = f"kserve:{urlsplit(endpoint).netloc}" if endpoint else "onnxruntime"
    recorder = StageRecorder(
        telemetry=settings.telemetry,
        cost=settings.cost,
        pricing=load_pricing(settings.cost.pricing),
        # The log stream names the container, as a worker id names a local worker process.
        worker_id=os.environ.get("AWS_LAMBDA_LOG_STREAM_NAME", "lambda"),
        backend=backend,
    )
    ports = StagePorts(
        store=store,
        model=LambdaModel(settings, store),
        preprocessing=_preprocessing_of(settings),
        tensors=S3TensorHandoff(store),
        claims=S3UploadClaims(store),
        options=StageOptions.from_settings(settings, backend=backend),
    )
    return _Container(settings=settings, ports=ports, sink=sink, recorder=recorder)


def _check_sdk() -> None:
    """The runtime's botocore must know conditional PUTs (``IfNoneMatch``, botocore 1.35).

    The package does not bundle botocore (it would push ``prepare`` over Lambda's size
    limit), so an old runtime SDK is refused here, by name, not by a confusing error later.
    """
    import botocore

    version = tuple(int(p) for p in botocore.__version__.split(".")[:2] if p.isdigit())
    if version < MIN_BOTOCORE:
        raise ConfigInvalid(
            f"the Lambda runtime's botocore {botocore.__version__} is older than "
            f"{'.'.join(map(str, MIN_BOTOCORE))}: deploy with a newer Python runtime"
        )


# --- the Lambda error contract --------------------------------------------------------


def lambda_error(err: RadStreamError, stage: str, attempt: int = 1) -> Exception:
    """An exception whose class name is ``err.code`` and whose message is the error as JSON.

    Lambda reports the class name as ``errorType``; that is the name the state machine's
    ``Retry`` rules match.
    """
    cls: type[Exception] = type(err.code, (Exception,), {"__module__": "radstream.aws.errors"})
    payload = {**err.to_dict(), "stage": stage, "attempt": attempt}
    return cls(json.dumps(payload, default=str))


def error_from_cause(
    error: Mapping[str, object], stage_ms: Mapping[str, float] | None = None
) -> StageError:
    """The RadStream error of a caught Step Functions error (``{"Error", "Cause"}``).

    Lambda wraps the handler's message in ``{"errorMessage": …, "errorType": …}``; an
    emulator may pass it through bare. An error RadStream did not raise (a timeout, an
    out-of-memory kill) gets a typed code of its own, filed under the first stage that has
    no time in ``stage_ms`` (the one that was running).
    """
    name = str(error.get("Error", ""))
    cause = str(error.get("Cause", ""))
    payload = _loads(cause)
    if isinstance(payload, dict) and "errorMessage" in payload:
        payload = _loads(str(payload["errorMessage"]))
    if isinstance(payload, dict) and {"code", "message", "stage"} <= payload.keys():
        return StageError.model_validate(payload)
    done = stage_ms or {}
    stage = next((s for s in PIPELINE.names if s not in done), "unknown")
    cls = StageTimedOut if _out_of_time_or_memory(name, cause) else StageCrashed
    # The cause is capped: it is an AWS message, not ours, and must not flood the object.
    crashed = cls(f"{name}: {cause[:500]}", error=name)
    return StageError.model_validate(crashed.to_dict() | {"stage": stage})


def _out_of_time_or_memory(name: str, cause: str) -> bool:
    """Whether a caught error is a function that ran out of time or memory: a timeout by
    name, or a ``Lambda.Unknown`` (or a runtime exit) whose Cause says so."""
    return name in _TIMEOUT_ERRORS or (
        name in _UNKNOWN_ERRORS and _EXHAUSTED_CAUSE.search(cause) is not None
    )


def _loads(text: str) -> object:
    try:
        loaded: object = json.loads(text)
    except ValueError:
        return None
    return loaded


# --- one invocation -------------------------------------------------------------------


def _context_of(event: Mapping[str, Any], execution_id: str) -> ExecutionContext:
    """The state of ``event`` as a context, with the execution and the sidecar's arrival."""
    state: JsonObject = dict(event["state"])
    if state.get("arrived_at") is None and state.get("event_time"):
        state["arrived_at"] = _epoch(str(state["event_time"]))
    return ExecutionContext.from_json(state, execution_id=execution_id)


def invoke(stage: StageDef, event: Mapping[str, Any]) -> JsonObject:
    """Run ``stage`` for one Lambda event and return the next state (or raise, typed)."""
    _configure_logs()
    execution_id = str(event["execution"])
    attempt = int(event.get("attempt") or 0) + 1
    start = time.time()
    with log_context(execution_id=execution_id, stage=stage.name, attempt=attempt):
        try:
            box = _container()
            context = _context_of(event, execution_id)
        except Exception as exc:  # bad settings or state: still a typed error, no telemetry
            raise lambda_error(_logged(exc, stage), stage.name, attempt) from exc
        if stage.name == PIPELINE.failure_stage and context.failure is None:
            # The telemetry row of record_failure carries the code: decode it first.
            failure = error_from_cause(_mapping(context.extra("error")), context.stage_ms)
            context = context.model_copy(update={"failure": failure})
        try:
            done = stage_function(stage)(box.ports, context)
        except Exception as exc:  # every error leaves as a typed Lambda error
            err = _logged(exc, stage)
            status = StageStatus.RETRY if err.retryable else StageStatus.ERROR
            _emit(box, stage.name, status, start, context, attempt, err.code)
            raise lambda_error(err, stage.name, attempt) from exc
        finally:
            box.cold = False
        done = done.with_stage_ms(stage.name, (time.time() - start) * 1000.0)
        failed = stage.name == PIPELINE.failure_stage
        code = done.failure.code if failed and done.failure else None
        _emit(box, stage.name, StageStatus.OK, start, done, attempt, code)
        completes = (stage.next is None or failed) and not done.duplicate
        _publish_latency(stage.name, start, done, completes=completes)
        if stage.next is None or done.duplicate:
            with log_context(code=code):
                outcome = "a duplicate, ignored" if done.duplicate else "failed" if failed else ""
                logger.info("execution %s", outcome or "succeeded")
        return done.to_json()


def _logged(exc: Exception, stage: StageDef) -> RadStreamError:
    """``exc`` as a RadStream error, logged as it leaves the handler."""
    err = error_from_exception(exc)
    with log_context(code=err.code):
        if not isinstance(exc, RadStreamError):
            # A bug, not a bad study: the traceback is kept here; the failure gets a trimmed one.
            logger.exception("unexpected error in stage %s", stage.name)
        elif err.retryable:
            logger.warning("transient error; Step Functions retries %s", stage.name)
    return err


def _mapping(value: object) -> Mapping[str, object]:
    return value if isinstance(value, Mapping) else {}


def _emit(
    box: _Container,
    stage: str,
    status: StageStatus,
    start: float,
    context: ExecutionContext,
    attempt: int,
    error_code: str | None,
) -> None:
    queue_wait = None
    if stage == VALIDATE and context.arrived_at is not None and attempt == 1:
        queue_wait = max(0.0, start - context.arrived_at)
    model = context.model
    record = box.recorder.record(
        execution_id=context.execution_id,
        study_id=context.study_or_folder(),
        stage=stage,
        status=status,
        start_s=start,
        end_s=time.time(),
        attempt=attempt,
        error_code=error_code,
        queue_wait_s=queue_wait,
        bytes_in=context.bytes_in(stage),
        model_name=model.name if model else None,
        model_version=model.version if model else None,
        cold_start=box.cold,
    )
    box.sink.emit([record])
    # Before returning: a frozen container may never run again to send it.
    box.sink.flush()


def _publish_latency(
    stage: str, start: float, context: ExecutionContext, *, completes: bool
) -> None:
    """The attempt's latency, and the execution's end to end if it ``completes`` and its
    sidecar's arrival is known, as an EMF line on stdout. Never fails the study."""
    end = time.time()
    end_to_end = None
    if completes and context.arrived_at is not None:
        end_to_end = max(0.0, end - context.arrived_at) * 1000.0
    # Inside Lambda the function's name is {stack}-{stage}: the stack, without a setting.
    function = os.environ.get("AWS_LAMBDA_FUNCTION_NAME", "local")
    try:
        emf.emit(
            emf.latency_document(
                stack=emf.stack_of(function, stage),
                stage=stage,
                stage_ms=max(0.0, end - start) * 1000.0,
                end_to_end_ms=end_to_end,
                execution_id=context.execution_id,
                now_s=end,
            )
        )
    except (ValueError, OSError):
        logger.warning("the latency metric of stage %s was not written", stage, exc_info=True)


def _epoch(iso: str) -> float:
    return datetime.fromisoformat(iso.replace("Z", "+00:00")).timestamp()


# --- entry points (Handler: radstream.aws.handlers.<stage>) ----------------------------

LambdaHandler = Callable[[Mapping[str, Any], object], JsonObject]


def handler_for(name: str) -> LambdaHandler:
    """The Lambda entry point of the stage ``name``, as the template's ``Handler`` names it."""
    stage = PIPELINE.stage(name)

    def handler(event: Mapping[str, Any], context: object = None) -> JsonObject:
        return invoke(stage, event)

    handler.__name__ = handler.__qualname__ = name
    handler.__doc__ = f"Lambda entry point of the ``{name}`` stage: {stage.description}."
    return handler


def __getattr__(name: str) -> LambdaHandler:
    """``radstream.aws.handlers.<stage>`` for every declared stage (PEP 562).

    Lambda resolves the template's ``Handler`` with ``getattr`` on this module, so a stage
    added to the pipeline definition gets its entry point without a line here.
    """
    if any(stage.name == name for stage in PIPELINE.all_stages):
        return handler_for(name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
