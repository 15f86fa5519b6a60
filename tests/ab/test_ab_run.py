"""The experiment runner with ``run_bench`` replaced: design, settings per block, outputs.

The real pipeline runs in test_ab_cli.py (slow); here the blocks are canned bench reports,
so what is checked is the runner's own work: order, seeds, variants, data directory,
model servers, projections, failures, and the shape of the JSON.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from types import SimpleNamespace

import pytest
from ab_fake_bench import FakeBench

import radstream.ab.run as ab_run
from radstream.ab.run import ExperimentConfig, ExperimentFailed, run_experiment
from radstream.ab.scenarios import scenarios
from radstream.bench.runner import BenchConfig
from radstream.errors import ConfigInvalid
from radstream.serving.config import ServeConfig
from radstream.settings import Settings

JSON_KEYS = {"experiment", "arms", "blocks", "order", "metrics", "srm", "projected", "manifest"}
METRIC_KEYS = {"a", "b", "diff", "ratio", "ci95", "p_value", "verdict"}


@pytest.fixture
def fake(monkeypatch: pytest.MonkeyPatch) -> FakeBench:
    bench = FakeBench()
    monkeypatch.setattr(ab_run, "run_bench", bench)
    return bench


def settings(tmp_path: Path) -> Settings:
    return Settings(data_dir=tmp_path / "exp", engine={"workers": 3})


def config(arms: dict[str, dict[str, str]], blocks: int = 5, **kw: object) -> ExperimentConfig:
    bench = BenchConfig(studies=30, concurrency=2, warmup=1, seed=7)
    return ExperimentConfig(experiment="t", arms=arms, bench=bench, blocks=blocks, **kw)  # type: ignore[arg-type]


def test_blocks_alternate_share_seeds_per_round_and_carry_their_arm(
    fake: FakeBench, tmp_path: Path
) -> None:
    arms = {"one": {"engine.workers": "1"}, "two": {"engine.workers": "2"}}
    run = run_experiment(settings(tmp_path), config(arms, blocks=4))
    assert [c.variant for c in fake.calls] == ["one", "two", "two", "one"] * 2
    assert [c.workers for c in fake.calls] == [1, 2, 2, 1] * 2
    # Both arms of a round get the same images (seed), each round new ones.
    assert [c.seed for c in fake.calls] == [7, 7, 8, 8, 9, 9, 10, 10]
    assert {c.data_dir for c in fake.calls} == {str(tmp_path / "exp")}
    assert run.result.order == ["one", "two", "two", "one"] * 2
    assert [b.arm for b in run.log] == run.result.order
    assert all(b.end_s >= b.start_s for b in run.log)
    assert set(run.latencies) == {"one", "two"}


def test_a_real_difference_is_found_and_the_json_has_its_shape(
    fake: FakeBench, tmp_path: Path
) -> None:
    arms = {"one": {"engine.workers": "1"}, "two": {"engine.workers": "2"}}
    result = run_experiment(settings(tmp_path), config(arms, blocks=5)).result
    by = {m.metric: m for m in result.metrics}
    assert by["p50_ms"].verdict == "b_better"
    assert by["throughput_per_min"].verdict == "b_better"
    assert by["throughput_per_min"].ci95 is not None
    assert by["throughput_per_min"].ci95["ratio"].low > 1.0
    data = json.loads(json.dumps(result.model_dump(mode="json")))
    assert set(data) >= JSON_KEYS
    assert data["arms"] == {"one": {"engine.workers": "1"}, "two": {"engine.workers": "2"}}
    assert data["blocks"] == 5 and len(data["order"]) == 10
    assert all(set(m) >= METRIC_KEYS for m in data["metrics"])
    assert data["projected"] == []
    assert data["manifest"]["mode"] == "real"
    assert len(data["manifest"]["block_log"]) == 10


def test_a_failed_block_ends_the_run_saying_which(fake: FakeBench, tmp_path: Path) -> None:
    fake.fail_at = 2
    arms = {"a": {}, "b": {"engine.workers": "2"}}
    with pytest.raises(ExperimentFailed, match=r"block 3 of 10 \(arm 'b'.*disk full"):
        run_experiment(settings(tmp_path), config(arms))
    assert len(fake.calls) == 3


def test_a_bad_setting_fails_before_any_block(fake: FakeBench, tmp_path: Path) -> None:
    with pytest.raises(ConfigInvalid, match=r"engine\.wokers"):
        run_experiment(settings(tmp_path), config({"a": {}, "b": {"engine.wokers": "2"}}))
    with pytest.raises(ConfigInvalid, match="two arms"):
        run_experiment(settings(tmp_path), config({"a": {}}))
    assert fake.calls == []


def test_serve_arms_get_a_model_server_each_block(
    fake: FakeBench, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    started: list[int] = []
    names: set[str] = set()

    @contextmanager
    def server(cfg: ServeConfig) -> Iterator[str]:
        started.append(cfg.max_batch_size)
        names.add(cfg.name)
        yield f"http://127.0.0.1:9/{len(started)}"

    monkeypatch.setattr(ab_run, "running_server", server)
    monkeypatch.setattr(ab_run, "resolve_model_path", lambda s: tmp_path / "m.onnx")
    # No model file here: the server is fake. It serves the file under the file's own name.
    monkeypatch.setattr(ab_run, "read_model_info", lambda path: SimpleNamespace(name="m-v1"))
    arms = scenarios()["batch-size"].arms
    run_experiment(settings(tmp_path), config(arms, blocks=1))
    assert started == [1, 4, 8]
    assert names == {"m-v1"}
    assert [c.endpoint for c in fake.calls] == [f"http://127.0.0.1:9/{i}" for i in (1, 2, 3)]
    assert {c.workers for c in fake.calls} == {4}


@pytest.mark.parametrize("name", ["storage-class", "lambda-memory"])
def test_projected_scenarios_measure_one_configuration_and_label_every_projection(
    fake: FakeBench, tmp_path: Path, name: str
) -> None:
    scenario = scenarios()[name]
    cfg = config(scenario.arms, blocks=5, scenario=scenario)
    result = run_experiment(settings(tmp_path), cfg).result
    # One configuration ran, block after block; the arms were derived from it.
    assert len(fake.calls) == 5
    assert {c.variant for c in fake.calls} == {"measured"}
    assert result.manifest["mode"] == "projected"
    assert set(result.arms) == set(scenario.arms)
    flagged = {(m.arm_b, m.metric) for m in result.metrics if m.projected}
    for arm in list(scenario.arms)[1:]:
        assert {(arm, f) for f in ("p50_ms", "p95_ms", "p99_ms", "cost_per_image_usd")} <= flagged
        assert (arm, "success_rate") not in flagged
    assert {p.arm for p in result.projected} == set(scenario.arms)
    assert all(p.method and p.sources for p in result.projected)
    throughput = [m for m in result.metrics if m.metric == "throughput_per_min"]
    assert all(m.a is None and m.verdict == "inconclusive" for m in throughput)
    assert all("not projected" in m.reason.lower() for m in throughput)
    if name == "lambda-memory":
        assert result.sweep is not None
        assert [p.memory_mb for p in result.sweep.points] == [512, 1024, 1769, 3008]
        assert all(p.projected for p in result.sweep.points)
    else:
        assert {c.storage_class for c in fake.calls} == {"express"}
        by = {m.metric: m for m in result.metrics}
        # Each of a study's S3 requests (from the bill: 10 in the canned one) is 25 ms
        # faster on express (5 ms against 30 ms).
        assert by["p50_ms"].diff == pytest.approx(-10 * 25.0)
        cost = by["cost_per_image_usd"]
        assert cost.a is not None and cost.b is not None
        # Express requests are cheaper; this canned bill's S3 PUTs are a small part of it.
        assert cost.b < cost.a
