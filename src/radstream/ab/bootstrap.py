"""Bootstrap intervals for paired rounds of blocks, vectorised with NumPy.

Two resampling schemes, one per kind of metric:

**Per-study metrics** (latency quantiles, success rate) use a *two-stage* (hierarchical)
bootstrap: draw rounds with replacement (the same rounds for both arms, so the pairing by
round is kept), then resample the studies within each drawn block. Resampling only within
blocks (stratified) ignores the block-to-block drift of a shared machine and, in our
simulations, calls an A/A difference about 10% of the time at the 95% level; resampling only
rounds is too narrow with a handful of rounds. The two-stage scheme counts within-block noise
twice, which makes it slightly conservative (A/A false "different" rate 0–3%), and that is
the safe side. Where blocks differ more than studies within a block (a real run: a few
rounds of a few fast studies), redrawing a handful of rounds is too narrow instead (8%), and
:func:`few_rounds_factor` widens it as cluster-robust inference does for few clusters. Each drawn block contributes as many draws as the largest block, i.e. blocks
weigh equally, as the design plans them equal.

The interval is the **percentile** interval, not BCa: BCa's acceleration comes from a
jackknife, and the jackknife is inconsistent for sample quantiles such as p95 and p99 (and
ill-defined over two resampling levels), so its "correction" would add noise, not accuracy.

**Per-block metrics** (throughput, cost per image: one number per block) have nothing to
resample within a block, and a percentile bootstrap over five to ten rounds is too narrow
(it called A/A differences 10–20% of the time). They use a paired **symmetric bootstrap-t**
on the per-round differences b − a: studentising fixes most of that small-sample error, and
the symmetric form (one half-width from the quantile of |t*|; Hall 1988) has a smaller
two-sided coverage error than the equal-tailed one, which still called 5–6% of A/A runs
different at 5–8 rounds in our simulations; the symmetric one called 2–4%.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Literal

import numpy as np
from numpy.typing import NDArray
from scipy import stats

FloatArray = NDArray[np.float64]
Statistic = Callable[[FloatArray], FloatArray]
"""Maps a (replicates, studies) matrix to a (replicates, k) matrix of statistics."""

DEFAULT_RESAMPLES = 2000
# Bounds one chunk's (replicates × rounds × studies) index matrix to ~32 MB of float64.
_CHUNK_CELLS = 4_000_000


def _padded(blocks: Sequence[Sequence[float]]) -> tuple[FloatArray, NDArray[np.int64]]:
    sizes = np.asarray([len(b) for b in blocks], dtype=np.int64)
    if sizes.size == 0 or int(sizes.min()) < 1:
        raise ValueError("every block needs at least one study")
    matrix = np.zeros((len(blocks), int(sizes.max())), dtype=np.float64)
    for i, block in enumerate(blocks):
        matrix[i, : len(block)] = np.asarray(block, dtype=np.float64)
    return matrix, sizes


def two_stage(
    a_blocks: Sequence[Sequence[float]],
    b_blocks: Sequence[Sequence[float]],
    statistic: Statistic,
    *,
    resamples: int = DEFAULT_RESAMPLES,
    rng: np.random.Generator,
) -> tuple[FloatArray, FloatArray]:
    """Bootstrap replicates of ``statistic`` for arm a and arm b, paired by round.

    ``a_blocks[r]`` and ``b_blocks[r]`` are the two arms' studies in round ``r``. Returns two
    (resamples, k) matrices; row ``i`` of both comes from the same drawn rounds.
    """
    if len(a_blocks) != len(b_blocks) or not a_blocks:
        raise ValueError("both arms need the same, non-zero number of paired blocks")
    rounds = len(a_blocks)
    arms = [_padded(a_blocks), _padded(b_blocks)]
    width = max(m.shape[1] for m, _ in arms)
    chunk = max(1, _CHUNK_CELLS // (rounds * width))
    out: list[list[FloatArray]] = [[], []]
    done = 0
    while done < resamples:
        n = min(chunk, resamples - done)
        picks = rng.integers(0, rounds, size=(n, rounds))
        for k, (matrix, sizes) in enumerate(arms):
            cols = matrix.shape[1]
            # Uniform draws scaled by each drawn block's own size: an index inside that block.
            within = (rng.random((n, rounds, cols)) * sizes[picks][..., None]).astype(np.int64)
            values = matrix[picks[..., None], within].reshape(n, rounds * cols)
            out[k].append(statistic(values))
        done += n
    return np.concatenate(out[0]), np.concatenate(out[1])


def two_stage_rate(
    a: Sequence[tuple[int, int]],
    b: Sequence[tuple[int, int]],
    *,
    resamples: int = DEFAULT_RESAMPLES,
    rng: np.random.Generator,
) -> tuple[FloatArray, FloatArray]:
    """:func:`two_stage` for a rate, from ``(successes, trials)`` per block, paired by round.

    Redrawing a block's n pass/fail studies with replacement gives a Binomial(n, k / n)
    count, so the second stage is one binomial draw per drawn block (the same distribution
    as redrawing the studies, much faster). Returns (resamples, 1) matrices of pooled rates.
    """
    if len(a) != len(b) or not a:
        raise ValueError("both arms need the same, non-zero number of paired blocks")
    picks = rng.integers(0, len(a), size=(resamples, len(a)))
    out: list[FloatArray] = []
    for arm in (a, b):
        k = np.asarray([s for s, _ in arm], dtype=np.int64)
        n = np.asarray([t for _, t in arm], dtype=np.int64)
        if int(n.min()) < 1 or bool((k > n).any()) or int(k.min()) < 0:
            raise ValueError("every block needs 0 <= successes <= trials and trials >= 1")
        drawn = rng.binomial(n[picks], k[picks] / n[picks])
        out.append((drawn.sum(axis=1) / n[picks].sum(axis=1)).astype(np.float64)[:, None])
    return out[0], out[1]


def quantiles(values: FloatArray, qs: FloatArray) -> FloatArray:
    """Quantiles ``qs`` of each row of ``values``, as ``np.quantile``'s default (linear).

    One sort per row serves every quantile, where ``np.quantile`` partitions once per q.
    """
    ordered = np.sort(values, axis=1)
    position = qs * (ordered.shape[1] - 1)
    below = np.floor(position).astype(np.int64)
    above = np.minimum(below + 1, ordered.shape[1] - 1)
    weight = position - below
    low, high = ordered[:, below], ordered[:, above]
    return np.asarray(low + (high - low) * weight, dtype=np.float64)


def percentile_interval(replicates: FloatArray, level: float) -> tuple[FloatArray, FloatArray]:
    """Lower and upper percentile bounds per column of a (resamples, k) matrix.

    Replicates that are not finite (a ratio over a zero) are dropped column by column.
    """
    alpha = 1.0 - level
    cols = replicates.shape[1]
    low = np.full(cols, np.nan)
    high = np.full(cols, np.nan)
    for j in range(cols):
        column = replicates[:, j]
        column = column[np.isfinite(column)]
        if column.size:
            low[j], high[j] = np.quantile(column, [alpha / 2, 1 - alpha / 2])
    return low, high


def few_rounds_factor(replicates: FloatArray, per_round: FloatArray, level: float) -> FloatArray:
    """Per column, how much wider the two-stage interval must be for its few rounds (≥ 1).

    ``replicates`` are the (resamples, k) bootstrap replicates of the comparison (b − a, or
    log b/a); ``per_round`` the (rounds, k) same comparison within each round alone. Redrawing
    R rounds sees their spread with R − 1 degrees of freedom, shrunk by (R − 1) / R, while a
    percentile interval reads normal quantiles; where a block's own effect (a shared machine's
    drift, worker start-up) outweighs the noise within blocks, the two-stage interval is then
    too narrow: a real A/A run on the pipeline, four rounds of eight studies, called its p50
    different in 2 of 13 runs. The remedy is that of cluster-robust inference with few
    clusters (Cameron & Miller 2015): the variance of the per-round comparisons over R, read
    with t(R − 1) critical values. Where that is wider than the two-stage spread, the factor
    stretches the replicates to match it; where the noise within blocks dominates, the
    two-stage spread (which counts it twice) is already the wider, and the factor is 1.
    """
    rounds = per_round.shape[0]
    if rounds < 2:
        return np.ones(per_round.shape[1])
    upper = 0.5 + level / 2
    t_over_z = float(stats.t.ppf(upper, rounds - 1) / stats.norm.ppf(upper))
    clustered = t_over_z**2 * np.var(per_round, axis=0, ddof=1) / rounds
    finite = np.where(np.isfinite(replicates), replicates, np.nan)
    boot = np.nanvar(finite, axis=0, ddof=1)
    with np.errstate(divide="ignore", invalid="ignore"):
        factor = np.sqrt(clustered / boot)
    return np.asarray(np.where(np.isfinite(factor), np.maximum(factor, 1.0), 1.0))


def inflate(
    replicates: FloatArray,
    centre: FloatArray,
    factor: FloatArray,
    *,
    scale: Literal["log", "rate"],
) -> FloatArray:
    """Replicates whose spread about ``centre`` (one value per column) is ``factor`` times wider.

    Each arm's replicates are inflated before any difference or ratio is taken, so that the
    two intervals drawn from them still agree on whether "no difference" is excluded.
    ``log`` inflates on the log scale (a latency stays positive); ``rate`` on the linear scale,
    clipped to [0, 1].
    """
    if scale == "log":
        with np.errstate(divide="ignore", invalid="ignore"):
            return np.asarray(centre * (replicates / centre) ** factor, dtype=np.float64)
    spread = centre + factor * (replicates - centre)
    return np.asarray(np.clip(spread, 0.0, 1.0), dtype=np.float64)


def paired_bootstrap_t(
    a: Sequence[float],
    b: Sequence[float],
    *,
    level: float,
    resamples: int = DEFAULT_RESAMPLES,
    rng: np.random.Generator,
) -> tuple[float, float]:
    """Symmetric bootstrap-t interval for the mean of the paired differences ``b[r] − a[r]``."""
    d = np.asarray(b, dtype=np.float64) - np.asarray(a, dtype=np.float64)
    n = d.size
    if n < 2:
        raise ValueError("a bootstrap-t interval needs at least two pairs")
    mean = float(d.mean())
    se = float(d.std(ddof=1)) / np.sqrt(n)
    if se == 0.0:
        return mean, mean
    draws = d[rng.integers(0, n, size=(resamples, n))]
    se_star = draws.std(axis=1, ddof=1) / np.sqrt(n)
    with np.errstate(divide="ignore", invalid="ignore"):
        t_star = (draws.mean(axis=1) - mean) / se_star
    # A draw of n equal pairs has no spread and no t; dropping it is the usual convention.
    t_star = t_star[np.isfinite(t_star)]
    # Symmetric: the (level) quantile of |t*|, one half-width on both sides.
    half = float(np.quantile(np.abs(t_star), level)) * se
    return mean - half, mean + half
