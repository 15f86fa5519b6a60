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
* Every attempt emits one telemetry record to Kinesis, flushed before the handler returns.

Heavy libraries (OpenCV, ONNX Runtime) are imported inside the stages that use them: the
``validate``, ``store`` and ``record_failure`` functions ship without them.
"""

from __future__ import annotations

import functools
import hashlib
import io
import json
import os
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from radstream.aws.kinesis_sink import KinesisTelemetrySink
from radstream.aws.s3_store import S3ObjectStore
from radstream.aws.session import AwsTarget
from radstream.errors import (
    ConfigInvalid,
    RadStreamError,
    StageCrashed,
    StageTimedOut,
    error_from_exception,
)
from radstream.pipeline.definition import INFER, PIPELINE, PREPARE, RECORD_FAILURE, STORE, VALIDATE
from radstream.pricing import load_pricing
from radstream.schema.outcome import ModelRef
from radstream.schema.telemetry import StageStatus
from radstream.settings import Settings
from radstream.stages import outcomes
from radstream.stages import store as store_stage
from radstream.stages import validate as validate_stage
from radstream.stages.telemetry import StageRecorder

State = dict[str, Any]
TENSORS = "tensors"
CLAIM_PREFIX = "claims/"
TENSOR_PREFIX = "tensors/"
MODEL_FILE = Path(tempfile.gettempdir()) / "radstream-model.onnx"
_TIMEOUT_ERRORS = ("States.Timeout", "Sandbox.Timedout")
MIN_BOTOCORE = (1, 35)


@dataclass
class _Container:
    """What one Lambda container keeps between invocations (clients, the model)."""

    settings: Settings
    store: S3ObjectStore
    sink: KinesisTelemetrySink
    recorder: StageRecorder
    cold: bool = True
    model: Any = None
    extras: dict[str, Any] = field(default_factory=dict)


@functools.cache
def _container() -> _Container:
    _check_sdk()
    settings = Settings()
    aws = settings.aws
    # Inside Lambda the SDK finds the region (and, under an emulator, AWS_ENDPOINT_URL)
    # in the environment; botocore reads both.
    target = AwsTarget(region=os.environ.get("AWS_REGION", aws.region), endpoint_url=None)
    store = S3ObjectStore(
        target.client("s3"),
        {
            "images": aws.images_bucket,
            "results": aws.results_bucket,
            "artifacts": aws.artifacts_bucket,
            TENSORS: aws.tensor_bucket or aws.artifacts_bucket,
        },
    )
    sink = KinesisTelemetrySink(
        target.client("kinesis", fast=True),
        aws.telemetry_stream,
        flush_budget_s=aws.telemetry_flush_s,
    )
    endpoint = settings.model.endpoint
    recorder = StageRecorder(
        telemetry=settings.telemetry,
        cost=settings.cost,
        pricing=load_pricing(settings.cost.pricing),
        # The log stream names the container, as a worker id names a local worker process.
        worker_id=os.environ.get("AWS_LAMBDA_LOG_STREAM_NAME", "lambda"),
        backend=f"kserve:{urlsplit(endpoint).netloc}" if endpoint else "onnxruntime",
    )
    return _Container(settings=settings, store=store, sink=sink, recorder=recorder)


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


def error_from_cause(error: dict[str, Any], state: State) -> dict[str, Any]:
    """The RadStream error of a caught Step Functions error (``{"Error", "Cause"}``).

    Lambda wraps the handler's message in ``{"errorMessage": …, "errorType": …}``; an
    emulator may pass it through bare. An error RadStream did not raise (a timeout, an
    out-of-memory kill) gets a typed code of its own.
    """
    name = str(error.get("Error", ""))
    cause = str(error.get("Cause", ""))
    payload = _loads(cause)
    if isinstance(payload, dict) and "errorMessage" in payload:
        payload = _loads(str(payload["errorMessage"]))
    if isinstance(payload, dict) and {"code", "message", "stage"} <= payload.keys():
        return payload
    stage = next((s for s in PIPELINE.names if s not in state.get("stage_ms", {})), "unknown")
    cls = StageTimedOut if name in _TIMEOUT_ERRORS else StageCrashed
    # The cause is capped: it is an AWS message, not ours, and must not flood the object.
    return cls(f"{name}: {cause[:500]}", error=name).to_dict() | {"stage": stage}


def _loads(text: str) -> Any:
    try:
        return json.loads(text)
    except ValueError:
        return None


# --- one invocation -------------------------------------------------------------------


def _run(
    stage: str, event: dict[str, Any], work: Callable[[_Container, State, str], State]
) -> State:
    state: State = dict(event["state"])
    execution_id = str(event["execution"])
    attempt = int(event.get("attempt") or 0) + 1
    start = time.time()
    try:
        box = _container()
    except Exception as exc:  # bad settings: still a typed error, with no telemetry client
        raise lambda_error(error_from_exception(exc), stage, attempt) from exc
    try:
        new_state = work(box, state, execution_id)
    except Exception as exc:  # every error leaves as a typed Lambda error
        err = error_from_exception(exc)
        status = StageStatus.RETRY if err.retryable else StageStatus.ERROR
        _emit(box, stage, status, start, state, execution_id, attempt, err.code)
        raise lambda_error(err, stage, attempt) from exc
    finally:
        box.cold = False
    new_state.setdefault("stage_ms", {})[stage] = round((time.time() - start) * 1000.0, 3)
    code = state["failure"]["code"] if stage == RECORD_FAILURE else None
    _emit(box, stage, StageStatus.OK, start, new_state, execution_id, attempt, code)
    return new_state


def _emit(
    box: _Container,
    stage: str,
    status: StageStatus,
    start: float,
    state: State,
    execution_id: str,
    attempt: int,
    error_code: str | None,
) -> None:
    model = state.get("model") or {}
    queue_wait = None
    if stage == VALIDATE and state.get("event_time") and attempt == 1:
        queue_wait = max(0.0, start - _epoch(str(state["event_time"])))
    record = box.recorder.record(
        execution_id=execution_id,
        study_id=state.get("study_id") or validate_stage.study_folder(str(state.get("key", ""))),
        stage=stage,
        status=status,
        start_s=start,
        end_s=time.time(),
        attempt=attempt,
        error_code=error_code,
        queue_wait_s=queue_wait,
        bytes_in={
            VALIDATE: state.get("sidecar_bytes", 0),
            PREPARE: state.get("image_bytes", 0),
        }.get(stage, 0),
        model_name=model.get("name"),
        model_version=model.get("version"),
        cold_start=box.cold,
    )
    box.sink.emit([record])
    # Before returning: a frozen container may never run again to send it.
    box.sink.flush()


def _epoch(iso: str) -> float:
    return datetime.fromisoformat(iso.replace("Z", "+00:00")).timestamp()


# --- the stages -----------------------------------------------------------------------


def _validate(box: _Container, state: State, execution_id: str) -> State:
    if not _claim(box, state, execution_id):
        # Another execution already holds this upload (EventBridge delivers at least once).
        return {**state, "duplicate": True}
    waited = time.time() - _epoch(str(state["event_time"])) if state.get("event_time") else 0.0
    study = validate_stage.validate(
        box.store,
        "images",
        str(state["key"]),
        waited_s=waited,
        image_wait_s=box.settings.engine.image_wait_s,
    )
    return {**state, **study.to_context(), "duplicate": False}


def _claim(box: _Container, state: State, execution_id: str) -> bool:
    """Record this execution as the one for this upload; False if another already is.

    One key per upload: the sidecar key plus S3's per-write sequencer (or the ETag), written
    only if absent (``If-None-Match: *``), so exactly one execution wins per upload, while a
    later re-upload of the same sidecar (a retry after a fix) still runs.
    """
    marker = str(state.get("sequencer") or state.get("etag") or "")
    digest = hashlib.sha256(f"{state['key']}\n{marker}".encode()).hexdigest()[:40]
    owner = box.store.put_if_absent("artifacts", f"{CLAIM_PREFIX}{digest}", execution_id.encode())
    return owner == execution_id.encode()


def _prepare(box: _Container, state: State, execution_id: str) -> State:
    import numpy as np

    from radstream.imaging import ImagingLimits, Preprocessing
    from radstream.stages import prepare as prepare_stage

    study = validate_stage.ValidatedStudy.from_context(state)
    preprocessing = Preprocessing(**json.loads(box.settings.aws.preprocessing or "{}"))
    imaging = box.settings.imaging
    prepared = prepare_stage.prepare(
        box.store,
        "images",
        study.image_key,
        expected_size=study.expected_size,
        preprocessing=preprocessing,
        limits=ImagingLimits(max_pixels=imaging.max_pixels, max_file_bytes=imaging.max_file_bytes),
    )
    buffer = io.BytesIO()
    np.save(buffer, prepared.image.tensor, allow_pickle=False)
    key = f"{TENSOR_PREFIX}{execution_id}.npy"
    box.store.put(TENSORS, key, buffer.getvalue())
    return {**state, **outcomes.prepared_context(prepared, preprocessing), "tensor_key": key}


def _model(box: _Container) -> Any:
    if box.model is None:
        from radstream.model.loading import load_model_client

        settings = box.settings
        if not settings.model.endpoint:
            # Once per container: /tmp outlives invocations, so a warm start skips this.
            if not MODEL_FILE.exists():
                data = box.store.get("artifacts", settings.aws.model_key)
                # A private temporary name, then an atomic rename: a reader never sees
                # a half-written model, even where containers share /tmp (an emulator).
                with tempfile.NamedTemporaryFile(
                    dir=MODEL_FILE.parent, prefix=MODEL_FILE.name, delete=False
                ) as partial:
                    partial.write(data)
                os.replace(partial.name, MODEL_FILE)
            settings = settings.model_copy(
                update={"model": settings.model.model_copy(update={"path": MODEL_FILE})}
            )
        box.model = load_model_client(settings)
    return box.model


def _infer(box: _Container, state: State, execution_id: str) -> State:
    import numpy as np

    from radstream.stages import infer as infer_stage

    tensor = np.load(
        io.BytesIO(box.store.get(TENSORS, str(state["tensor_key"]))), allow_pickle=False
    )
    model = _model(box)
    result = infer_stage.infer(model, tensor)
    info = model.info
    ref = ModelRef(
        name=info.name, version=info.version, sha256=info.sha256, backend=box.recorder.backend
    )
    return {
        **state,
        "raw_outputs": result.raw_outputs,
        "probabilities": result.probabilities,
        "model": ref.model_dump(),
    }


def _store(box: _Container, state: State, execution_id: str) -> State:
    result = outcomes.build_result(execution_id, state, ModelRef.model_validate(state["model"]))
    return {**state, "outcome_key": store_stage.store_result(box.store, result)}


def _record_failure(box: _Container, state: State, execution_id: str) -> State:
    error = state.get("failure") or error_from_cause(state.get("error") or {}, state)
    failure = outcomes.build_failure(
        execution_id, str(state["key"]), state, error, attempts=int(error.get("attempt", 1))
    )
    key = store_stage.record_failure(box.store, failure)
    return {**state, "failure": error, "outcome_key": key}


def _with_failure(event: dict[str, Any]) -> dict[str, Any]:
    # The telemetry row of record_failure carries the code; decode it before the stage runs.
    state = dict(event["state"])
    state.setdefault("failure", error_from_cause(state.get("error") or {}, state))
    return {**event, "state": state}


# --- entry points (Handler: radstream.aws.handlers.<stage>) ----------------------------


def validate(event: dict[str, Any], context: Any = None) -> State:
    """Lambda entry point of the ``validate`` stage."""
    return _run(VALIDATE, event, _validate)


def prepare(event: dict[str, Any], context: Any = None) -> State:
    """Lambda entry point of the ``prepare`` stage."""
    return _run(PREPARE, event, _prepare)


def infer(event: dict[str, Any], context: Any = None) -> State:
    """Lambda entry point of the ``infer`` stage."""
    return _run(INFER, event, _infer)


def store(event: dict[str, Any], context: Any = None) -> State:
    """Lambda entry point of the ``store`` stage."""
    return _run(STORE, event, _store)


def record_failure(event: dict[str, Any], context: Any = None) -> State:
    """Lambda entry point of ``record_failure``: files ``failed/{study}/{stem}.json``."""
    return _run(RECORD_FAILURE, _with_failure(event), _record_failure)
