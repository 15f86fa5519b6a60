"""The pipeline definition: each stage declared once, with its retries and catches.

The local executor interprets this; the AWS backend renders it as Amazon States Language.
Retry and catch decisions depend only on an error's ``retryable`` flag (see
``radstream.errors``), so the two engines cannot disagree about what is transient.

A stage's declaration (:class:`StageDef`) is the one place that says what the stage is: its
function, the objects it reads, writes, deletes and lists, and the optional packages its
code imports. The local runner and the Lambda handlers call the function named here; the
IAM statements and the Lambda layers of the AWS template are derived from the rest. Adding
a stage means adding one ``StageDef`` and its function.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from radstream.backoff import Backoff
from radstream.layout import (
    CLAIM_OBJECTS,
    DICOM_DROPS,
    FAILURE_OBJECTS,
    RESULT_OBJECTS,
    TENSOR_OBJECTS,
    UPLOADS,
    Objects,
)

VALIDATE = "validate"
PREPARE = "prepare"
INFER = "infer"
STORE = "store"
RECORD_FAILURE = "record_failure"


IMAGING = "imaging"
"""Optional package group: the decoders (Pillow, simplejpeg, pydicom and its plugins).
A Lambda layer on AWS."""
MODEL_RUNTIME = "model"
"""Optional package group: ONNX Runtime. A Lambda layer on AWS, with in-process inference."""


@dataclass(frozen=True)
class RetryPolicy:
    """How often a transient (``retryable``) error is retried, and how long to wait between.

    The wait is :class:`radstream.backoff.Backoff`: full jitter on both engines.
    """

    max_attempts: int = 5
    base_s: float = 0.2
    max_s: float = 5.0
    rate: float = 2.0

    @property
    def backoff(self) -> Backoff:
        """The wait rule these retries use."""
        return Backoff(base_s=self.base_s, max_s=self.max_s, rate=self.rate)

    def delay(self, attempt: int, jitter: float) -> float:
        """Delay before retry number ``attempt`` (1-based); ``jitter`` is uniform in [0, 1)."""
        return self.backoff.delay(attempt, lambda: jitter)


@dataclass(frozen=True)
class StageDef:
    """One state of the pipeline."""

    name: str
    next: str | None
    checkpoint: bool
    """Persist progress after this stage. False for ``prepare``: its output (the tensor) is
    large, so locally it stays in the worker's memory and a resumed execution re-runs
    ``prepare``; on AWS it travels through the artifacts bucket by reference. False for
    ``validate`` too: it costs under a millisecond to redo, less than a checkpoint write."""
    description: str
    function: str
    """``module:function`` of the stage function both engines call (resolved lazily, so this
    ground layer imports no stage code)."""
    reads: tuple[Objects, ...] = ()
    writes: tuple[Objects, ...] = ()
    deletes: tuple[Objects, ...] = ()
    lists: tuple[Objects, ...] = ()
    """Prefixes the stage lists. On S3 a GET of a missing key answers 403 rather than 404
    without ``s3:ListBucket``, so a stage that must tell "missing" from "refused" lists."""
    packages: tuple[str, ...] = field(default=())
    """Optional package groups the stage's code imports (:data:`IMAGING`, :data:`MODEL_RUNTIME`)."""
    uses_model: bool = False
    """The stage calls the model. With in-process inference it also reads the model file
    (``models/``) and imports :data:`MODEL_RUNTIME`; with a remote endpoint it needs neither."""

    def packages_for(self, *, in_process_model: bool) -> tuple[str, ...]:
        """The package groups this stage needs, given where the model runs."""
        extra = (MODEL_RUNTIME,) if self.uses_model and in_process_model else ()
        return tuple(dict.fromkeys((*self.packages, *extra)))


@dataclass(frozen=True)
class Pipeline:
    """The ordered stages, and the stage every caught error goes to."""

    stages: tuple[StageDef, ...]
    failure: StageDef

    @property
    def failure_stage(self) -> str:
        """Name of the stage every caught error goes to."""
        return self.failure.name

    @property
    def all_stages(self) -> tuple[StageDef, ...]:
        """Every declared stage: the main path, then the failure stage."""
        return (*self.stages, self.failure)

    @property
    def start(self) -> str:
        """The first stage."""
        return self.stages[0].name

    def stage(self, name: str) -> StageDef:
        """Look a stage up by name (the failure stage included)."""
        for stage in self.all_stages:
            if stage.name == name:
                return stage
        raise KeyError(name)

    @property
    def names(self) -> tuple[str, ...]:
        """Names of the main-path stages, in order."""
        return tuple(s.name for s in self.stages)


PIPELINE = Pipeline(
    stages=(
        StageDef(
            VALIDATE,
            PREPARE,
            False,
            "parse and check the sidecar; find its image",
            function="radstream.stages.validate:run",
            # A sidecar, or a DICOM file uploaded without one (its header is the sidecar).
            reads=(UPLOADS, DICOM_DROPS, CLAIM_OBJECTS),
            # One execution per upload: a conditional PUT claims it (AWS's events arrive at
            # least once), and the claim is read back when another execution won.
            writes=(CLAIM_OBJECTS,),
            lists=(UPLOADS,),
            # The header of a sidecar-less DICOM is read with the imaging code (pydicom);
            # a sidecar never imports it, so the layer only costs that path anything.
            packages=(IMAGING,),
        ),
        StageDef(
            PREPARE,
            INFER,
            False,
            "decode the image into the model tensor",
            function="radstream.stages.prepare:run",
            reads=(UPLOADS, DICOM_DROPS),
            writes=(TENSOR_OBJECTS,),
            packages=(IMAGING,),
        ),
        StageDef(
            INFER,
            STORE,
            True,
            "run the classifier; map to CheXpert labels",
            function="radstream.stages.infer:run",
            reads=(TENSOR_OBJECTS,),
            uses_model=True,
        ),
        StageDef(
            STORE,
            None,
            True,
            "write the result object",
            function="radstream.stages.store:run",
            writes=(RESULT_OBJECTS,),
            # The latest upload decides: a failure left by an earlier upload is removed.
            deletes=(FAILURE_OBJECTS,),
        ),
    ),
    failure=StageDef(
        RECORD_FAILURE,
        None,
        True,
        "write the failure object with its code and hint",
        function="radstream.stages.store:run_record_failure",
        writes=(FAILURE_OBJECTS,),
        deletes=(RESULT_OBJECTS,),
    ),
)
