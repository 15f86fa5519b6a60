"""The execution context: what an execution knows, carried from stage to stage.

Both engines carry the same model: the local executor checkpoints it as JSON in SQLite, and
Step Functions passes it from Lambda to Lambda as the state. It is JSON only at those two
boundaries (:meth:`ExecutionContext.from_json` / :meth:`ExecutionContext.to_json`); stage
code reads typed fields.

Keys that something other than a stage puts into the state (the EventBridge input's
``bucket``, ``etag``, ``sequencer``, ``event_time``; the ``error`` a Step Functions
``Catch`` adds) are kept as they are (``extra="allow"``) and written back out unchanged, so
the state machine sees every key it set. The field names are those of the dict this model
replaced, so checkpoints written before it still load.
"""

from __future__ import annotations

import hashlib
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, model_validator

from radstream.pipeline.definition import PREPARE, VALIDATE
from radstream.schema.outcome import FailureInfo, ModelRef, PreprocessingRef
from radstream.schema.sidecar import is_safe_study_id

JsonObject = dict[str, Any]
"""A JSON object as it crosses a boundary (a checkpoint row, a Step Functions state)."""


class StageError(FailureInfo):
    """The error that sends an execution to ``record_failure``: a ``RadStreamError`` as a
    dict, plus the stage it happened in and (on AWS) the attempt that raised it."""

    attempt: int | None = None


class ExecutionContext(BaseModel):
    """The typed execution context (see the module docstring)."""

    model_config = ConfigDict(extra="allow")

    # --- the execution (set by the engine from its trigger) ---------------------------
    execution_id: str = ""
    key: str = ""
    """The sidecar key that triggered the execution, ``incoming/{study}/{stem}.json``."""
    arrived_at: float | None = None
    """When the sidecar arrived (epoch seconds): ``validate`` measures the image wait from it."""

    # --- validate ---------------------------------------------------------------------
    duplicate: bool | None = None
    """AWS: another execution already claimed this upload (the state machine's Choice)."""
    study_id: str | None = None
    image_id: str | None = None
    sidecar_key: str | None = None
    image_key: str | None = None
    view: str | None = None
    study_timestamp: str | None = None
    expected_size: tuple[int | None, int | None] | None = None
    sidecar_sha256: str | None = None
    sidecar_bytes: int | None = None

    # --- prepare ----------------------------------------------------------------------
    preprocessing: PreprocessingRef | None = None
    image_sha256: str | None = None
    image_bytes: int | None = None

    # --- infer ------------------------------------------------------------------------
    raw_outputs: dict[str, float] | None = None
    probabilities: dict[str, float | None] | None = None
    model: ModelRef | None = None

    # --- store / record_failure -------------------------------------------------------
    outcome_key: str | None = None
    failure: StageError | None = None
    stage_ms: dict[str, float] = Field(default_factory=dict)
    """Milliseconds per finished stage: kept, so a result resumed after a crash has them."""

    @model_validator(mode="before")
    @classmethod
    def _read_older_checkpoints(cls, data: Any) -> Any:
        # Local checkpoints written before this model kept the routed error under
        # ``error``; on AWS ``error`` is the Catch's {"Error", "Cause"} and stays as it is.
        if isinstance(data, dict) and "failure" not in data:
            error = data.get("error")
            if isinstance(error, dict) and {"code", "stage"} <= error.keys():
                data = {k: v for k, v in data.items() if k != "error"} | {"failure": error}
        return data

    @classmethod
    def from_json(cls, state: JsonObject, **execution: Any) -> ExecutionContext:
        """Read a checkpoint or a Step Functions state; ``execution`` sets the trigger fields."""
        return cls.model_validate({**state, **execution})

    def to_json(self) -> JsonObject:
        """The JSON form, for a checkpoint or the next Step Functions state."""
        return self.model_dump(mode="json")

    def extra(self, name: str) -> object:
        """A key the stages do not model (``etag``, ``sequencer``…), or None."""
        return (self.model_extra or {}).get(name)

    def with_stage_ms(self, stage: str, ms: float) -> ExecutionContext:
        """A copy recording that ``stage`` took ``ms`` milliseconds."""
        return self.model_copy(update={"stage_ms": {**self.stage_ms, stage: round(ms, 3)}})

    def bytes_in(self, stage: str) -> int:
        """Bytes the stage read, for telemetry: the sidecar for validate, the image for prepare."""
        if stage == VALIDATE:
            return self.sidecar_bytes or 0
        if stage == PREPARE:
            return self.image_bytes or 0
        return 0

    def study_or_folder(self) -> str:
        """The study id, or, before validate knew it, the (made safe) upload folder."""
        return self.study_id or study_folder(self.key)


def study_folder(key: str) -> str:
    """Best-effort study folder of a key, for naming failure objects of unparseable sidecars.

    An unsafe folder name is replaced by ``invalid-{hash}``: still distinct per folder, so
    two such uploads never share (and overwrite) one failure object.
    """
    parts = key.split("/")
    folder = parts[1] if len(parts) >= 3 else key
    if is_safe_study_id(folder):
        return folder
    return "invalid-" + hashlib.sha256(folder.encode()).hexdigest()[:16]
