"""The six metrics of an A/B comparison, and one arm compared with another on all of them.

Per metric: the value per arm, the difference b − a and the ratio b / a with a bootstrap
interval (see :mod:`radstream.ab.bootstrap` for which bootstrap and why), a p-value, and the
verdict of :mod:`radstream.ab.verdict`. The p-value is benchstat's Mann-Whitney U test, on the
studies' latencies for the latency metrics and on the blocks' values for throughput and cost;
for the success rate it is Fisher's exact test on the pooled counts.

The success rate also needs that test to agree before it names a winner: a bootstrap of an arm
with no failure has no spread at all (every redraw is 100%), so its interval alone would call
5 failures in 120 against none a difference, where the exact test gives p ≈ 0.06.

Minimum samples (benchstat's rule, adapted): per-study metrics need 4 blocks per arm, per-block
metrics 5 (their interval rests on the blocks alone); a quantile q also needs 1 / (1 − q)
studies per arm, so that p95 is not simply the maximum of 19 values (p95: 20, p99: 100).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np
from scipy import stats

from radstream.ab.bootstrap import (
    DEFAULT_RESAMPLES,
    FloatArray,
    few_rounds_factor,
    inflate,
    paired_bootstrap_t,
    percentile_interval,
    quantiles,
    two_stage,
    two_stage_rate,
)
from radstream.ab.model import Better, BlockData, Interval, MetricResult
from radstream.ab.verdict import DEFAULT_MARGIN, Decision, decide, shortfall

MIN_ROUNDS_PER_STUDY = 4
MIN_ROUNDS_PER_BLOCK = 5


@dataclass(frozen=True)
class MetricSpec:
    """A metric's name in the JSON, unit, better direction, and how it is measured."""

    name: str
    unit: str
    better: Better
    kind: Literal["latency", "success", "block"]
    quantile: float | None = None


METRICS: tuple[MetricSpec, ...] = (
    MetricSpec("p50_ms", "ms", "lower", "latency", 0.50),
    MetricSpec("p95_ms", "ms", "lower", "latency", 0.95),
    MetricSpec("p99_ms", "ms", "lower", "latency", 0.99),
    MetricSpec("throughput_per_min", "images/min", "higher", "block"),
    MetricSpec("cost_per_image_usd", "USD", "lower", "block"),
    MetricSpec("success_rate", "fraction", "higher", "success"),
)
METRIC_NAMES = tuple(m.name for m in METRICS)


def min_studies(quantile: float) -> int:
    """Studies per arm below which quantile ``quantile`` is not estimated (1 / (1 − q))."""
    return math.ceil(round(1.0 / (1.0 - quantile), 9))


def mann_whitney_p(a: Sequence[float], b: Sequence[float]) -> float | None:
    """Two-sided Mann-Whitney U p-value; 1.0 when every value is equal, None if a side is empty."""
    if len(a) == 0 or len(b) == 0:
        return None
    if len(set(a) | set(b)) == 1:
        return 1.0
    p = float(stats.mannwhitneyu(b, a, alternative="two-sided").pvalue)
    return p if math.isfinite(p) else None


def paired(
    a_blocks: Sequence[BlockData], b_blocks: Sequence[BlockData]
) -> list[tuple[BlockData, BlockData]]:
    """The blocks of two arms that share a round, in round order (one pair per round)."""
    by_round = {blk.round: blk for blk in b_blocks}
    return [
        (blk, by_round[blk.round])
        for blk in sorted(a_blocks, key=lambda x: x.round)
        if blk.round in by_round
    ]


@dataclass(frozen=True)
class _Figures:
    a: float | None
    b: float | None
    diff: tuple[float, float] | None
    ratio: tuple[float, float] | None
    p_value: float | None
    rounds: int
    studies: int | None = None


def _row(
    spec: MetricSpec,
    arm_a: str,
    arm_b: str,
    f: _Figures,
    *,
    level: float,
    margin: float,
    projected: bool,
) -> MetricResult:
    q = spec.quantile
    need: Decision | None = shortfall(
        rounds=f.rounds,
        min_rounds=MIN_ROUNDS_PER_BLOCK if spec.kind == "block" else MIN_ROUNDS_PER_STUDY,
        studies=f.studies,
        min_studies=min_studies(q) if q is not None else None,
    )
    if need is None and f.ratio is not None:
        need = decide(*f.ratio, better=spec.better, margin=margin, rounds=f.rounds, level=level)
        if (
            spec.kind == "success"
            and need.verdict in ("a_better", "b_better")
            and (f.p_value is None or f.p_value >= 1.0 - level)
        ):
            p_text = "no p-value" if f.p_value is None else f"p = {f.p_value:.2g}"
            need = Decision(
                "inconclusive",
                f"{need.reason}, but Fisher's exact test does not agree ({p_text}); "
                "a bootstrap understates the uncertainty of a rate near 0 or 1",
            )
    elif need is None:
        need = Decision("inconclusive", "no interval (a value of arm a is zero or missing)")
    both = f.a is not None and f.b is not None
    ci = None
    if f.diff is not None and f.ratio is not None:
        ci = {
            "diff": Interval(low=f.diff[0], high=f.diff[1]),
            "ratio": Interval(low=f.ratio[0], high=f.ratio[1]),
        }
    return MetricResult(
        metric=spec.name,
        unit=spec.unit,
        better=spec.better,
        arm_a=arm_a,
        arm_b=arm_b,
        a=f.a,
        b=f.b,
        diff=(f.b - f.a) if both and f.a is not None and f.b is not None else None,
        ratio=(f.b / f.a) if f.a and f.b is not None else None,
        ci95=ci,
        ci_level=level,
        p_value=f.p_value,
        verdict=need.verdict,
        reason=need.reason,
        more_blocks_per_arm=need.more_blocks_per_arm,
        projected=projected,
    )


def _interval(low: float, high: float) -> tuple[float, float] | None:
    return (low, high) if math.isfinite(low) and math.isfinite(high) else None


def _latency(
    pairs: list[tuple[BlockData, BlockData]], level: float, resamples: int, rng: np.random.Generator
) -> dict[str, _Figures]:
    specs = [m for m in METRICS if m.kind == "latency"]
    qs = np.asarray([m.quantile for m in specs], dtype=np.float64)
    pairs = [(x, y) for x, y in pairs if x.latencies_ms and y.latencies_ms]
    pooled_a = [v for x, _ in pairs for v in x.latencies_ms]
    pooled_b = [v for _, y in pairs for v in y.latencies_ms]
    n = min(len(pooled_a), len(pooled_b))
    if len(pairs) < 2:
        return {m.name: _Figures(None, None, None, None, None, len(pairs), n) for m in specs}
    p = mann_whitney_p(pooled_a, pooled_b)
    a_val = np.quantile(pooled_a, qs)
    b_val = np.quantile(pooled_b, qs)

    def stat(v: FloatArray) -> FloatArray:
        return quantiles(v, qs)

    ra, rb = two_stage(
        [x.latencies_ms for x, _ in pairs],
        [y.latencies_ms for _, y in pairs],
        stat,
        resamples=resamples,
        rng=rng,
    )
    with np.errstate(divide="ignore", invalid="ignore"):
        per_round = np.log(
            np.asarray([np.quantile(y.latencies_ms, qs) for _, y in pairs])
            / np.asarray([np.quantile(x.latencies_ms, qs) for x, _ in pairs])
        )
        factor = few_rounds_factor(np.log(rb / ra), per_round, level)
    ra = inflate(ra, a_val, factor, scale="log")
    rb = inflate(rb, b_val, factor, scale="log")
    d_lo, d_hi = percentile_interval(rb - ra, level)
    with np.errstate(divide="ignore", invalid="ignore"):
        r_lo, r_hi = percentile_interval(rb / ra, level)
    return {
        m.name: _Figures(
            float(a_val[i]),
            float(b_val[i]),
            _interval(d_lo[i], d_hi[i]),
            _interval(r_lo[i], r_hi[i]),
            p,
            len(pairs),
            n,
        )
        for i, m in enumerate(specs)
    }


def _success(
    pairs: list[tuple[BlockData, BlockData]], level: float, resamples: int, rng: np.random.Generator
) -> _Figures:
    pairs = [(x, y) for x, y in pairs if x.valid and y.valid]
    if len(pairs) < 2:
        return _Figures(None, None, None, None, None, len(pairs))
    sa, sb = sum(x.succeeded for x, _ in pairs), sum(y.succeeded for _, y in pairs)
    na, nb = sum(x.valid for x, _ in pairs), sum(y.valid for _, y in pairs)
    a, b = sa / na, sb / nb

    ra, rb = two_stage_rate(
        [(x.succeeded, x.valid) for x, _ in pairs],
        [(y.succeeded, y.valid) for _, y in pairs],
        resamples=resamples,
        rng=rng,
    )
    per_round = np.asarray([[y.succeeded / y.valid - x.succeeded / x.valid] for x, y in pairs])
    factor = few_rounds_factor(rb - ra, per_round, level)
    ra = inflate(ra, np.asarray([a]), factor, scale="rate")
    rb = inflate(rb, np.asarray([b]), factor, scale="rate")
    d_lo, d_hi = percentile_interval(rb - ra, level)
    with np.errstate(divide="ignore", invalid="ignore"):
        r_lo, r_hi = percentile_interval(rb / ra, level)
    p = float(stats.fisher_exact([[sa, na - sa], [sb, nb - sb]]).pvalue)
    return _Figures(a, b, _interval(d_lo[0], d_hi[0]), _interval(r_lo[0], r_hi[0]), p, len(pairs))


def _per_block(
    values: list[tuple[float, float]], level: float, resamples: int, rng: np.random.Generator
) -> _Figures:
    if len(values) < 2:
        return _Figures(None, None, None, None, None, len(values))
    a_vals = [x for x, _ in values]
    b_vals = [y for _, y in values]
    a, b = float(np.mean(a_vals)), float(np.mean(b_vals))
    lo, hi = paired_bootstrap_t(a_vals, b_vals, level=level, resamples=resamples, rng=rng)
    # The ratio's interval divides the difference's by a's mean; a's own error is already in
    # the paired differences, so this is first-order right and keeps ratio = 1 + diff / a.
    ratio = (1.0 + lo / a, 1.0 + hi / a) if a > 0 else None
    return _Figures(a, b, (lo, hi), ratio, mann_whitney_p(a_vals, b_vals), len(values))


def compare_arms(
    a_blocks: Sequence[BlockData],
    b_blocks: Sequence[BlockData],
    *,
    level: float = 0.95,
    margin: float = DEFAULT_MARGIN,
    resamples: int = DEFAULT_RESAMPLES,
    rng: np.random.Generator,
    projected: frozenset[str] = frozenset(),
) -> list[MetricResult]:
    """All six metrics of arm b (``b_blocks``) against arm a, paired by round.

    ``projected`` names the metrics whose values are projections (flagged in each row).
    """
    if not a_blocks or not b_blocks:
        raise ValueError("both arms need blocks")
    arm_a, arm_b = a_blocks[0].arm, b_blocks[0].arm
    pairs = paired(a_blocks, b_blocks)
    figures = _latency(pairs, level, resamples, rng)
    figures["success_rate"] = _success(pairs, level, resamples, rng)
    for name in ("throughput_per_min", "cost_per_image_usd"):
        values = [
            (va, vb)
            for x, y in pairs
            if (va := getattr(x, name)) is not None and (vb := getattr(y, name)) is not None
        ]
        figures[name] = _per_block(values, level, resamples, rng)
    return [
        _row(
            m,
            arm_a,
            arm_b,
            figures[m.name],
            level=level,
            margin=margin,
            projected=m.name in projected,
        )
        for m in METRICS
    ]
