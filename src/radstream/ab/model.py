"""Typed inputs and results of an A/B experiment (the shape of ``radstream ab --json``)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

Verdict = Literal["b_better", "a_better", "same", "inconclusive"]
Better = Literal["lower", "higher"]
Source = Literal["local", "projected", "stack"]
"""Where an experiment's figures come from: measured on this machine, projected from one
measured local configuration, or measured on deployed stacks (one per arm)."""


class _Frozen(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class BlockData(_Frozen):
    """What one block of one arm measured (the input of :func:`radstream.ab.analyse`).

    ``latencies_ms`` holds one end-to-end latency per measured study (a study without an
    outcome counts with its time so far, as bench does). ``planned`` and ``measured`` count
    studies (warm-up excluded): planned by the design, and actually sent with an outcome;
    the sample-ratio check compares them. ``succeeded`` of ``valid`` studies gave a result.
    """

    position: int = Field(ge=0)
    round: int = Field(ge=0)
    arm: str = Field(min_length=1)
    latencies_ms: list[float] = Field(default_factory=list)
    throughput_per_min: float | None = Field(default=None, ge=0)
    cost_per_image_usd: float | None = Field(default=None, ge=0)
    planned: int = Field(ge=0)
    measured: int = Field(ge=0)
    valid: int = Field(ge=0)
    succeeded: int = Field(ge=0)

    @model_validator(mode="after")
    def _counts(self) -> BlockData:
        if self.succeeded > self.valid:
            raise ValueError(f"succeeded ({self.succeeded}) exceeds valid ({self.valid})")
        return self


class Interval(_Frozen):
    """A two-sided confidence interval at ``level`` (0.95 unless corrected for several arms)."""

    low: float
    high: float


class MetricResult(_Frozen):
    """One metric compared between arm ``arm_a`` (the baseline) and arm ``arm_b``.

    ``diff`` is b − a and ``ratio`` b / a; ``ci95`` holds both intervals, at ``ci_level``
    (0.95 for two arms; higher after the correction for several arms). ``p_value`` is the
    Mann-Whitney U test's (Fisher's exact test's for the success rate), Holm-adjusted when
    there are several arms. ``verdict`` comes from
    the interval of the ratio, and ``reason`` says why in words.
    """

    metric: str
    unit: str
    better: Better
    arm_a: str
    arm_b: str
    a: float | None
    b: float | None
    diff: float | None
    ratio: float | None
    ci95: dict[Literal["diff", "ratio"], Interval] | None
    ci_level: float
    p_value: float | None
    verdict: Verdict
    reason: str
    more_blocks_per_arm: int | None = None
    projected: bool = False


class SrmResult(_Frozen):
    """Sample-ratio mismatch: did each arm get the share of studies the design planned?"""

    planned: dict[str, int]
    measured: dict[str, int]
    chi2: float | None
    p_value: float | None
    threshold: float
    mismatch: bool
    reason: str


class Projection(_Frozen):
    """A figure that was computed, not measured, and from what."""

    figure: str
    arm: str
    method: str
    assumptions: list[str] = Field(default_factory=list)
    sources: list[str] = Field(default_factory=list)


class SweepPoint(_Frozen):
    """One memory size of a Lambda memory sweep."""

    memory_mb: int = Field(gt=0)
    p95_ms: float = Field(ge=0)
    cost_per_image_usd: float = Field(ge=0)
    projected: bool = False


class SweepSummary(_Frozen):
    """The sweep as Lambda Power Tuning shows it: the curve and three picks."""

    points: list[SweepPoint]
    slo_p95_ms: float
    cheapest_meeting_slo: int | None
    fastest: int
    balanced: int
    balanced_weight: float
    reason: str


class StackUse(_Frozen):
    """One arm's deployed stack in an experiment run with ``--stack`` (what ran where).

    ``deploy`` says what the deploy did: ``created`` a new stack, ``updated`` an existing
    one, or found it ``unchanged`` (already deployed with these options: reused).
    ``status`` is the stack's CloudFormation status once deployed, before the first block;
    ``destroyed`` is None while it stands (or when kept with ``--keep-stacks``).
    """

    arm: str
    stack: str
    region: str
    endpoint_url: str | None = None
    memory_mb: int
    express_artifacts: bool
    architecture: str
    state_machine: str
    deploy: Literal["created", "updated", "unchanged", "failed"]
    status: str | None = None
    stack_id: str | None = None
    destroyed: bool | None = None
    error: str | None = None


class ExperimentResult(_Frozen):
    """The whole result of ``radstream ab run`` (``--json`` writes exactly this).

    ``blocks`` is the number of blocks per arm, ``order`` the arm of each block in run order;
    ``metrics`` has one row per metric and compared arm (each arm against ``baseline``).
    """

    experiment: str
    arms: dict[str, dict[str, str]]
    baseline: str
    blocks: int
    order: list[str]
    margin: float = Field(default=0.05, ge=0)
    metrics: list[MetricResult]
    correction: str
    srm: SrmResult
    projected: list[Projection] = Field(default_factory=list)
    sweep: SweepSummary | None = None
    method: str = ""
    source: Source = "local"
    stacks: list[StackUse] = Field(default_factory=list)
    """With ``--stack``: each arm's stack, its template options, and its fate."""
    # A true JSON boundary: bench's manifest is free-form (config, versions, machine).
    manifest: dict[str, object] = Field(default_factory=dict)
