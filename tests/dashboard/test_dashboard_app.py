"""The dashboard without a browser: windows and parameters, burn, the app's routes, its token,
its offline page, and the CLI that serves it."""

from __future__ import annotations

import ast
import asyncio
import math
import re
from collections.abc import Callable, Iterator
from contextlib import nullcontext
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from importlib import resources
from pathlib import Path
from typing import Any

import httpx
import pytest
import sqlglot
import typer
from typer.testing import CliRunner

from radstream.bench.slo import DEFAULT_TARGETS
from radstream.cli import app as cli_app
from radstream.cli.dashboard import dashboard_token, is_loopback
from radstream.dashboard.app import COOKIE, CSP, create_app
from radstream.dashboard.engine import LocalEngineWatch
from radstream.dashboard.figures import (
    BUCKETS_S,
    DEFAULT_RANGE,
    FIGURES,
    RANGES,
    Window,
    collect,
    figure_params,
    json_value,
)
from radstream.dashboard.objectives import OBJECTIVES, burn, objective_tiles
from radstream.lake.duckdb_runner import LocalQueryRunner, QueryResult
from radstream.lake.queries import named_queries
from radstream.local.database import connect
from radstream.local.executor import Executor
from radstream.stages.ports import ObjectInfo

NOW = datetime(2026, 3, 4, 0, 30, 15, tzinfo=UTC)
STATIC = resources.files("radstream.dashboard").joinpath("static")


# --------------------------------------------------------------------------- windows


def test_a_window_ends_now_and_reaches_back_a_partition_margin() -> None:
    params = Window.ending(NOW, timedelta(hours=1)).params()
    # 23:30 the day before, less the hour's margin: the partition of the day before.
    assert params["start_date"] == "2026-03-03"
    assert params["end_date"] == "2026-03-04"
    assert params["from_ts"] == "2026-03-03 23:30:15 UTC"
    assert params["to_ts"] == "2026-03-04 00:30:16 UTC"  # exclusive: the current second is in
    assert Window.ending(NOW, timedelta(hours=1)).seconds() == [
        NOW.timestamp() - 3600,
        NOW.timestamp() + 1,
    ]


def test_the_unbounded_window_starts_at_the_epoch() -> None:
    params = Window.ending(NOW, None).params()
    assert params["start_date"] == "1970-01-01"
    assert params["from_ts"] == "1970-01-01 00:00:00 UTC"
    assert Window.ending(NOW, None).seconds()[0] == 0
    assert Window.ending(NOW, None).params()["to_ts"] == "2026-03-04 00:30:16 UTC"


@pytest.mark.parametrize("spec", FIGURES, ids=lambda s: s.key)
def test_every_figure_names_a_query_that_takes_its_parameters(spec: Any) -> None:
    query = named_queries()[spec.query]
    given = figure_params(spec, Window.ending(NOW, timedelta(days=1)), "A", 300)
    assert query.bind(given) == {**query.defaults, **given}  # nothing unknown, dates well formed
    # The A/B figures show every variant side by side; the others follow the filter.
    assert ("variant" in given) != spec.by_variant
    assert given.get("by_variant", "false") == ("true" if spec.by_variant else "false")
    if spec.bucketed:
        assert given["bucket_s"] == "300"


@pytest.mark.parametrize("objective", OBJECTIVES, ids=lambda o: o.target.name)
def test_every_tile_names_a_query_that_takes_its_parameters(objective: Any) -> None:
    query = named_queries()[objective.query]
    given = objective.params(Window.ending(NOW, timedelta(hours=1)).params(), "B")
    assert query.bind(given) == {**query.defaults, **given}
    assert given["bucket_s"] == "0" and given["variant"] == "B"


def test_each_range_has_a_bucket_of_a_few_hundred_points_at_most() -> None:
    assert set(BUCKETS_S) == set(RANGES)
    for key, span in RANGES.items():
        if span is not None:
            assert span.total_seconds() / BUCKETS_S[key] <= 400, key


def test_the_dashboard_queries_are_athena_sql_over_the_telemetry_table() -> None:
    names = [spec.query for spec in FIGURES] + [o.query for o in OBJECTIVES]
    for name in names:
        tree = sqlglot.parse_one(named_queries()[name].sql, read="athena")
        assert "radstream.telemetry" in {t.sql() for t in tree.find_all(sqlglot.exp.Table)}


def test_query_values_become_json() -> None:
    assert json_value(datetime(2026, 1, 2, 3, 4)) == "2026-01-02T03:04:00+00:00"
    later = datetime(2026, 1, 2, 4, 4, tzinfo=UTC) + timedelta(0)
    assert json_value(later) == "2026-01-02T04:04:00+00:00"
    assert json_value(date(2026, 1, 2)) == "2026-01-02"
    assert json_value(Decimal("1.5")) == 1.5
    assert json_value(math.nan) is None and json_value(math.inf) is None
    assert json_value(7) == 7 and json_value("x") == "x" and json_value(None) is None
    # Athena's text for a timestamp, and an emulator's: the same instant as ISO 8601.
    assert json_value("2026-01-02 03:04:00.000 UTC") == "2026-01-02T03:04:00+00:00"
    assert json_value("2026-01-02 03:04:00+00:00") == "2026-01-02T03:04:00+00:00"
    assert json_value("IMAGE_TRUNCATED") == "IMAGE_TRUNCATED"


# --------------------------------------------------------------------------- burn


def objective(name: str) -> Any:
    return next(o for o in OBJECTIVES if o.target.name == name)


def test_the_tiles_are_the_benchmarks_four_objectives() -> None:
    assert [o.target for o in OBJECTIVES] == [
        DEFAULT_TARGETS[n]
        for n in ("p95_ms", "throughput_per_min", "cost_per_image_usd", "success_rate")
    ]


@pytest.mark.parametrize(
    ("name", "record", "expected"),
    [
        ("success_rate", {"success_rate": 0.98}, 2.0),  # 2 % failed of a 1 % budget
        ("success_rate", {"success_rate": 1.0}, 0.0),
        ("p95_ms", {"p95_ms": 9000.0, "slow_share": 0.10}, 2.0),  # 10 % slow of 5 %
        ("p95_ms", {"p95_ms": 100.0, "slow_share": 0.0}, 0.0),
        ("throughput_per_min", {"throughput_per_min": 5.0}, 2.0),
        ("throughput_per_min", {"throughput_per_min": 20.0}, 0.5),
        ("throughput_per_min", {"throughput_per_min": 0.0}, None),
        ("cost_per_image_usd", {"cost_per_image_usd": 0.001}, 0.5),
        ("cost_per_image_usd", {"cost_per_image_usd": None}, None),
        ("success_rate", {}, None),
    ],
)
def test_burn_is_one_exactly_at_the_objective(
    name: str, record: dict[str, object], expected: float | None
) -> None:
    got = burn(objective(name), record)
    assert got == (None if expected is None else pytest.approx(expected))


class FakeRunner:
    """Answers each named query with its rows; records what it was asked."""

    def __init__(self, rows: dict[str, list[dict[str, object]]]) -> None:
        self.rows = rows
        self.asked: list[tuple[str, dict[str, str]]] = []

    def run_named(self, name: str, params: dict[str, str] | None = None) -> QueryResult:
        self.asked.append((name, dict(params or {})))
        records = self.rows[name]
        return QueryResult(columns=list(records[0]), rows=[tuple(r.values()) for r in records])


def test_tiles_read_each_objectives_query_per_window_with_the_variant() -> None:
    latency = {"bucket": None, "variant": None, "outcome": "succeeded", "n": 199}
    runner = FakeRunner(
        {
            "execution_latency_percentiles": [
                {**latency, "outcome": "failed", "n": 1, "p95_ms": 5.0, "slow_share": 0.0},
                {**latency, "p95_ms": 1200.0, "slow_share": 0.01},
            ],
            "success_rate": [{"finished": 200, "success_rate": 0.995, "throughput_per_min": 12.5}],
            "cost_per_image": [{"images": 199, "cost_per_image_usd": 0.0004}],
        }
    )
    windows = {"1h": {"start_date": "2026-03-03", "end_date": "2026-03-04"}, "24h": {}}
    tiles = objective_tiles(runner, windows, "B")
    # success_rate feeds two tiles but runs once per window.
    assert sorted(name for name, _ in runner.asked) == sorted(
        ["execution_latency_percentiles", "success_rate", "cost_per_image"] * 2
    )
    assert runner.asked[0][1] == {
        **windows["1h"],
        "variant": "B",
        "bucket_s": "0",
        "slow_ms": "5000",
    }
    by_name = {t["name"]: t for t in tiles}
    assert by_name["success_rate"]["windows"]["1h"]["burn"] == pytest.approx(0.5)
    # The p95 tile reads the successful executions' row.
    assert by_name["p95_ms"]["windows"]["24h"]["value"] == 1200.0
    assert by_name["p95_ms"]["windows"]["24h"]["burn"] == pytest.approx(0.2)
    assert by_name["p95_ms"]["windows"]["1h"]["executions"] == 199
    assert by_name["throughput_per_min"]["windows"]["1h"]["value"] == 12.5
    assert by_name["success_rate"]["windows"]["1h"]["executions"] == 200
    assert by_name["cost_per_image_usd"]["windows"]["1h"]["executions"] == 199


# --------------------------------------------------------------------------- app

ClientFor = Callable[[Any], "AppClient"]


class AppClient:
    """Requests to the app in process (httpx's ASGI transport): no socket, no server."""

    def __init__(self, app: Any) -> None:
        self._loop = asyncio.Runner()
        transport = httpx.ASGITransport(app=app)
        self._client = httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1")

    @property
    def cookies(self) -> httpx.Cookies:
        return self._client.cookies

    def get(self, path: str, **kwargs: Any) -> httpx.Response:
        return self._loop.run(self._client.get(path, **kwargs))

    def close(self) -> None:
        self._loop.run(self._client.aclose())
        self._loop.close()


@pytest.fixture
def empty_lake(tmp_path: Path) -> Path:
    return tmp_path / "lake"


@pytest.fixture
def client_for() -> Iterator[Callable[[Any], AppClient]]:
    """Makes in-process clients of apps; closes them after the test."""
    made: list[AppClient] = []

    def make(app: Any) -> AppClient:
        made.append(AppClient(app))
        return made[-1]

    yield make
    for client in made:
        client.close()


def test_the_page_its_script_and_uplot_are_served_with_a_strict_csp(
    empty_lake: Path, client_for: ClientFor
) -> None:
    client = client_for(create_app(empty_lake, refresh_s=2.5))
    page = client.get("/")
    assert page.status_code == 200
    assert page.headers["content-security-policy"] == CSP
    assert 'data-refresh-ms="2500"' in page.text
    for path, kind in [
        ("/static/uPlot.iife.min.js", "javascript"),
        ("/static/dashboard.js", "javascript"),
        ("/static/uPlot.min.css", "css"),
        ("/static/dashboard.css", "css"),
    ]:
        response = client.get(path)
        assert response.status_code == 200 and kind in response.headers["content-type"], path
    assert "MIT License" in STATIC.joinpath("uPlot.LICENSE.txt").read_text(encoding="utf-8")


def test_the_page_loads_nothing_from_elsewhere() -> None:
    page = STATIC.joinpath("index.html").read_text(encoding="utf-8")
    for ref in re.findall(r'(?:src|href)="([^"]*)"', page):
        assert ref.startswith(("/static/", "data:")), ref
    script = STATIC.joinpath("dashboard.js").read_text(encoding="utf-8")
    # The one URL in the script is the SVG namespace, which is a name, not a fetch.
    assert re.findall(r"https?://[^\"' ]+", script) == ["http://www.w3.org/2000/svg"]


def test_the_range_filter_offers_the_servers_ranges() -> None:
    page = STATIC.joinpath("index.html").read_text(encoding="utf-8")
    select = page.split('<select id="range"', 1)[1].split("</select>", 1)[0]
    assert re.findall(r'<option value="([^"]+)"', select) == list(RANGES)
    assert re.search(r'value="([^"]+)" selected', select)[1] == DEFAULT_RANGE  # type: ignore[index]


def test_the_api_answers_on_an_empty_lake_and_refuses_an_unknown_range(
    empty_lake: Path, client_for: ClientFor
) -> None:
    client = client_for(create_app(empty_lake, clock=lambda: NOW))
    data = client.get("/api/dashboard", params={"range": "1h", "variant": "A"}).json()
    assert data["range"] == "1h" and data["variant"] == "A"
    assert data["generated_at"] == NOW.isoformat()
    assert {f["query"] for f in data["figures"].values()} == {s.query for s in FIGURES}
    assert all(f["rows"] == [] for f in data["figures"].values())
    assert [t["windows"]["1h"]["value"] for t in data["objectives"]] == [None] * 4
    bad = client.get("/api/dashboard", params={"range": "2y"})
    assert bad.status_code == 400 and bad.json()["code"] == "RANGE_INVALID"


def test_with_a_token_every_route_needs_it(empty_lake: Path, client_for: ClientFor) -> None:
    client = client_for(create_app(empty_lake, token="tok-1"))
    for path in ("/", "/api/dashboard", "/static/dashboard.js"):
        assert client.get(path).status_code == 401, path
        wrong = client.get(path, headers={"Authorization": "Bearer tok-2"})
        assert wrong.status_code == 401, path
        right = client.get(path, headers={"Authorization": "Bearer tok-1"})
        assert right.status_code == 200, path
    assert client.get("/?token=tok-2").status_code == 401


def test_the_token_in_the_address_becomes_a_cookie_and_leaves_the_address(
    empty_lake: Path, client_for: ClientFor
) -> None:
    client = client_for(create_app(empty_lake, token="tok-1"))
    opened = client.get("/?token=tok-1")
    assert opened.status_code == 303 and opened.headers["location"] == "/"
    cookie = opened.headers["set-cookie"].lower()
    assert "httponly" in cookie and "samesite=strict" in cookie
    assert client.cookies.get(COOKIE) == "tok-1"
    assert client.get("/api/dashboard").status_code == 200  # the cookie carries it now


# --------------------------------------------------------------------------- CLI


def test_the_token_comes_from_a_file_or_the_option(tmp_path: Path) -> None:
    secret = tmp_path / "token"
    secret.write_text("from-file\n", encoding="utf-8")
    assert dashboard_token(None, secret) == "from-file"
    assert dashboard_token("given", None) == "given"
    assert dashboard_token(None, None) is None
    with pytest.raises(typer.BadParameter, match="not both"):
        dashboard_token("given", secret)
    (tmp_path / "empty").write_text("\n", encoding="utf-8")
    with pytest.raises(typer.BadParameter, match="empty"):
        dashboard_token(None, tmp_path / "empty")
    with pytest.raises(typer.BadParameter, match="cannot read"):
        dashboard_token(None, tmp_path / "missing")


def test_loopback_hosts() -> None:
    assert is_loopback("127.0.0.1") and is_loopback("::1") and is_loopback("localhost")
    assert not is_loopback("0.0.0.0") and not is_loopback("example.org")


def test_the_command_serves_the_data_dirs_lake_on_loopback_by_default(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, client_for: ClientFor
) -> None:
    served: dict[str, Any] = {}

    def fake_run(app: Any, **kwargs: Any) -> None:
        served.update(kwargs, app=app)

    monkeypatch.setattr("uvicorn.run", fake_run)
    secret = tmp_path / "token"
    secret.write_text("tok-9", encoding="utf-8")
    done = CliRunner().invoke(
        cli_app, ["dashboard", "--data-dir", str(tmp_path / "d"), "--token-file", str(secret)]
    )
    assert done.exit_code == 0, done.output
    assert (served["host"], served["port"]) == ("127.0.0.1", 8050)
    client = client_for(served["app"])
    assert client.get("/api/dashboard").status_code == 401
    assert client.get("/", headers={"Authorization": "Bearer tok-9"}).status_code == 200


# --------------------------------------------------------------------------- no SQL here

PACKAGE = Path(__file__).parents[2] / "src" / "radstream" / "dashboard"
SQL_TEXT = [
    re.compile(r"\bselect\b.*\bfrom\b", re.IGNORECASE | re.DOTALL),
    re.compile(r"\bgroup\s+by\b|\border\s+by\b|\bwhere\s+\w+\s*(=|<|>|in\b)", re.IGNORECASE),
    re.compile(r"radstream\.telemetry|approx_percentile|count\s*\(", re.IGNORECASE),
]


def python_strings(path: Path) -> list[str]:
    """Every string literal of a module, docstrings included."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    return [
        n.value for n in ast.walk(tree) if isinstance(n, ast.Constant) and isinstance(n.value, str)
    ]


def sql_in(texts: list[str]) -> list[str]:
    return [text for text in texts for pattern in SQL_TEXT if pattern.search(text)]


def test_the_dashboard_holds_no_sql_only_query_names() -> None:
    sources = sorted(PACKAGE.rglob("*.py"))
    assert len(sources) >= 5
    for path in sources:
        assert sql_in(python_strings(path)) == [], path
    for name in ("dashboard.js", "index.html"):  # the page's own (uPlot is vendored as is)
        assert sql_in(STATIC.joinpath(name).read_text(encoding="utf-8").splitlines()) == [], name
    # The check can fail: a query written out is found.
    assert sql_in(["SELECT stage, count(*) FROM radstream.telemetry GROUP BY stage"])


class OnlyNamed:
    """A runner that can run named queries and nothing else; records the names."""

    def __init__(self, runner: LocalQueryRunner) -> None:
        self._runner = runner
        self.names: list[str] = []

    def run_named(self, name: str, params: dict[str, str] | None = None) -> QueryResult:
        self.names.append(name)
        return self._runner.run_named(name, params)


def test_a_refresh_runs_named_queries_only(empty_lake: Path) -> None:
    with LocalQueryRunner(empty_lake) as local:
        spy = OnlyNamed(local)
        data = collect(lambda: nullcontext(spy), range_key="1h", now=NOW)
    assert set(spy.names) <= set(named_queries())
    assert {spec.query for spec in FIGURES} | {o.query for o in OBJECTIVES} == set(spy.names)
    assert {f["query"] for f in data["figures"].values()} <= set(named_queries())


# --------------------------------------------------------------------------- engine panel


def test_the_engine_panel_reads_the_executor_and_keeps_the_queue_history(tmp_path: Path) -> None:
    db = tmp_path / "engine.db"
    times = iter([100.0, 105.0, 110.0])
    watch = LocalEngineWatch(db, clock=lambda: next(times))
    assert watch() is None and not db.exists()  # no engine ran here: no panel, no file made
    executor = Executor(connect(db), clock=lambda: 90.0)
    executor.object_created(ObjectInfo("images", "incoming/s1/a.json", "e1", 2, 0.0))
    assert executor.route() == 1
    first = watch()
    assert first is not None
    assert (
        first["counts"]
        == executor.counts()
        == {
            "pending": 1,
            "running": 0,
            "succeeded": 0,
            "failed": 0,
        }
    )
    assert (first["queue_depth"], first["oldest_pending_age_s"]) == (1, 15.0)
    claim = executor.claim("w")
    assert claim is not None
    second = watch()
    assert second is not None and second["counts"]["running"] == 1
    assert second["history"] == [[105.0, 1.0, 0.0], [110.0, 0.0, 1.0]]
