"""Every named query is Athena SQL, runs locally, and agrees with an independent computation."""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import sqlglot
from lake_records import record

from radstream.errors import RadStreamError
from radstream.lake.dialect import parse_athena
from radstream.lake.duckdb_runner import LocalQueryRunner
from radstream.lake.parquet_sink import read_lake
from radstream.lake.queries import QueryParamInvalid, named_queries, parse_queries
from radstream.schema.telemetry import TelemetryRecord

REQUIRED = {
    "stage_latency",
    "execution_latency",
    "execution_latency_percentiles",
    "success_rate",
    "failures_by_code",
    "cost_per_image",
    "batch_sizes",
    "data_quality",
}


def _rows(lake: Path) -> list[dict[str, Any]]:
    return read_lake(lake).to_pylist()


def _e2e_by_execution(rows: list[dict[str, Any]]) -> dict[str, tuple[float, bool]]:
    """Independent end-to-end latency: first queue wait + first start to last end (ms)."""
    by: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for r in rows:
        by[r["execution_id"]].append(r)
    out = {}
    for eid, rs in by.items():
        if not any(r["stage"] in ("store", "record_failure") and r["status"] == "ok" for r in rs):
            continue
        first = min(rs, key=lambda r: r["start_ts"])
        span = (max(r["end_ts"] for r in rs) - first["start_ts"]) / timedelta(milliseconds=1)
        ok = any(r["stage"] == "store" and r["status"] == "ok" for r in rs)
        waits = [r["queue_wait_ms"] for r in rs if r["attempt"] == 1 and r["queue_wait_ms"]]
        out[eid] = ((waits[0] if waits else 0.0) + span, ok)
    return out


def test_the_file_has_every_required_query_with_a_description() -> None:
    queries = named_queries()
    assert set(queries) >= REQUIRED
    for query in queries.values():
        assert query.description


@pytest.mark.parametrize("name", sorted(REQUIRED))
def test_each_query_parses_as_athena_sql(name: str) -> None:
    tree = sqlglot.parse_one(named_queries()[name].sql, read="athena")
    assert "radstream.telemetry" in {t.sql() for t in tree.find_all(sqlglot.exp.Table)}


def test_every_query_runs_on_the_demo_lake(demo_lake: Path) -> None:
    with LocalQueryRunner(demo_lake) as runner:
        for name in named_queries():
            result = runner.run_named(name)
            assert result.columns, name


def test_stage_latency_matches_numpy(demo_lake: Path) -> None:
    rows = [r for r in _rows(demo_lake) if r["status"] == "ok"]
    with LocalQueryRunner(demo_lake) as runner:
        got = {r["stage"]: r for r in runner.run_named("stage_latency").records()}
    by_stage: dict[str, list[float]] = defaultdict(list)
    for r in rows:
        by_stage[r["stage"]].append(r["duration_ms"])
    assert set(got) == set(by_stage)
    for stage, values in by_stage.items():
        assert got[stage]["n"] == len(values)
        for q in (50, 95, 99):
            assert got[stage][f"p{q}_ms"] == pytest.approx(np.percentile(values, q), rel=1e-9)


def test_execution_latency_and_percentiles_match(demo_lake: Path) -> None:
    expected = _e2e_by_execution(_rows(demo_lake))
    with LocalQueryRunner(demo_lake) as runner:
        per_execution = {
            r["execution_id"]: r
            for r in runner.run_named("execution_latency", {"top": "1000"}).records()
        }
        percentiles = {
            r["outcome"]: r for r in runner.run_named("execution_latency_percentiles").records()
        }
    assert set(per_execution) == set(expected)
    for eid, (e2e, ok) in expected.items():
        assert per_execution[eid]["e2e_ms"] == pytest.approx(e2e, abs=1e-6)
        assert per_execution[eid]["succeeded"] == int(ok)
    successes = [v for v, ok in expected.values() if ok]
    assert percentiles["succeeded"]["n"] == len(successes)
    assert percentiles["succeeded"]["p95_ms"] == pytest.approx(np.percentile(successes, 95))
    assert percentiles["succeeded"]["max_ms"] == pytest.approx(max(successes))
    assert percentiles["succeeded"]["bucket"] is None  # bucket_s=0: the whole window
    assert percentiles["succeeded"]["slow_share"] == sum(v > 5000 for v in successes) / len(
        successes
    )


def test_success_failures_throughput_match(demo_lake: Path) -> None:
    rows = [r for r in _rows(demo_lake) if r["status"] == "ok"]
    succeeded = {r["execution_id"] for r in rows if r["stage"] == "store"}
    failed = {r["execution_id"] for r in rows if r["stage"] == "record_failure"}
    codes = Counter(r["error_code"] for r in rows if r["stage"] == "record_failure")
    ends = sorted(r["end_ts"] for r in rows if r["stage"] in ("store", "record_failure"))
    active_min = max((ends[-1] - ends[0]) / timedelta(minutes=1), 1.0)
    with LocalQueryRunner(demo_lake) as runner:
        [rate] = runner.run_named("success_rate").records()
        by_code = {
            r["error_code"]: r["executions"] for r in runner.run_named("failures_by_code").records()
        }
        minutes = runner.run_named("success_rate", {"bucket_s": "60"}).records()
        [quality] = runner.run_named("data_quality").records()
    assert (rate["succeeded"], rate["failed"]) == (len(succeeded), len(failed)) == (9, 5)
    assert rate["finished"] == 14 and rate["bucket"] is None
    assert rate["success_rate"] == pytest.approx(9 / 14)
    assert rate["throughput_per_min"] == pytest.approx(14 / active_min)
    assert by_code == dict(codes)
    assert sum(m["succeeded"] for m in minutes) == 9
    assert sum(m["failed"] for m in minutes) == 5
    for m in minutes:
        assert m["bucket"].second == 0 and m["bucket"].microsecond == 0
    assert quality == {
        "total_rows": len(_rows(demo_lake)),
        "null_ids": 0,
        "negative_durations": 0,
        "end_before_start": 0,
        "orphan_executions": 0,
    }


def test_execution_latency_keeps_the_top_slowest_with_their_breakdown(demo_lake: Path) -> None:
    rows = _rows(demo_lake)
    expected = _e2e_by_execution(rows)
    with LocalQueryRunner(demo_lake) as runner:
        slowest = runner.run_named("execution_latency").records()
        three = runner.run_named("execution_latency", {"top": "3"}).records()
    assert len(slowest) == min(20, len(expected))
    assert three == slowest[:3]
    assert [r["e2e_ms"] for r in slowest] == sorted((r["e2e_ms"] for r in slowest), reverse=True)
    top = slowest[0]
    assert top["e2e_ms"] == pytest.approx(max(v for v, _ in expected.values()))
    infer = sum(
        r["duration_ms"]
        for r in rows
        if r["execution_id"] == top["execution_id"] and r["stage"] == "infer"
    )
    assert top["infer_ms"] == pytest.approx(infer)


def _ab_records() -> list[TelemetryRecord]:
    """Two variants over two days, with costs, batch sizes, a retry and a failure."""
    records = []
    t0 = datetime(2026, 3, 1, 10, 0, tzinfo=UTC)
    for i in range(40):
        variant = "A" if i % 2 == 0 else "B"
        start = t0 + timedelta(days=i // 20, minutes=i)
        eid, slow = f"e{i}", 100.0 if variant == "B" else 0.0
        stages = ["validate", "prepare", "infer", "store" if i % 10 else "record_failure"]
        for k, stage in enumerate(stages):
            records.append(
                record(
                    execution_id=eid,
                    study_id=f"s{i}",
                    stage=stage,
                    variant=variant,
                    start=start + timedelta(milliseconds=100 * k),
                    duration_ms=10.0 + slow + i,
                    queue_wait_ms=5.0 if k == 0 else None,
                    cost_usd=0.0001 * (k + 1),
                    batch_size=1 + i % 4 if stage == "infer" else 1,
                    error_code="IMAGE_TRUNCATED" if stage == "record_failure" else None,
                )
            )
    return records


def test_variants_cost_and_batches_match(
    write_lake: Callable[[list[TelemetryRecord]], Path],
) -> None:
    records = _ab_records()
    lake = write_lake(records)
    rows = _rows(lake)
    e2e = _e2e_by_execution(rows)
    variant_of = {r["execution_id"]: r["variant"] for r in rows}
    by_variant = {"by_variant": "true"}
    with LocalQueryRunner(lake) as runner:
        latency = runner.run_named("execution_latency_percentiles", by_variant).records()
        rates = {r["variant"]: r for r in runner.run_named("success_rate", by_variant).records()}
        only_a = runner.run_named("success_rate", {"variant": "A"}).records()
        cost = runner.run_named("cost_per_image").records()
        batches = {r["batch_size"]: r["calls"] for r in runner.run_named("batch_sizes").records()}
        only_first_day = runner.run_named(
            "cost_per_image", {"start_date": "2026-03-01", "end_date": "2026-03-01"}
        ).records()
    ab = {r["variant"]: r for r in latency if r["outcome"] == "succeeded"}
    for variant in ("A", "B"):
        values = [v for eid, (v, ok) in e2e.items() if variant_of[eid] == variant and ok]
        oks = [ok for eid, (_, ok) in e2e.items() if variant_of[eid] == variant]
        assert ab[variant]["n"] == len(values) > 0
        assert ab[variant]["p50_ms"] == pytest.approx(np.percentile(values, 50))
        assert ab[variant]["p95_ms"] == pytest.approx(np.percentile(values, 95))
        assert rates[variant]["finished"] == len(oks) == 20
        assert rates[variant]["success_rate"] == pytest.approx(sum(oks) / len(oks))
    assert ab["B"]["p50_ms"] > ab["A"]["p50_ms"]
    assert [(r["variant"], r["finished"]) for r in only_a] == [(None, 20)]
    for day in cost:
        day_rows = [r for r in rows if r["end_ts"].date() == day["bucket"].date()]
        images = {r["execution_id"] for r in day_rows if r["stage"] == "store"}
        total = sum(r["cost_usd"] for r in day_rows)
        assert day["cost_usd"] == pytest.approx(total)
        assert day["cost_per_image_usd"] == pytest.approx(total / len(images))
    assert [d["bucket"].date().isoformat() for d in only_first_day] == ["2026-03-01"]
    assert batches == dict(Counter(r.batch_size for r in records if r.stage == "infer"))


def test_parameters_are_values_not_sql(write_lake: Callable[[list[TelemetryRecord]], Path]) -> None:
    lake = write_lake(_ab_records())
    with LocalQueryRunner(lake) as runner:
        sneaky = runner.run_named("success_rate", {"variant": "A' OR '1'='1"}).records()
        with pytest.raises(QueryParamInvalid):
            runner.run_named("stage_latency", {"start_date": "yesterday"})
        with pytest.raises(QueryParamInvalid):
            runner.run_named("stage_latency", {"nope": "1"})
    assert sneaky == []  # no variant has that name: the value stayed a value


def test_athena_only_syntax_is_refused_with_a_typed_error() -> None:
    with pytest.raises(RadStreamError) as info:
        parse_athena("SELECT FROM WHERE")
    assert info.value.code == "QUERY_SYNTAX"


def test_adhoc_sql_and_query_file_parser() -> None:
    parsed = parse_queries(
        "-- name: a\n-- description: first\nSELECT 1;\n\n-- name: b\n"
        "-- description: second\n-- params: x=1\nSELECT :x;\n"
    )
    assert list(parsed) == ["a", "b"]
    assert parsed["b"].params == ["x"] and parsed["b"].defaults == {"x": "1"}
    assert parsed["b"].bind({}) == {"x": "1"}


def test_cost_column_is_filled_by_the_pipeline(demo_lake: Path) -> None:
    rows = _rows(demo_lake)
    assert all(r["cost_usd"] and r["cost_usd"] > 0 for r in rows)
    assert all(r["memory_mb"] == 2048 for r in rows)
    with LocalQueryRunner(demo_lake) as runner:
        [day] = runner.run_named("cost_per_image").records()
    assert day["cost_usd"] == pytest.approx(sum(r["cost_usd"] for r in rows))
    assert day["images"] == 9
    assert day["cost_per_image_usd"] == pytest.approx(day["cost_usd"] / 9)
