"""The Lambda error contract: what a handler raises, and how record_failure reads it back.

The end-to-end test runs the handlers on ministack, whose Lambda reports every error as
``Runtime.HandlerError`` with the bare message. Real Lambda reports the exception's class
name as ``errorType`` and wraps the message in a JSON ``Cause``; that shape is built here by
hand from AWS's documented format, since no emulator here produces it.
"""

from __future__ import annotations

import io
import json
import traceback
from pathlib import Path
from typing import Any

import numpy as np
import pydicom
import pytest
from pydicom.data import get_testdata_file

from radstream.aws import handlers
from radstream.aws.handlers import error_from_cause, lambda_error
from radstream.errors import ImageTruncated, ModelUnavailable, StoreObjectMissing
from radstream.imaging import Preprocessing
from radstream.layout import failure_key, result_key, tensor_key
from radstream.loadgen.study import make_study
from radstream.pipeline.definition import PIPELINE
from radstream.pricing import load_pricing
from radstream.settings import Settings
from radstream.stages.ports import ObjectInfo, StageOptions, StagePorts
from radstream.stages.telemetry import StageRecorder
from support.fakes import FixedLogitsModel, ListSink, fake_model_info


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


# What Step Functions reports for a function Lambda ended (Cause as AWS writes it).
_TIMED_OUT = (
    "The cause could not be determined because Lambda did not return an error type. "
    'Returned payload: {"errorMessage":"2026-12-02T08:00:00.000Z 1f2e Task timed out '
    'after 120.00 seconds"}'
)
_KILLED = (
    "The cause could not be determined because Lambda did not return an error type. "
    'Returned payload: {"errorType":"Runtime.ExitError","errorMessage":"RequestId: 1f2e '
    'Error: Runtime exited with error: signal: killed"}'
)


@pytest.mark.parametrize(
    ("error", "cause"),
    [
        ("Lambda.Unknown", _TIMED_OUT),
        ("Lambda.Unknown", _KILLED),
        ("Runtime.ExitError", "Runtime exited with error: signal: killed"),
        ("Runtime.OutOfMemory", ""),
        ("Sandbox.Timedout", "Task timed out after 30.00 seconds"),
    ],
)
def test_a_function_out_of_time_or_memory_is_a_stage_timeout(error: str, cause: str) -> None:
    decoded = error_from_cause({"Error": error, "Cause": cause}, {"validate": 2.0})
    assert decoded.code == "STAGE_TIMEOUT"
    assert decoded.stage == "prepare"


def test_an_unknown_lambda_error_with_another_cause_is_still_a_crash() -> None:
    cause = "The cause could not be determined because Lambda did not return an error type."
    decoded = error_from_cause({"Error": "Lambda.Unknown", "Cause": cause}, {})
    assert decoded.code == "STAGE_CRASHED"


def test_an_error_radstream_did_not_raise_is_a_crash_with_a_capped_cause() -> None:
    cause = "x" * 5000
    decoded = error_from_cause({"Error": "Runtime.ExitError", "Cause": cause}, {})
    assert decoded.code == "STAGE_CRASHED"
    assert decoded.stage == "validate"
    assert len(decoded.message) < 600


# --- the handlers run the declared stage functions, state in, state out ------------------


class MemoryS3:
    """The S3 store's interface in memory, conditional PUT included."""

    def __init__(self) -> None:
        self.objects: dict[tuple[str, str], bytes] = {}

    def put(self, bucket: str, key: str, data: bytes) -> ObjectInfo:
        self.objects[(bucket, key)] = data
        return ObjectInfo(bucket=bucket, key=key, etag="e", size=len(data), modified=0.0)

    def put_if_absent(self, bucket: str, key: str, data: bytes) -> bytes:
        return self.objects.setdefault((bucket, key), data)

    def get(self, bucket: str, key: str) -> bytes:
        try:
            return self.objects[(bucket, key)]
        except KeyError:
            raise StoreObjectMissing(f"no object {bucket}/{key}") from None

    def head(self, bucket: str, key: str) -> ObjectInfo | None:
        data = self.objects.get((bucket, key))
        if data is None:
            return None
        return ObjectInfo(bucket=bucket, key=key, etag="e", size=len(data), modified=0.0)

    def size(self, bucket: str, key: str) -> int | None:
        info = self.head(bucket, key)
        return None if info is None else info.size

    def list(self, bucket: str, prefix: str = "") -> list[str]:
        return sorted(k for b, k in self.objects if b == bucket and k.startswith(prefix))

    def delete(self, bucket: str, key: str) -> None:
        self.objects.pop((bucket, key), None)


@pytest.fixture
def s3(monkeypatch: pytest.MonkeyPatch) -> tuple[MemoryS3, ListSink]:
    store = MemoryS3()
    sink = ListSink()
    model = FixedLogitsModel(fake_model_info(name="zero"))
    settings = Settings()
    ports = StagePorts(
        store=store,
        model=lambda: model,
        preprocessing=lambda: Preprocessing(size=64, input_min=-1024.0, input_max=1024.0),
        tensors=handlers.S3TensorHandoff(store),  # type: ignore[arg-type]
        claims=handlers.S3UploadClaims(store),  # type: ignore[arg-type]
        options=StageOptions(),
    )
    recorder = StageRecorder(
        telemetry=settings.telemetry,
        cost=settings.cost,
        pricing=load_pricing(settings.cost.pricing),
        worker_id="lambda",
    )
    box = handlers._Container(settings=settings, ports=ports, sink=sink, recorder=recorder)  # type: ignore[arg-type]
    monkeypatch.setattr(handlers, "_container", lambda: box)
    return store, sink


def _event(state: dict[str, Any], execution: str, attempt: int = 0) -> dict[str, Any]:
    return {"state": state, "execution": execution, "attempt": attempt}


def _upload(store: MemoryS3, study_id: str) -> dict[str, Any]:
    study = make_study(study_id, "png", np.random.default_rng(5), width=96, height=96)
    store.put("images", f"incoming/{study_id}/{study.image_name}", study.image)
    store.put("images", f"incoming/{study_id}/{study_id}.json", study.sidecar)
    # The EventBridge input transformer's keys.
    return {
        "bucket": "rs-images-123",
        "key": f"incoming/{study_id}/{study_id}.json",
        "etag": "abc",
        "sequencer": "0055AED6DCD90281E5",
        "event_time": "2026-01-01T00:00:00Z",
        "event_id": "ev-1",
    }


def test_every_declared_stage_has_its_lambda_entry_point() -> None:
    for stage in PIPELINE.all_stages:
        entry = getattr(handlers, stage.name)
        assert callable(entry) and entry.__name__ == stage.name


def test_the_handlers_run_a_study_through_the_declared_stages(
    s3: tuple[MemoryS3, ListSink],
) -> None:
    store, sink = s3
    state = _upload(store, "s1")
    for stage in PIPELINE.names:
        previous = state
        state = getattr(handlers, stage)(_event(state, "ex-1"))
        json.dumps(state)  # JSON on the wire
        # Keys only Step Functions and EventBridge know are passed on untouched.
        assert {k: state[k] for k in ("bucket", "etag", "sequencer", "event_id")} == {
            k: previous[k] for k in ("bucket", "etag", "sequencer", "event_id")
        }
        if stage == "validate":
            assert state["duplicate"] is False
        if stage == "prepare":
            assert ("tensors", tensor_key("ex-1")) in store.objects
    assert state["outcome_key"] == result_key("s1", "s1")
    result = json.loads(store.get("results", result_key("s1", "s1")))
    assert result["execution_id"] == "ex-1"
    assert result["model"]["name"] == "zero"
    assert set(result["stage_ms"]) == {"validate", "prepare", "infer"}
    assert [r.stage for r in sink.records] == list(PIPELINE.names)
    assert [r.status for r in sink.records] == ["ok"] * len(PIPELINE.names)


def test_a_second_execution_for_the_same_upload_is_a_duplicate(
    s3: tuple[MemoryS3, ListSink],
) -> None:
    store, _ = s3
    state = _upload(store, "s2")
    assert handlers.validate(_event(state, "ex-a"))["duplicate"] is False
    assert handlers.validate(_event(state, "ex-b"))["duplicate"] is True
    # A retry of the winner still holds its claim.
    assert handlers.validate(_event(state, "ex-a", attempt=1))["duplicate"] is False


def test_a_caught_error_is_filed_by_record_failure(s3: tuple[MemoryS3, ListSink]) -> None:
    store, sink = s3
    state = _upload(store, "s3")
    sidecar = {"study_id": "other", "view": "PA", "timestamp": "2026-01-01T00:00:00Z"}
    store.put("images", "incoming/s3/s3.json", json.dumps(sidecar).encode())
    with pytest.raises(Exception, match="STUDY_ID_MISMATCH") as raised:
        handlers.validate(_event(state, "ex-f"))
    code = type(raised.value).__name__
    assert code == "STUDY_ID_MISMATCH"
    # What the Catch adds: the Lambda error, bare as emulators pass it.
    caught = {**state, "error": {"Error": code, "Cause": str(raised.value)}}
    out = handlers.record_failure(_event(caught, "ex-f"))
    assert out["outcome_key"] == failure_key("s3", "s3")
    failure = json.loads(store.get("results", failure_key("s3", "s3")))
    assert failure["error"]["code"] == code
    assert failure["error"]["stage"] == "validate"
    assert [(r.stage, r.status, r.error_code) for r in sink.records] == [
        ("validate", "error", code),
        ("record_failure", "ok", code),
    ]


def test_every_declared_stage_has_the_entry_point_the_template_names() -> None:
    import importlib

    from radstream.aws.template import render_template
    from radstream.aws.template.options import TemplateOptions
    from radstream.pipeline.definition import PIPELINE

    template = render_template("rs", TemplateOptions())
    named = {
        r["Properties"]["Handler"]
        for r in template["Resources"].values()
        if r["Type"] == "AWS::Lambda::Function"
    }
    assert named == {f"radstream.aws.handlers.{s.name}" for s in PIPELINE.all_stages}
    for dotted in named:
        module, name = dotted.rsplit(".", 1)
        assert callable(getattr(importlib.import_module(module), name))
    with pytest.raises(AttributeError):
        _ = handlers.not_a_stage


# --- stage latencies reach CloudWatch as EMF lines on stdout -----------------------------


def _emf_lines(text: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in text.splitlines() if line.startswith('{"_aws"')]


def test_each_successful_attempt_prints_its_latency_in_emf(
    s3: tuple[MemoryS3, ListSink],
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    from radstream.aws.template.intrinsics import function_name
    from support.emf_spec import spec_problems

    # Lambda's own environment names the function; the logs keep this test's setup.
    monkeypatch.setattr(handlers, "_configure_logs", lambda: None)
    store, _ = s3
    state = _upload(store, "s9")
    capsys.readouterr()
    for stage in PIPELINE.names:
        monkeypatch.setenv("AWS_LAMBDA_FUNCTION_NAME", function_name("rs-prod", stage))
        state = getattr(handlers, stage)(_event(state, "ex-9"))
    out = capsys.readouterr().out
    assert all(spec_problems(line) == [] for line in out.splitlines() if '"_aws"' in line)
    lines = _emf_lines(out)
    assert [(d["Stack"], d["Stage"]) for d in lines] == [("rs-prod", s) for s in PIPELINE.names]
    assert all(d["StageLatency"] >= 0 and d["execution_id"] == "ex-9" for d in lines)
    # Only the stage that completes the execution has its end-to-end latency: from the
    # sidecar's arrival (EventBridge's event time) to now, as the lake's e2e_ms.
    assert [d["Stage"] for d in lines if "EndToEndLatency" in d] == ["store"]
    assert lines[-1]["EndToEndLatency"] >= sum(d["StageLatency"] for d in lines)
    assert "s9" not in out  # no study id (nor any sidecar field)


def test_a_refused_study_prints_no_latency_until_record_failure_completes_it(
    s3: tuple[MemoryS3, ListSink], capsys: pytest.CaptureFixture[str]
) -> None:
    store, _ = s3
    state = _upload(store, "s4")
    store.put("images", "incoming/s4/s4.json", b"{not json")
    capsys.readouterr()
    with pytest.raises(Exception, match="SIDECAR_INVALID") as raised:
        handlers.validate(_event(state, "ex-r"))
    assert _emf_lines(capsys.readouterr().out) == []  # a failed attempt is no latency
    caught = {**state, "error": {"Error": type(raised.value).__name__, "Cause": str(raised.value)}}
    handlers.record_failure(_event(caught, "ex-r"))
    [line] = _emf_lines(capsys.readouterr().out)
    assert (line["Stack"], line["Stage"]) == ("local", "record_failure")
    assert line["EndToEndLatency"] > 0


def test_a_dicom_drop_that_failed_validate_then_succeeds_keeps_one_outcome(
    s3: tuple[MemoryS3, ListSink],
) -> None:
    # A drop whose header could not be read is filed under its folder and file; a later
    # upload of a readable file to the same key stores its result under the header's
    # keys and removes that failure (the store Lambda may delete failed/*).
    store, _ = s3
    key = "dicom/pacs/IM0001"
    chest = Path(str(get_testdata_file("RG1_UNCR.dcm", download=False))).read_bytes()
    incomplete = pydicom.dcmread(io.BytesIO(chest))
    del incomplete.StudyInstanceUID
    incomplete.AccessionNumber = ""
    buffer = io.BytesIO()
    incomplete.save_as(buffer, enforce_file_format=True)
    store.put("images", key, buffer.getvalue())
    state = {**_upload(store, "unused"), "key": key}
    with pytest.raises(Exception, match="DICOM") as raised:
        handlers.validate(_event(state, "ex-1"))
    caught = {**state, "error": {"Error": type(raised.value).__name__, "Cause": str(raised.value)}}
    assert handlers.record_failure(_event(caught, "ex-1"))["outcome_key"] == failure_key(
        "dicom~pacs", "IM0001"
    )

    store.put("images", key, chest)
    state = {**state, "sequencer": "0055AED6DCD90281E6"}  # a new S3 write
    for stage in PIPELINE.names:
        state = getattr(handlers, stage)(_event(state, "ex-2"))
    outcomes = store.list("results")
    assert outcomes == [state["outcome_key"]]
    assert json.loads(store.get("results", state["outcome_key"]))["sidecar_key"] == key
