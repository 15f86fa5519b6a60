"""Run one claimed execution through the pipeline's stages.

This is the local interpreter of :data:`radstream.pipeline.definition.PIPELINE`: it calls
the stage functions, emits one telemetry record per stage attempt, checkpoints where the
definition says, retries transient errors with backoff, and routes every other error to
``record_failure``, so that each execution ends as exactly one result or failure object.
"""

from __future__ import annotations

import random
import time
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from radstream.errors import RadStreamError, TransientError, error_from_exception
from radstream.imaging import ImagingLimits, Preprocessing
from radstream.local.executor import Claim, Executor
from radstream.model import ModelClient, ModelInfo
from radstream.pipeline.definition import (
    INFER,
    PIPELINE,
    PREPARE,
    STORE,
    VALIDATE,
    Pipeline,
    RetryPolicy,
)
from radstream.pricing import load_pricing
from radstream.schema.outcome import ModelRef, Result
from radstream.schema.telemetry import StageStatus, TelemetryRecord
from radstream.settings import Settings
from radstream.stages import infer as infer_stage
from radstream.stages import outcomes
from radstream.stages import prepare as prepare_stage
from radstream.stages import store as store_stage
from radstream.stages import validate as validate_stage
from radstream.stages.ports import ObjectStore, TelemetrySink
from radstream.stages.telemetry import StageRecorder


class LeaseLost(Exception):
    """Raised inside a stage when the lease was taken over; the worker drops the execution."""


@dataclass
class _Scratch:
    """Per-attempt, in-memory state that is not checkpointed (the tensor)."""

    prepared: prepare_stage.PreparedStudy | None = None
    records: list[TelemetryRecord] = field(default_factory=list)


class ExecutionRunner:
    """Binds the stage functions to one worker's store, model, sink and settings."""

    def __init__(
        self,
        *,
        store: ObjectStore,
        executor: Executor,
        model: ModelClient,
        sink: TelemetrySink,
        settings: Settings,
        worker_id: str,
        pipeline: Pipeline = PIPELINE,
    ) -> None:
        self._store = store
        self._executor = executor
        self._model = model
        self._sink = sink
        self._settings = settings
        self._worker_id = worker_id
        self._pipeline = pipeline
        self._retry = RetryPolicy(
            max_attempts=settings.engine.max_stage_attempts,
            base_s=settings.engine.retry_base_s,
            max_s=settings.engine.retry_max_s,
        )
        # Model metadata is fetched on first use, not here: with a remote endpoint that is
        # down, the worker must still start, and the stage that needs it retries.
        self._info: ModelInfo | None = None
        self._limits = ImagingLimits(
            max_pixels=settings.imaging.max_pixels,
            max_file_bytes=settings.imaging.max_file_bytes,
        )
        self._cold = True
        self._lease_deadline = 0.0
        # Where inference ran: in this process, or the endpoint's address (no path, no token).
        endpoint = settings.model.endpoint
        self._backend = f"kserve:{urlsplit(endpoint).netloc}" if endpoint else "onnxruntime"
        self._recorder = StageRecorder(
            telemetry=settings.telemetry,
            cost=settings.cost,
            pricing=load_pricing(settings.cost.pricing),
            worker_id=worker_id,
            backend=self._backend,
        )

    def run(self, claim: Claim) -> None:
        """Drive ``claim`` until it is terminal, handed back for a retry, or its lease is lost."""
        context: dict[str, Any] = dict(claim.context)
        scratch = _Scratch()
        stage: str | None = claim.stage
        resume_stage = claim.stage
        queue_wait: float | None = claim.queue_wait_s
        self._lease_deadline = time.time() + self._executor.lease_s
        try:
            while stage is not None:
                if not self._keep_lease(claim):
                    return  # lease lost: the new owner carries on
                if stage == self._pipeline.failure_stage:
                    self._fail(claim, context, scratch)
                    return
                start = time.time()
                try:
                    self._run_stage(stage, claim, context, scratch)
                except LeaseLost:
                    return
                except Exception as exc:  # every error is routed, none escapes the worker
                    err = error_from_exception(exc)
                    if self._should_retry(err, claim, resume_stage):
                        self._record(
                            claim,
                            context,
                            scratch,
                            stage,
                            StageStatus.RETRY,
                            start,
                            queue_wait,
                            err.code,
                        )
                        attempt = claim.stage_attempt + 1 if resume_stage == claim.stage else 1
                        delay = self._retry.delay(attempt, random.random())
                        self._executor.retry_later(
                            claim, self._worker_id, resume_stage, attempt, delay, context
                        )
                        return
                    self._record(
                        claim,
                        context,
                        scratch,
                        stage,
                        StageStatus.ERROR,
                        start,
                        queue_wait,
                        err.code,
                    )
                    context["error"] = err.to_dict() | {"stage": stage}
                    stage = self._pipeline.failure_stage
                    queue_wait = None
                    continue
                self._record(claim, context, scratch, stage, StageStatus.OK, start, queue_wait)
                # Kept in the checkpoint, so a result resumed after a crash still has them.
                context.setdefault("stage_ms", {})[stage] = round(
                    scratch.records[-1].duration_ms, 3
                )
                queue_wait = None
                definition = self._pipeline.stage(stage)
                if definition.next is None:
                    self._executor.finish(
                        claim, self._worker_id, succeeded=True, outcome_key=context["outcome_key"]
                    )
                    return
                if definition.checkpoint:
                    if not self._executor.checkpoint(
                        claim, self._worker_id, definition.next, context
                    ):
                        return  # lease lost: the new owner carries on
                    self._lease_deadline = time.time() + self._executor.lease_s
                    resume_stage = definition.next
                stage = definition.next
        finally:
            self._sink.emit(scratch.records)
            self._cold = False

    def _model_info(self) -> ModelInfo:
        if self._info is None:
            self._info = self._model.info
        return self._info

    @property
    def _preprocessing(self) -> Preprocessing:
        info = self._model_info()
        return Preprocessing(
            size=info.input_size,
            input_min=info.input_min,
            input_max=info.input_max,
            channels=info.channels,
        )

    def _keep_lease(self, claim: Claim, *, force: bool = False) -> bool:
        # Renew once half the lease is used (a slow stage must not let a peer take over
        # mid-work); checkpoints renew it too. Forced before outcome objects are written.
        now = time.time()
        if not force and now < self._lease_deadline - self._executor.lease_s / 2:
            return True
        if not self._executor.renew(claim, self._worker_id):
            return False
        self._lease_deadline = now + self._executor.lease_s
        return True

    def _should_retry(self, err: RadStreamError, claim: Claim, resume_stage: str) -> bool:
        if not err.retryable:
            return False
        if isinstance(err, TransientError) and err.self_bounded:
            return True
        if isinstance(err, TransientError) and err.time_bounded:
            # An outage (endpoint restarting, circuit open) is bounded by time: counting
            # attempts would fail every study in flight within seconds.
            return time.time() - claim.created_at < self._settings.engine.outage_budget_s
        attempts = claim.stage_attempt + 1 if resume_stage == claim.stage else 1
        return attempts < self._retry.max_attempts

    # --- stages ---------------------------------------------------------------------

    def _run_stage(
        self, stage: str, claim: Claim, context: dict[str, Any], scratch: _Scratch
    ) -> None:
        if stage == VALIDATE:
            study = validate_stage.validate(
                self._store,
                claim.bucket,
                claim.key,
                waited_s=time.time() - claim.created_at,
                image_wait_s=self._settings.engine.image_wait_s,
            )
            context.update(study.to_context())
        elif stage == PREPARE:
            study = validate_stage.ValidatedStudy.from_context(context)
            preprocessing = self._preprocessing
            scratch.prepared = prepare_stage.prepare(
                self._store,
                claim.bucket,
                study.image_key,
                expected_size=study.expected_size,
                preprocessing=preprocessing,
                limits=self._limits,
            )
            context.update(outcomes.prepared_context(scratch.prepared, preprocessing))
        elif stage == INFER:
            if scratch.prepared is None:
                raise RuntimeError("infer reached without a tensor; prepare must run first")
            result = infer_stage.infer(self._model, scratch.prepared.image.tensor)
            context["raw_outputs"] = result.raw_outputs
            context["probabilities"] = result.probabilities
        elif stage == STORE:
            outcome = self._result(claim, context, scratch)
            if not self._keep_lease(claim, force=True):
                raise LeaseLost(claim.execution_id)
            context["outcome_key"] = store_stage.store_result(self._store, outcome)
        else:
            raise RuntimeError(f"unknown stage {stage!r}")

    def _result(self, claim: Claim, context: dict[str, Any], scratch: _Scratch) -> Result:
        info = self._model_info()
        model = ModelRef(
            name=info.name, version=info.version, sha256=info.sha256, backend=self._backend
        )
        return outcomes.build_result(claim.execution_id, context, model)

    def _fail(self, claim: Claim, context: dict[str, Any], scratch: _Scratch) -> None:
        start = time.time()
        error = context["error"]
        failure = outcomes.build_failure(
            claim.execution_id, claim.key, context, error, attempts=claim.claims
        )
        if not self._keep_lease(claim, force=True):
            return  # the new owner records the outcome
        key = store_stage.record_failure(self._store, failure)
        self._record(
            claim,
            context,
            scratch,
            self._pipeline.failure_stage,
            StageStatus.OK,
            start,
            None,
            error["code"],
        )
        self._executor.finish(
            claim, self._worker_id, succeeded=False, outcome_key=key, error_code=error["code"]
        )

    # --- telemetry ------------------------------------------------------------------

    def _record(
        self,
        claim: Claim,
        context: dict[str, Any],
        scratch: _Scratch,
        stage: str,
        status: StageStatus,
        start: float,
        queue_wait: float | None,
        error_code: str | None = None,
    ) -> None:
        bytes_in = {
            VALIDATE: context.get("sidecar_bytes", 0),
            PREPARE: context.get("image_bytes", 0),
        }.get(stage, 0)
        info = self._info  # only what is already known: telemetry must never call the model
        scratch.records.append(
            self._recorder.record(
                execution_id=claim.execution_id,
                study_id=context.get("study_id") or validate_stage.study_folder(claim.key),
                stage=stage,
                status=status,
                start_s=start,
                end_s=time.time(),
                attempt=claim.claims,
                error_code=error_code,
                queue_wait_s=queue_wait,
                bytes_in=bytes_in,
                model_name=info.name if info else None,
                model_version=info.version if info else None,
                cold_start=self._cold,
            )
        )
