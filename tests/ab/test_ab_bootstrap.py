"""The resampling machinery: pairing by round, within-block draws, the bootstrap-t."""

from __future__ import annotations

import numpy as np
import pytest

from radstream.ab.bootstrap import paired_bootstrap_t, percentile_interval, two_stage


def _mean(v: np.ndarray) -> np.ndarray:
    return np.asarray(v.mean(axis=1, keepdims=True), dtype=np.float64)


def test_two_stage_keeps_rounds_paired() -> None:
    """Round r of a and b hold the same constant, so every paired replicate agrees exactly."""
    a = [[float(r)] * 5 for r in range(6)]
    b = [[float(r)] * 3 for r in range(6)]
    ra, rb = two_stage(a, b, _mean, resamples=500, rng=np.random.default_rng(0))
    assert ra.shape == rb.shape == (500, 1)
    np.testing.assert_array_equal(ra, rb)
    assert ra.std() > 0  # but the rounds were redrawn


def test_two_stage_draws_only_inside_each_block() -> None:
    """Padding never leaks: blocks of different sizes draw only their own values."""
    a = [[1.0], [2.0, 2.0, 2.0, 2.0]]
    b = [[5.0, 5.0], [5.0]]
    ra, rb = two_stage(
        a,
        b,
        lambda v: np.asarray(v.min(axis=1, keepdims=True)),
        resamples=300,
        rng=np.random.default_rng(1),
    )
    assert set(np.unique(ra)) <= {1.0, 2.0}
    assert set(np.unique(rb)) == {5.0}


def test_two_stage_is_reproducible_and_chunked(monkeypatch: pytest.MonkeyPatch) -> None:
    import radstream.ab.bootstrap as bootstrap

    rng_blocks = np.random.default_rng(5)
    a = [list(rng_blocks.normal(size=20)) for _ in range(4)]
    b = [list(rng_blocks.normal(size=20)) for _ in range(4)]
    one = two_stage(a, b, _mean, resamples=250, rng=np.random.default_rng(9))
    again = two_stage(a, b, _mean, resamples=250, rng=np.random.default_rng(9))
    np.testing.assert_array_equal(one[0], again[0])
    monkeypatch.setattr(bootstrap, "_CHUNK_CELLS", 200)  # many small chunks
    chunked = two_stage(a, b, _mean, resamples=250, rng=np.random.default_rng(9))
    assert chunked[0].shape == (250, 1)


def test_two_stage_refuses_unpaired_or_empty_blocks() -> None:
    rng = np.random.default_rng(0)
    with pytest.raises(ValueError, match="same"):
        two_stage([[1.0]], [[1.0], [2.0]], _mean, rng=rng)
    with pytest.raises(ValueError, match="at least one study"):
        two_stage([[1.0], []], [[1.0], [2.0]], _mean, rng=rng)


def test_percentile_interval_ignores_non_finite_replicates() -> None:
    reps = np.column_stack([np.arange(101, dtype=float), np.full(101, np.inf)])
    reps[0, 0] = np.nan
    low, high = percentile_interval(reps, 0.9)
    # 1..100 remain: the 5% and 95% points of those, by linear interpolation.
    assert low[0] == pytest.approx(5.95)
    assert high[0] == pytest.approx(95.05)
    assert np.isnan(low[1])


def test_bootstrap_t_is_symmetric_and_zero_width_without_spread() -> None:
    rng = np.random.default_rng(0)
    lo, hi = paired_bootstrap_t([1.0, 2.0, 3.0], [2.0, 3.0, 4.0], level=0.95, rng=rng)
    assert lo == hi == 1.0
    a = [10.0, 11.0, 9.5, 10.5, 10.2, 9.8]
    b = [11.0, 12.5, 10.0, 11.8, 11.1, 10.9]
    lo, hi = paired_bootstrap_t(a, b, level=0.95, rng=rng)
    mean = float(np.mean(np.subtract(b, a)))
    assert mean - lo == pytest.approx(hi - mean)
    assert 0 < lo < mean < hi
    with pytest.raises(ValueError, match="two pairs"):
        paired_bootstrap_t([1.0], [2.0], level=0.95, rng=rng)


def test_mann_whitney_edge_cases() -> None:
    from radstream.ab.metrics import mann_whitney_p

    assert mann_whitney_p([], [1.0]) is None
    assert mann_whitney_p([2.0, 2.0], [2.0, 2.0, 2.0]) == 1.0
    p = mann_whitney_p([1.0, 2.0, 3.0, 4.0, 5.0], [6.0, 7.0, 8.0, 9.0, 10.0])
    assert p is not None
    assert p < 0.05


def test_quantiles_match_numpy() -> None:
    from radstream.ab.bootstrap import quantiles

    values = np.random.default_rng(3).lognormal(size=(50, 37))
    qs = np.asarray([0.0, 0.5, 0.95, 0.99, 1.0])
    np.testing.assert_allclose(quantiles(values, qs), np.quantile(values, qs, axis=1).T)


def test_two_stage_rate() -> None:
    from radstream.ab.bootstrap import two_stage_rate

    rng = np.random.default_rng(0)
    ra, rb = two_stage_rate([(20, 20)] * 5, [(10, 20)] * 5, resamples=400, rng=rng)
    assert ra.shape == rb.shape == (400, 1)
    assert set(np.unique(ra)) == {1.0}  # no failure, no spread: why success needs Fisher too
    assert abs(float(rb.mean()) - 0.5) < 0.02
    assert 0.0 < float(rb.std()) < 0.1
    # Rounds stay paired: every block is all-pass or all-fail, the same in both arms.
    ra, rb = two_stage_rate(
        [(0, 4), (4, 4), (0, 4)], [(0, 4), (4, 4), (0, 4)], resamples=300, rng=rng
    )
    np.testing.assert_array_equal(ra, rb)
    with pytest.raises(ValueError, match="successes"):
        two_stage_rate([(5, 4), (1, 4)], [(1, 4), (1, 4)], rng=rng)
    with pytest.raises(ValueError, match="same"):
        two_stage_rate([(1, 4)], [(1, 4), (1, 4)], rng=rng)
