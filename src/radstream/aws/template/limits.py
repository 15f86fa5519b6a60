"""How long one execution can last, and the outage retries an EXPRESS execution can afford.

An EXPRESS state machine ends an execution hard at five minutes, and that end cannot be
caught: the study is left with no result and no failure object. So the template is built
only for a configuration whose worst case fits, computed here from the settings:

* the stages before the model stage, each at its Lambda timeout (one attempt: a timeout
  is not retried), plus ``engine.image_wait_s``, the longest ``validate`` waits for an
  image that follows its sidecar;
* the model stage: its Lambda timeout once, or its outage path if that is longer: the
  first attempt and each outage retry, every attempt running its in-Lambda retries to the
  end (``(model.retries + 1) × (model.timeout_s + 1 s)``, the second covering the client's
  waits between tries, which are capped at 1 s; never more than the Lambda timeout), plus
  every outage wait at its ceiling (:meth:`~radstream.backoff.Backoff.worst_case_s`);
* ``record_failure`` once, at its Lambda timeout: the study's only outcome must fit.

Retries of Lambda's own service errors are left out: they end in milliseconds.
"""

from __future__ import annotations

from dataclasses import dataclass

from radstream.backoff import Backoff
from radstream.errors import ConfigInvalid
from radstream.pipeline.definition import StageDef

EXPRESS_LIMIT_S = 300.0
"""The longest an EXPRESS execution may run (Step Functions quotas)."""
CLIENT_WAIT_CAP_S = 1.0
"""The longest wait of the KServe client between its in-Lambda tries."""


@dataclass(frozen=True)
class WorstCase:
    """The longest one execution can take, term by term (see the module doc)."""

    before_s: float
    """The stages before the model stage, and the image wait."""
    attempt_s: float
    """One attempt of the model stage that ends in MODEL_UNAVAILABLE."""
    model_timeout_s: float
    """The model stage's Lambda timeout."""
    outage_retries: int
    outage_waits_s: float
    record_failure_s: float

    @property
    def model_stage_s(self) -> float:
        """The model stage: one timeout, or every outage attempt and wait, the longer."""
        outage = (self.outage_retries + 1) * self.attempt_s + self.outage_waits_s
        return max(self.model_timeout_s, outage)

    @property
    def total_s(self) -> float:
        """The whole execution."""
        return self.before_s + self.model_stage_s + self.record_failure_s


@dataclass(frozen=True)
class ExecutionTimes:
    """What the worst case is computed from: the stages, their timeouts, the settings."""

    stages: tuple[StageDef, ...]
    """The main path, in order."""
    failure_stage: str
    timeouts_s: dict[str, int]
    """Each stage's Lambda timeout."""
    remote_model: bool
    model_timeout_s: float
    model_retries: int
    image_wait_s: float
    outage: Backoff

    def attempt_s(self) -> float:
        """One model-stage attempt that ends in MODEL_UNAVAILABLE."""
        model_stage = self._model_stage()
        limit = float(self.timeouts_s[model_stage.name])
        if not self.remote_model:
            return limit  # nothing shorter bounds an in-process failure
        tries = self.model_retries + 1
        return min(limit, tries * self.model_timeout_s + self.model_retries * CLIENT_WAIT_CAP_S)

    def worst_case(self, outage_retries: int) -> WorstCase:
        """The worst case with ``outage_retries`` retries of an unavailable model."""
        model_stage = self._model_stage()
        before = [s for s in self.stages[: self.stages.index(model_stage)]]
        return WorstCase(
            before_s=sum(self.timeouts_s[s.name] for s in before) + self.image_wait_s,
            attempt_s=self.attempt_s(),
            model_timeout_s=float(self.timeouts_s[model_stage.name]),
            outage_retries=outage_retries,
            outage_waits_s=self.outage.worst_case_s(outage_retries),
            record_failure_s=float(self.timeouts_s[self.failure_stage]),
        )

    def express_outage_retries(self, wanted: int) -> int:
        """The outage retries of an EXPRESS execution: ``wanted``, or fewer so that the
        worst case fits in :data:`EXPRESS_LIMIT_S`.

        Raises ``ConfigInvalid``, naming the settings to change, when nothing fits: not
        even the stages' timeouts, or (with a remote model endpoint, whose restart would
        then fail every study in flight) not one outage retry.
        """
        retries = wanted
        while retries > 0 and self.worst_case(retries).total_s > EXPRESS_LIMIT_S:
            retries -= 1
        floor = 1 if self.remote_model else 0
        if retries >= floor and self.worst_case(retries).total_s <= EXPRESS_LIMIT_S:
            return retries
        worst = self.worst_case(floor)
        if self.remote_model and worst.before_s + worst.record_failure_s < EXPRESS_LIMIT_S:
            change = (
                f"lower model.timeout_s ({self.model_timeout_s:g}) or model.retries "
                f"({self.model_retries}): one infer attempt takes up to {worst.attempt_s:.0f} s "
                "((retries + 1) × (timeout_s + 1 s))"
            )
        else:
            change = f"lower engine.image_wait_s ({self.image_wait_s:g})"
        raise ConfigInvalid(
            f"an EXPRESS execution could run {worst.total_s:.0f} s "
            f"({worst.before_s:.0f} s before infer, {worst.model_stage_s:.0f} s infer with "
            f"{floor} outage retr{'y' if floor == 1 else 'ies'}, {worst.record_failure_s:.0f} s "
            f"record_failure), more than the {EXPRESS_LIMIT_S:.0f} s Step Functions allows, "
            f"and would end with no failure object: {change}, or use a STANDARD state machine "
            "(cost.state_machine / --state-machine STANDARD)"
        )

    def _model_stage(self) -> StageDef:
        for stage in self.stages:
            if stage.uses_model:
                return stage
        raise ConfigInvalid("the pipeline has no stage that uses the model")
