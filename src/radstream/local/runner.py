"""Run one claimed execution through the pipeline's stages.

This is the local interpreter of :data:`radstream.pipeline.definition.PIPELINE`: it calls
the stage function each ``StageDef`` declares (the same functions the Lambda handlers
call), emits one telemetry record per stage attempt, checkpoints where the definition
says, retries transient errors with the pipeline's backoff, and routes every other error to
``record_failure``, so that each execution ends as exactly one result or failure object.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

import numpy as np
import numpy.typing as npt

from radstream.backoff import Random
from radstream.errors import RadStreamError, TransientError, error_from_exception
from radstream.imaging import Preprocessing
from radstream.local.executor import Claim, Executor
from radstream.local.lease import LeaseKeeper
from radstream.logs import get_logger, log_context
from radstream.pipeline.definition import PIPELINE, Pipeline, RetryPolicy, StageDef
from radstream.pricing import load_pricing
from radstream.schema.telemetry import StageStatus, TelemetryRecord
from radstream.settings import Settings
from radstream.stages.context import ExecutionContext, StageError
from radstream.stages.ports import ObjectStore, StageOptions, StagePorts, TelemetrySink
from radstream.stages.prepare import preprocessing_for
from radstream.stages.registry import stage_function
from radstream.stages.telemetry import StageRecorder

if TYPE_CHECKING:
    from radstream.model import ModelClient, ModelInfo

logger = get_logger(__name__)


class MemoryTensors:
    """The tensor hand-off of one worker: in memory, never checkpointed (it is large).

    A resumed execution re-runs ``prepare``, whose checkpoint flag is off for this reason.
    """

    def __init__(self) -> None:
        self._tensors: dict[str, npt.NDArray[np.float32]] = {}

    def put(self, execution_id: str, tensor: npt.NDArray[np.float32]) -> None:
        """Keep the tensor until ``infer`` takes it."""
        self._tensors[execution_id] = tensor

    def get(self, execution_id: str) -> npt.NDArray[np.float32]:
        """The tensor of ``execution_id``; an error if ``prepare`` did not run here."""
        try:
            return self._tensors[execution_id]
        except KeyError:
            raise RuntimeError("infer reached without a tensor; prepare must run first") from None

    def drop(self, execution_id: str) -> None:
        """Forget the tensor of a finished (or handed back) execution."""
        self._tensors.pop(execution_id, None)


class EveryClaimWins:
    """Local upload claims: the executor already starts one execution per upload."""

    def claim(self, context: ExecutionContext) -> bool:
        """Always True."""
        return True


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
        rng: Random = random.random,
        clock: Callable[[], float] = time.time,
        heartbeat: Executor | None = None,
    ) -> None:
        """``heartbeat``, an executor on a connection of its own, renews the lease from a
        thread while a stage runs (see :mod:`radstream.local.lease`); without it the lease
        is renewed between stages only."""
        self._executor = executor
        self._heartbeat = heartbeat
        self._keeper: LeaseKeeper | None = None
        self._model = model
        self._sink = sink
        self._settings = settings
        self._worker_id = worker_id
        self._pipeline = pipeline
        self._rng = rng
        self._clock = clock
        self._retry = RetryPolicy(
            max_attempts=settings.engine.max_stage_attempts,
            base_s=settings.engine.retry_base_s,
            max_s=settings.engine.retry_max_s,
        )
        # Model metadata is fetched on first use, not here: with a remote endpoint that is
        # down, the worker must still start, and the stage that needs it retries.
        self._info: ModelInfo | None = None
        self._cold = True
        self._lease_deadline = 0.0
        # Where inference ran: in this process, or the endpoint's address (no path, no token).
        endpoint = settings.model.endpoint
        backend = f"kserve:{urlsplit(endpoint).netloc}" if endpoint else "onnxruntime"
        self._tensors = MemoryTensors()
        self._ports = StagePorts(
            store=store,
            model=lambda: self._model,
            preprocessing=self._preprocessing,
            tensors=self._tensors,
            claims=EveryClaimWins(),
            options=StageOptions.from_settings(settings, backend=backend),
            clock=clock,
        )
        self._recorder = StageRecorder(
            telemetry=settings.telemetry,
            cost=settings.cost,
            pricing=load_pricing(settings.cost.pricing),
            worker_id=worker_id,
            backend=backend,
        )

    @property
    def ports(self) -> StagePorts:
        """What this runner lends the stage functions."""
        return self._ports

    def run(self, claim: Claim) -> None:
        """Drive ``claim`` until it is terminal, handed back for a retry, or its lease is lost."""
        records: list[TelemetryRecord] = []
        self._lease_deadline = self._clock() + self._executor.lease_s
        with log_context(
            execution_id=claim.execution_id, attempt=claim.claims, worker_id=self._worker_id
        ):
            try:
                with self._keep_renewing(claim):
                    self._drive(claim, records)
            finally:
                self._keeper = None
                self._tensors.drop(claim.execution_id)
                self._sink.emit(records)
                self._cold = False

    def _keep_renewing(self, claim: Claim) -> AbstractContextManager[object]:
        heartbeat = self._heartbeat
        if heartbeat is None:
            return nullcontext()
        worker_id = self._worker_id
        self._keeper = LeaseKeeper(
            lambda: heartbeat.renew(claim, worker_id), self._executor.lease_s / 3
        )
        return self._keeper

    def _drive(self, claim: Claim, records: list[TelemetryRecord]) -> None:
        context = claim.context
        stage: str | None = claim.stage
        resume_stage = claim.stage
        queue_wait: float | None = claim.queue_wait_s
        failure_stage = self._pipeline.failure_stage
        while stage is not None:
            if not self._keep_lease(claim):
                return  # lease lost: the new owner carries on
            definition = self._pipeline.stage(stage)
            if definition.next is None and not self._keep_lease(claim, force=True):
                return  # the outcome is the new owner's to write
            if stage == failure_stage and context.failure is not None:
                failure = context.failure.model_copy(update={"attempt": claim.claims})
                context = context.model_copy(update={"failure": failure})
            start = self._clock()
            with log_context(stage=stage):
                try:
                    context = self._call(definition, context)
                except Exception as exc:
                    err = error_from_exception(exc)
                    if stage == failure_stage:
                        if not err.retryable:
                            raise  # a bug: the worker dies, a peer takes over
                        # Storage down: the failure is recorded once it is back, however
                        # long that takes; the outcome must not be lost nor the worker.
                        records.append(
                            self._record(
                                claim, context, stage, StageStatus.RETRY, start, None, err.code
                            )
                        )
                        with log_context(code=err.code):
                            self._retry_later(claim, stage, context)
                        return
                    retry = self._should_retry(err, claim, resume_stage)
                    status = StageStatus.RETRY if retry else StageStatus.ERROR
                    records.append(
                        self._record(claim, context, stage, status, start, queue_wait, err.code)
                    )
                    if retry:
                        with log_context(code=err.code):
                            self._retry_later(claim, resume_stage, context)
                        return
                    error = StageError.model_validate(err.to_dict() | {"stage": stage})
                    context = context.model_copy(update={"failure": error})
                    stage, queue_wait = failure_stage, None
                    continue
            code = context.failure.code if stage == failure_stage and context.failure else None
            record = self._record(claim, context, stage, StageStatus.OK, start, queue_wait, code)
            records.append(record)
            queue_wait = None
            if definition.next is None:
                self._finish(claim, context, stage, succeeded=stage != failure_stage)
                return
            context = context.with_stage_ms(stage, record.duration_ms)
            if definition.checkpoint:
                if not self._executor.checkpoint(claim, self._worker_id, definition.next, context):
                    return  # lease lost: the new owner carries on
                self._lease_deadline = self._clock() + self._executor.lease_s
                resume_stage = definition.next
            stage = definition.next

    def _call(self, definition: StageDef, context: ExecutionContext) -> ExecutionContext:
        try:
            return stage_function(definition)(self._ports, context)
        except RadStreamError:
            raise
        except Exception:
            # A bug, not a bad study: keep the traceback here, the failure gets a trimmed one.
            logger.exception("unexpected error in stage %s", definition.name)
            raise

    def _retry_later(self, claim: Claim, resume_stage: str, context: ExecutionContext) -> None:
        """Hand the execution back, to run ``resume_stage`` again after a backoff delay."""
        attempt = claim.stage_attempt + 1 if resume_stage == claim.stage else 1
        delay = self._retry.backoff.delay(attempt, self._rng)
        logger.warning("transient error; retry %d of %s in %.2f s", attempt, resume_stage, delay)
        self._executor.retry_later(claim, self._worker_id, resume_stage, attempt, delay, context)

    def _finish(
        self, claim: Claim, context: ExecutionContext, stage: str, *, succeeded: bool
    ) -> None:
        code = None if succeeded or context.failure is None else context.failure.code
        self._executor.finish(
            claim,
            self._worker_id,
            succeeded=succeeded,
            outcome_key=context.outcome_key or "",
            error_code=code,
        )
        with log_context(stage=stage, code=code):
            logger.info("execution %s", "succeeded" if succeeded else "failed")

    def _model_info(self) -> ModelInfo:
        if self._info is None:
            self._info = self._model.info
        return self._info

    def _preprocessing(self) -> Preprocessing:
        return preprocessing_for(self._model_info())

    def _keep_lease(self, claim: Claim, *, force: bool = False) -> bool:
        # Renew once half the lease is used (a slow stage must not let a peer take over
        # mid-work); checkpoints renew it too. Forced before outcome objects are written.
        if self._keeper is not None and self._keeper.lost:
            return False
        now = self._clock()
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
            return self._clock() - claim.created_at < self._settings.engine.outage_budget_s
        attempts = claim.stage_attempt + 1 if resume_stage == claim.stage else 1
        return attempts < self._retry.max_attempts

    def _record(
        self,
        claim: Claim,
        context: ExecutionContext,
        stage: str,
        status: StageStatus,
        start: float,
        queue_wait: float | None,
        error_code: str | None = None,
    ) -> TelemetryRecord:
        # Only what is already known: telemetry must never call the model.
        info = self._info
        model_name = info.name if info else context.model.name if context.model else None
        model_version = info.version if info else context.model.version if context.model else None
        return self._recorder.record(
            execution_id=claim.execution_id,
            study_id=context.study_or_folder(),
            stage=stage,
            status=status,
            start_s=start,
            end_s=self._clock(),
            attempt=claim.claims,
            error_code=error_code,
            queue_wait_s=queue_wait,
            bytes_in=context.bytes_in(stage),
            model_name=model_name,
            model_version=model_version,
            cold_start=self._cold,
        )
