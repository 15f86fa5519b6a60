"""The pipeline definition: states, retries and catches, shared by both engines.

The local executor interprets this; the AWS backend renders it as Amazon States Language.
Retry and catch decisions depend only on an error's ``retryable`` flag (see
``radstream.errors``), so the two engines cannot disagree about what is transient.
"""

from __future__ import annotations

from dataclasses import dataclass

VALIDATE = "validate"
PREPARE = "prepare"
INFER = "infer"
STORE = "store"
RECORD_FAILURE = "record_failure"


@dataclass(frozen=True)
class RetryPolicy:
    """Exponential backoff with full jitter for transient (``retryable``) errors."""

    max_attempts: int = 5
    base_s: float = 0.2
    max_s: float = 5.0
    rate: float = 2.0

    def delay(self, attempt: int, jitter: float) -> float:
        """Delay before retry number ``attempt`` (1-based); ``jitter`` is uniform in [0, 1)."""
        # The exponent is capped: self-bounded waits retry without an attempt limit, and
        # 2.0 ** 1024 would overflow long after the delay stopped growing anyway.
        ceiling = min(self.max_s, self.base_s * self.rate ** min(attempt - 1, 64))
        # Full jitter spreads retries of many executions that failed together.
        return ceiling * (0.5 + 0.5 * jitter)


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


@dataclass(frozen=True)
class Pipeline:
    """The ordered stages, and the state every caught error goes to."""

    stages: tuple[StageDef, ...]
    failure_stage: str = RECORD_FAILURE

    @property
    def start(self) -> str:
        """The first stage."""
        return self.stages[0].name

    def stage(self, name: str) -> StageDef:
        """Look a stage up by name."""
        for stage in self.stages:
            if stage.name == name:
                return stage
        raise KeyError(name)

    @property
    def names(self) -> tuple[str, ...]:
        """Names of the main-path stages, in order."""
        return tuple(s.name for s in self.stages)


PIPELINE = Pipeline(
    stages=(
        StageDef(VALIDATE, PREPARE, False, "parse and check the sidecar; find its image"),
        StageDef(PREPARE, INFER, False, "decode the image into the model tensor"),
        StageDef(INFER, STORE, True, "run the classifier; map to CheXpert labels"),
        StageDef(STORE, None, True, "write the result object"),
    )
)
