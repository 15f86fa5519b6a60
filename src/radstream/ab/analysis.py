"""One call from measured blocks to the whole experiment result (what ``radstream ab`` prints).

With more than two arms (a memory sweep) every arm is compared with the baseline. The
intervals are **Bonferroni**-corrected (each of the m comparisons uses level 1 − 0.05 / m), so
the verdicts, which rest on the intervals, hold family-wise; the reported Mann-Whitney
p-values are **Holm**-adjusted per metric (uniformly more powerful than Bonferroni, and p-values
need no matching interval).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping, Sequence

import numpy as np

from radstream.ab.bootstrap import DEFAULT_RESAMPLES
from radstream.ab.design import Slot, order_labels
from radstream.ab.metrics import METRIC_NAMES, compare_arms
from radstream.ab.model import (
    BlockData,
    ExperimentResult,
    MetricResult,
    Projection,
    SweepSummary,
)
from radstream.ab.srm import srm_check
from radstream.ab.verdict import DEFAULT_MARGIN

METHOD = (
    "Arms ran in alternating blocks (one block of every arm per round), so drift on the machine "
    "fell on all arms alike. Per metric, the value of each arm is over all its studies; the "
    "interval of the difference and of the ratio b/a comes from a bootstrap that redraws whole "
    "rounds and then studies within each block, widened where the rounds alone vary more than "
    "that (few rounds: t critical values, as for few clusters); per-block figures such as "
    "throughput use a paired bootstrap-t over rounds. A metric is 'same' when the interval of b/a lies within "
    "the margin, 'b_better' or 'a_better' when it excludes 1, and 'inconclusive' otherwise or "
    "when there are too few blocks or studies. The Mann-Whitney U p-value is shown beside it. "
    "The sample-ratio check compares the studies each arm got with those it was planned."
)


def holm(p_values: Sequence[float | None]) -> list[float | None]:
    """Holm's step-down adjustment of a family of p-values (None entries are skipped)."""
    present = [(p, i) for i, p in enumerate(p_values) if p is not None]
    m = len(present)
    adjusted: list[float | None] = list(p_values)
    running = 0.0
    for rank, (p, i) in enumerate(sorted(present)):
        running = max(running, min(1.0, (m - rank) * p))
        adjusted[i] = running
    return adjusted


def analyse(
    *,
    experiment: str,
    arms: Mapping[str, Mapping[str, str]],
    blocks: Sequence[BlockData],
    baseline: str | None = None,
    margin: float = DEFAULT_MARGIN,
    level: float = 0.95,
    resamples: int = DEFAULT_RESAMPLES,
    seed: int = 0,
    projected: Sequence[Projection] = (),
    sweep: SweepSummary | None = None,
    manifest: Mapping[str, object] | None = None,
) -> ExperimentResult:
    """Compare every arm with ``baseline`` (default: the first arm) over ``blocks``.

    ``arms`` maps each arm's name to its settings (``KEY=VALUE`` pairs as in radstream.toml).
    ``projected`` lists the figures that are projections; their rows are flagged. The
    bootstrap draws from ``seed``, so the same data give the same result.
    """
    names = list(arms)
    base = baseline if baseline is not None else (names[0] if names else "")
    if len(names) < 2 or base not in names:
        raise ValueError(f"need at least two arms including the baseline {base!r}, got {names}")
    by_arm: dict[str, list[BlockData]] = defaultdict(list)
    for blk in blocks:
        if blk.arm not in arms:
            raise ValueError(f"block {blk.position} names arm {blk.arm!r}, not one of {names}")
        by_arm[blk.arm].append(blk)
    missing = [a for a in names if not by_arm[a]]
    if missing:
        raise ValueError(f"arms without any block: {missing}")
    others = [a for a in names if a != base]
    comparisons = len(others)
    comp_level = 1.0 - (1.0 - level) / comparisons
    rng = np.random.default_rng(seed)
    rows: list[MetricResult] = []
    for arm in others:
        marked = frozenset(p.figure for p in projected if p.arm in (base, arm))
        rows += compare_arms(
            by_arm[base],
            by_arm[arm],
            level=comp_level,
            margin=margin,
            resamples=resamples,
            rng=rng,
            projected=marked,
        )
    if comparisons > 1:
        for metric in METRIC_NAMES:
            idx = [i for i, r in enumerate(rows) if r.metric == metric]
            for i, p in zip(idx, holm([rows[i].p_value for i in idx]), strict=True):
                rows[i] = rows[i].model_copy(update={"p_value": p})
        correction = (
            f"{comparisons} arms against {base!r}: Bonferroni intervals at "
            f"{comp_level:.4f}, Holm-adjusted p-values"
        )
    else:
        correction = "none (one comparison)"
    srm = srm_check(
        {a: sum(b.planned for b in by_arm[a]) for a in names},
        {a: sum(b.measured for b in by_arm[a]) for a in names},
    )
    slots = [Slot(position=b.position, round=b.round, arm=b.arm) for b in blocks]
    return ExperimentResult(
        experiment=experiment,
        arms={a: dict(arms[a]) for a in names},
        baseline=base,
        blocks=max(len({b.round for b in by_arm[a]}) for a in names),
        order=order_labels(slots),
        margin=margin,
        metrics=rows,
        correction=correction,
        srm=srm,
        projected=list(projected),
        sweep=sweep,
        method=METHOD,
        manifest=dict(manifest or {}),
    )
