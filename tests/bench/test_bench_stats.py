"""Load shapes, percentiles, lateness, steady throughput and SLO verdicts on known data."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from radstream.bench.report import LateSends
from radstream.bench.slo import SloInvalid, targets_with, verdict
from radstream.bench.stats import late_sends, latency_summary, steady_throughput
from radstream.loadgen.driver import DriveResult, Sent
from radstream.loadgen.shapes import ShapeInvalid, constant, parse_shape, poisson, read_trace
from radstream.stages.completions import Completion, completion_of, outcome_key_of


def test_percentiles_match_numpy_on_known_data() -> None:
    values = list(np.random.default_rng(0).lognormal(4, 1, 1001))
    got = latency_summary(values)
    for key, q in (
        ("p50_ms", 50),
        ("p90_ms", 90),
        ("p95_ms", 95),
        ("p99_ms", 99),
        ("p999_ms", 99.9),
    ):
        assert got[key] == pytest.approx(np.percentile(values, q), abs=0.05)
    assert got["max_ms"] == pytest.approx(max(values), abs=0.05)
    # Not "the max of a handful": p95 of 1..100 is 95.05 (reported to 0.1 ms), not 100.
    assert latency_summary([float(v) for v in range(1, 101)])["p95_ms"] == pytest.approx(
        95.05, abs=0.051
    )


def test_shapes() -> None:
    assert constant(4, 5) == [0, 0.25, 0.5, 0.75, 1.0]
    step = parse_shape("step:2/1,10/1", 8)
    assert step[:2] == [0, 0.5] and step[2] == pytest.approx(1.0) and step[3] == pytest.approx(1.1)
    assert parse_shape("burst:3/5", 7) == [0, 0, 0, 5, 5, 5, 10]
    ramp = parse_shape("ramp:1-10/10", 80)
    gaps = np.diff(ramp)
    # 1*t + 0.45*t^2 = 1 for the second send; 10/s once the ramp is over.
    assert gaps[0] == pytest.approx((-1 + np.sqrt(2.8)) / 0.9) and gaps[-1] == pytest.approx(0.1)
    # From 0/s: the integral of the rate decides, not 1/rate (which would be infinite).
    from_zero = parse_shape("ramp:0-10/10", 50)
    assert from_zero[1] == pytest.approx(np.sqrt(2), rel=1e-6)  # 10/10 * t^2 / 2 = 1
    assert from_zero[-1] == pytest.approx(np.sqrt(98))  # t^2 / 2 = 49
    with pytest.raises(ShapeInvalid):
        parse_shape("ramp:10-0/2", 30)  # only 10 sends fit in a ramp down to 0
    arrivals = poisson(50, 5000, np.random.default_rng(1))
    assert 5000 / arrivals[-1] == pytest.approx(50, rel=0.05)
    for bad in ("zigzag:1", "step:fast/1", "burst:3", "ramp:1-2/0"):
        with pytest.raises(ShapeInvalid):
            parse_shape(bad, 3)


def test_trace_file(tmp_path: Path) -> None:
    plain = tmp_path / "t.csv"
    plain.write_text("0\n0.5\n0.25\n2\n")
    assert read_trace(plain) == [0, 0.25, 0.5, 2]
    with_header = tmp_path / "h.csv"
    with_header.write_text("study,offset_s\na,1.5\nb,0\n")
    assert read_trace(with_header) == [0, 1.5]
    broken = tmp_path / "b.csv"
    broken.write_text("soon\n")
    with pytest.raises(ShapeInvalid):
        read_trace(broken)


def _run(sends: list[tuple[float, float]], done_at: list[float]) -> tuple[DriveResult, list[Sent]]:
    run = DriveResult(started_at=0.0)
    for i, ((due, actual), at) in enumerate(zip(sends, done_at, strict=True)):
        key = f"incoming/s{i}/s{i}.json"
        run.sent.append(Sent(key, due, actual, None, False))
        run.completions[key] = Completion(key, "result", at)
    return run, run.sent


def test_lateness_is_counted_and_measured() -> None:
    _, sent = _run([(0.0, 0.0), (1.0, 1.002), (2.0, 2.5), (3.0, 4.0)], [1, 2, 3, 5])
    assert late_sends(sent) == LateSends(count=2, max_ms=1000.0, mean_ms=750.0)


def test_steady_throughput_and_stability() -> None:
    steady, sent = _run([(i / 10, i / 10) for i in range(200)], [i / 10 + 0.1 for i in range(200)])
    result = steady_throughput(steady, sent)
    assert result.per_min == pytest.approx(600, rel=0.01)
    assert result.stable
    # The same count, but the last quarter finishes twice as slowly: unstable.
    done = [i / 10 + 0.1 for i in range(150)] + [15 + (i + 1) / 5 for i in range(50)]
    slowing, sent = _run([(i / 10, i / 10) for i in range(200)], done)
    assert not steady_throughput(slowing, sent).stable


def test_slo_verdict_and_overrides() -> None:
    targets = targets_with(["p95_ms=100"])
    result = verdict(
        {
            "p95_ms": 150.0,
            "throughput_per_min": 30.0,
            "cost_per_image_usd": 0.001,
            "success_rate": None,
        },
        targets,
    )
    assert result["p95_ms"].model_dump(by_alias=True) == {
        "value": 150.0,
        "limit": 100.0,
        "op": "<",
        "pass": False,
        "description": "end-to-end p95 latency (ms)",
    }
    assert result["throughput_per_min"].passed
    assert not result["success_rate"].passed  # not measured is not a pass
    for bad in (["nope=1"], ["p95_ms"], ["p95_ms=fast"]):
        with pytest.raises(SloInvalid):
            targets_with(bad)


def test_outcome_keys_map_back_to_uploads() -> None:
    assert completion_of("results/s1/a.json", 2.0) == Completion(
        "incoming/s1/a.json", "result", 2.0, "results/s1/a.json"
    )
    assert completion_of("failed/s1/a.json", 3.0) == Completion(
        "incoming/s1/a.json", "failure", 3.0, "failed/s1/a.json"
    )
    assert completion_of("other/s1/a.json", 1.0) is None
    assert completion_of("results/s1/deeper/a.json", 1.0) is None


def test_uploads_map_to_their_outcome_keys() -> None:
    assert outcome_key_of("incoming/s1/a.json", "result") == "results/s1/a.json"
    assert outcome_key_of("incoming/s1/a.json", "failure") == "failed/s1/a.json"
    for kind in ("result", "failure"):
        key = outcome_key_of("incoming/s1/a.json", kind)
        completion = completion_of(key, 0.0)
        assert completion is not None
        assert (completion.sidecar_key, completion.kind) == ("incoming/s1/a.json", kind)
