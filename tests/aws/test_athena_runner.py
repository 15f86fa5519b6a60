"""Named queries on Athena: the runner alone, then on ministack's Athena beside the local runner.

The emulator tests upload a real lake (left by a demo run) to ministack's S3, register it in
Glue with the table definition the stack uses, and check that every named query returns on
"Athena" what DuckDB returns locally.

ministack's Athena is DuckDB running the query text as sent, so it lacks two things real
Athena does on the server (both pinned by ``test_ministack_*`` below, so that a ministack
that learns them shows up): it ignores ``ExecutionParameters`` (DuckDB then fails on the
unbound ``?``), and it does not know Trino's ``approx_percentile``. The emulator tests add
both back on the client, in :func:`_as_athena_would`, as a botocore hook. It splices each
execution parameter in as Athena does, after checking that it is a single literal, so a
value the runner quoted badly fails the test instead of passing through.
"""

from __future__ import annotations

import json
import math
import subprocess
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import botocore.session
import pytest
import sqlglot
from sqlglot import TokenType, exp
from sqlglot.dialects.dialect import Dialect
from typer.testing import CliRunner

from radstream.aws.athena_runner import (
    WORKGROUP_OUTPUT,
    AthenaQueryRunner,
    athena_literal,
    to_positional,
)
from radstream.aws.session import AwsTarget, StackRef
from radstream.cli import app
from radstream.errors import QueryFailed, StackNotFound
from radstream.lake.dialect import QuerySyntaxError
from radstream.lake.duckdb_runner import LocalQueryRunner, QueryResult
from radstream.lake.files import visible_files
from radstream.lake.glue import DATABASE, table_input
from radstream.lake.queries import QueryParamInvalid, named_queries
from support.demo import run_demo_lake
from support.emulator import launcher, running_emulator

REGION = "us-east-1"
BUCKET = "radstream-lake"
PREFIX = "telemetry/"
WORKGROUP = "radstream-test"
STACK = "rs-athena"
slow = pytest.mark.slow


# --- the runner against a scripted client --------------------------------------------


class FakeAthena:
    """Answers like Athena from a script: execution states in turn, then result pages."""

    def __init__(
        self, states: list[dict[str, Any]], pages: list[dict[str, Any]] | None = None
    ) -> None:
        self.states = states
        self.pages = pages or []
        self.calls: list[tuple[str, dict[str, Any]]] = []

    def start_query_execution(self, **kw: Any) -> dict[str, Any]:
        self.calls.append(("start", kw))
        return {"QueryExecutionId": "q-1"}

    def get_query_execution(self, **kw: Any) -> dict[str, Any]:
        self.calls.append(("get", kw))
        state = self.states.pop(0) if len(self.states) > 1 else self.states[0]
        return {"QueryExecution": {"StatementType": "DML", **state}}

    def get_query_results(self, **kw: Any) -> dict[str, Any]:
        self.calls.append(("results", kw))
        return self.pages.pop(0)

    def stop_query_execution(self, **kw: Any) -> dict[str, Any]:
        self.calls.append(("stop", kw))
        return {}


def _state(state: str, reason: str = "") -> dict[str, Any]:
    return {"Status": {"State": state, "StateChangeReason": reason}}


def _row(*values: str | None) -> dict[str, Any]:
    return {"Data": [{} if v is None else {"VarCharValue": v} for v in values]}


COLUMNS = [
    {"Name": "stage", "Label": "stage", "Type": "varchar"},
    {"Name": "n", "Label": "n", "Type": "bigint"},
    {"Name": "p50", "Label": "p50", "Type": "double"},
    {"Name": "ok", "Label": "ok", "Type": "boolean"},
    {"Name": "ts", "Label": "ts", "Type": "timestamp"},
]


def test_parameters_become_positional_in_order_of_appearance() -> None:
    sql = (
        "SELECT ':not_me' AS s, \"x:y\" FROM radstream.telemetry -- :nor_me\n"
        "WHERE dt BETWEEN :start_date AND :end_date AND variant IN (:v, :v) AND stage = :date"
    )
    text, values = to_positional(
        sql, {"start_date": "2024-01-01", "end_date": "2024-01-31", "v": "it's", "date": "d"}
    )
    assert text == (
        "SELECT ':not_me' AS s, \"x:y\" FROM radstream.telemetry -- :nor_me\n"
        "WHERE dt BETWEEN ? AND ? AND variant IN (?, ?) AND stage = ?"
    )
    assert values == ["'2024-01-01'", "'2024-01-31'", "'it''s'", "'it''s'", "'d'"]
    assert to_positional("SELECT 1") == ("SELECT 1", [])


def test_parameter_mistakes_are_refused_before_athena_is_asked() -> None:
    with pytest.raises(QueryParamInvalid, match="no value for b"):
        to_positional("SELECT :a, :b", {"a": "1"})
    with pytest.raises(QueryParamInvalid, match="no parameter c"):
        to_positional("SELECT :a", {"a": "1", "c": "2"})
    with pytest.raises(QueryParamInvalid, match="write parameters as :name"):
        to_positional("SELECT ?")
    with pytest.raises(QuerySyntaxError):
        to_positional("SELECT FROM WHERE :a", {"a": "1"})


def test_literals_follow_the_python_type_as_duckdb_binds_it() -> None:
    assert athena_literal("x' OR 1=1 --") == "'x'' OR 1=1 --'"
    assert athena_literal("5") == "'5'"  # a string stays a string, as locally
    assert athena_literal(5) == "5"
    assert athena_literal(-2) == "-2"
    assert athena_literal(0.5) == "0.5E0"  # DOUBLE, not Trino's DECIMAL 0.5
    assert athena_literal(1e-7) == "1e-07"
    assert athena_literal(True) == "true"
    assert athena_literal(None) == "NULL"
    for value in (math.nan, math.inf):
        with pytest.raises(QueryParamInvalid):
            athena_literal(value)
    with pytest.raises(QueryParamInvalid, match="bytes"):
        athena_literal(b"x")  # type: ignore[arg-type]


def test_polls_then_reads_every_page_typed_by_column() -> None:
    pages = [
        {
            "ResultSet": {
                "Rows": [
                    _row("stage", "n", "p50", "ok", "ts"),
                    _row("infer", "3", "1.5", "true", "2024-05-01 10:00:00.000 UTC"),
                ],
                "ResultSetMetadata": {"ColumnInfo": COLUMNS},
            },
            "NextToken": "t2",
        },
        {
            # Later pages carry no header row.
            "ResultSet": {
                "Rows": [_row("store", None, None, "false", None)],
                "ResultSetMetadata": {"ColumnInfo": COLUMNS},
            }
        },
    ]
    client = FakeAthena([_state("QUEUED"), _state("RUNNING"), _state("SUCCEEDED")], pages)
    slept: list[float] = []
    runner = AthenaQueryRunner(client, workgroup="wg", poll_s=0.5, sleep=slept.append)
    result = runner.run_sql("SELECT * FROM radstream.telemetry WHERE dt = :d", {"d": "x"})
    assert result.columns == ["stage", "n", "p50", "ok", "ts"]
    assert result.rows == [
        ("infer", 3, 1.5, True, "2024-05-01 10:00:00.000 UTC"),
        ("store", None, None, False, None),
    ]
    assert slept == [0.5, 0.5]
    start = client.calls[0][1]
    assert start["WorkGroup"] == "wg"
    assert start["QueryExecutionContext"] == {"Database": DATABASE}
    assert start["QueryString"].endswith("WHERE dt = ?")
    assert start["ExecutionParameters"] == ["'x'"]
    reads = [kw for name, kw in client.calls if name == "results"]
    assert "NextToken" not in reads[0] and reads[1]["NextToken"] == "t2"


def test_a_query_without_parameters_sends_no_execution_parameters() -> None:
    page = {"ResultSet": {"Rows": [], "ResultSetMetadata": {"ColumnInfo": []}}}
    client = FakeAthena([_state("SUCCEEDED")], [page])
    AthenaQueryRunner(client, workgroup="wg").run_sql("SELECT 1")
    assert "ExecutionParameters" not in client.calls[0][1]


@pytest.mark.parametrize("state", ["FAILED", "CANCELLED"])
def test_failed_or_cancelled_raises_with_athenas_reason(state: str) -> None:
    client = FakeAthena([_state("RUNNING"), _state(state, "COLUMN_NOT_FOUND: line 1:8")])
    runner = AthenaQueryRunner(client, workgroup="wg", sleep=lambda _s: None)
    with pytest.raises(QueryFailed, match=f"{state}: COLUMN_NOT_FOUND: line 1:8") as caught:
        runner.run_sql("SELECT nope FROM radstream.telemetry")
    assert caught.value.code == "QUERY_FAILED"


def test_a_query_past_its_timeout_is_stopped() -> None:
    client = FakeAthena([_state("RUNNING")])
    runner = AthenaQueryRunner(client, workgroup="wg", poll_s=1, timeout_s=3, sleep=lambda _s: None)
    with pytest.raises(QueryFailed, match="still RUNNING after 3 s"):
        runner.run_sql("SELECT 1")
    assert client.calls[-1] == ("stop", {"QueryExecutionId": "q-1"})
    assert [name for name, _ in client.calls].count("get") == 4


def test_for_stack_needs_the_workgroup_output() -> None:
    @dataclass(frozen=True)
    class Stack(StackRef):
        given: dict[str, str] = field(default_factory=dict)

        def outputs(self) -> dict[str, str]:
            return self.given

    with pytest.raises(StackNotFound, match=WORKGROUP_OUTPUT):
        AthenaQueryRunner.for_stack(Stack("s", AwsTarget()))
    runner = AthenaQueryRunner.for_stack(
        Stack("s", AwsTarget(), {WORKGROUP_OUTPUT: "wg-s"}), poll_s=1
    )
    assert runner.workgroup == "wg-s"


# --- on ministack --------------------------------------------------------------------


@pytest.fixture(scope="module")
def lake(tmp_path_factory: pytest.TempPathFactory, standin_model: Path) -> Path:
    """The lake two real demo runs leave (as in tests/lake), one per A/B variant."""
    data_dir = tmp_path_factory.mktemp("demo")
    run_demo_lake(data_dir, standin_model, studies=14, invalid=5, variant="A")
    return run_demo_lake(data_dir, standin_model, studies=6, invalid=2, variant="B")


@pytest.fixture(scope="module")
def endpoint(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """ministack on 127.0.0.1, with dummy credentials in the environment."""
    try:
        launcher().install()
    except (OSError, subprocess.CalledProcessError) as exc:
        pytest.skip(f"ministack cannot be installed here (it needs PyPI once): {exc}")
    with running_emulator(tmp_path_factory.mktemp("ministack"), region=REGION) as emu:
        yield emu.url


def _as_athena_would(sent: list[dict[str, Any]]) -> Callable[..., None]:
    """A botocore hook doing on the client what Athena does on the server and ministack not.

    It records each request as the runner made it, then binds ``ExecutionParameters``
    into the ``?`` in order (each must be one SQL literal, as Athena requires) and maps
    Trino's ``approx_percentile`` to DuckDB's exact ``quantile_cont``, as the local
    runner's dialect does.
    """

    def hook(params: dict[str, Any], **_: Any) -> None:
        sent.append(json.loads(json.dumps(params)))
        sql = params["QueryString"]
        values = list(params.pop("ExecutionParameters", None) or [])
        edits: list[tuple[int, int, str]] = []
        tokens = Dialect.get_or_raise("athena").tokenize(sql)
        for token in tokens:
            if token.token_type == TokenType.PLACEHOLDER:
                value = values.pop(0)
                literal = sqlglot.parse_one(value, read="athena")
                if isinstance(literal, exp.Neg):
                    literal = literal.this
                assert isinstance(literal, exp.Literal | exp.Boolean | exp.Null), value
                edits.append((token.start, token.end + 1, value))
            elif token.text.lower() == "approx_percentile":
                edits.append((token.start, token.end + 1, "quantile_cont"))
        assert not values, "more ExecutionParameters than ? in the query"
        for start, end, text in reversed(edits):
            sql = sql[:start] + text + sql[end:]
        params["QueryString"] = sql

    return hook


@dataclass
class Lake:
    """The lake in the emulator, and the requests the runner sent there."""

    url: str
    local: Path
    day: str
    sent: list[dict[str, Any]]


@pytest.fixture(scope="module")
def aws_lake(endpoint: str, lake: Path) -> Lake:
    """The demo lake in ministack's S3, its Glue table, a workgroup, and a stack naming one."""
    target = AwsTarget(REGION, endpoint)
    s3 = target.client("s3")
    s3.create_bucket(Bucket=BUCKET)
    files = visible_files(lake)
    for path in files:
        # Keep dt=…/hour=… under the table location: partitions come from the path.
        key = PREFIX + path.relative_to(lake).as_posix()
        s3.put_object(Bucket=BUCKET, Key=key, Body=path.read_bytes())
    glue = target.client("glue")
    glue.create_database(DatabaseInput={"Name": DATABASE})
    glue.create_table(DatabaseName=DATABASE, TableInput=table_input(f"s3://{BUCKET}/{PREFIX}"))
    results = {"ResultConfiguration": {"OutputLocation": f"s3://{BUCKET}/athena-results/"}}
    athena = target.client("athena")
    athena.create_work_group(Name=WORKGROUP, Configuration=results)
    template = {
        "AWSTemplateFormatVersion": "2010-09-09",
        "Resources": {
            "WorkGroup": {
                "Type": "AWS::Athena::WorkGroup",
                "Properties": {"Name": f"{STACK}-wg", "WorkGroupConfiguration": results},
            }
        },
        "Outputs": {WORKGROUP_OUTPUT: {"Value": {"Ref": "WorkGroup"}}},
    }
    cfn = target.client("cloudformation")
    cfn.create_stack(StackName=STACK, TemplateBody=json.dumps(template))
    cfn.get_waiter("stack_create_complete").wait(
        StackName=STACK, WaiterConfig={"Delay": 1, "MaxAttempts": 60}
    )
    sent: list[dict[str, Any]] = []
    # The client is cached per target, so the CLI (in process) gets this hook too.
    athena.meta.events.register(
        "before-parameter-build.athena.StartQueryExecution", _as_athena_would(sent)
    )
    day = files[0].relative_to(lake).parts[0].removeprefix("dt=")
    return Lake(endpoint, lake, day, sent)


@pytest.fixture(scope="module")
def athena(aws_lake: Lake) -> AthenaQueryRunner:
    return AthenaQueryRunner(
        AwsTarget(REGION, aws_lake.url).client("athena"), workgroup=WORKGROUP, poll_s=0.05
    )


@pytest.fixture(scope="module")
def local(lake: Path) -> Iterator[LocalQueryRunner]:
    with LocalQueryRunner(lake) as runner:
        yield runner


@pytest.fixture(scope="module")
def raw_athena(aws_lake: Lake) -> AthenaQueryRunner:
    """A runner on a client of its own: ministack's Athena as it is, without the hook."""
    client = botocore.session.get_session().create_client(
        "athena", region_name=REGION, endpoint_url=aws_lake.url
    )
    return AthenaQueryRunner(client, workgroup=WORKGROUP, poll_s=0.05)


def _same_value(athena: Any, local: Any) -> bool:
    if isinstance(local, datetime):
        # Timestamps come back from Athena as text; ministack writes Python's str().
        return isinstance(athena, str) and datetime.fromisoformat(athena) == local
    if isinstance(local, float):
        return isinstance(athena, float) and athena == pytest.approx(local, rel=1e-9)
    return bool(type(athena) is type(local) and athena == local)


def _assert_same(athena: QueryResult, local: QueryResult) -> None:
    assert athena.columns == local.columns
    assert len(athena.rows) == len(local.rows), (athena.rows, local.rows)
    for a_row, l_row in zip(athena.rows, local.rows, strict=True):
        assert all(_same_value(a, b) for a, b in zip(a_row, l_row, strict=True)), (a_row, l_row)


@slow
@pytest.mark.parametrize("name", sorted(named_queries()))
def test_every_named_query_matches_the_local_runner(
    name: str, athena: AthenaQueryRunner, local: LocalQueryRunner
) -> None:
    expected = local.run_named(name)
    assert expected.rows, f"{name} returns nothing locally; the comparison would be empty"
    _assert_same(athena.run_named(name), expected)


@slow
@pytest.mark.parametrize(
    ("name", "params"),
    [
        ("stage_latency", "day"),
        ("stage_latency", {"start_date": "2020-01-01", "end_date": "2020-01-02"}),
        ("failures_by_code", "day"),
        ("success_rate", {"start_date": "2020-01-01", "end_date": "2020-01-02"}),
        ("success_rate", {"variant": "A' OR 1=1 --", "bucket_s": "60"}),
    ],
)
def test_parameters_mean_the_same_on_both_engines(
    name: str,
    params: dict[str, str] | str,
    athena: AthenaQueryRunner,
    local: LocalQueryRunner,
    aws_lake: Lake,
) -> None:
    given = {"start_date": aws_lake.day, "end_date": aws_lake.day} if params == "day" else params
    assert isinstance(given, dict)
    _assert_same(athena.run_named(name, given), local.run_named(name, given))
    query = named_queries()[name]
    text, values = to_positional(query.sql, query.bind(given))
    request = aws_lake.sent[-1]
    assert (request["QueryString"], request["ExecutionParameters"]) == (text, values)
    assert text.count("?") == len(values) > 0
    # The given values travel as parameters, never in the text (a default such as the
    # empty variant, '', is also a literal the query itself compares with).
    assert all(athena_literal(value) not in text for value in given.values())


@slow
def test_a_hostile_value_is_a_plain_value(
    athena: AthenaQueryRunner, local: LocalQueryRunner, aws_lake: Lake
) -> None:
    sql = "SELECT count(*) AS n FROM radstream.telemetry WHERE stage = :stage"
    counts = []
    for value in ["x' OR 1=1 --", "it's", "store"]:
        on_athena = athena.run_sql(sql, {"stage": value})
        _assert_same(on_athena, local.run_sql(sql, {"stage": value}))
        counts.append(on_athena.rows[0][0])
    assert counts[0] == counts[1] == 0 < counts[2]
    hostile = aws_lake.sent[-3]
    assert hostile["QueryString"].endswith("WHERE stage = ?")
    assert hostile["ExecutionParameters"] == ["'x'' OR 1=1 --'"]


@slow
def test_a_broken_query_fails_with_the_engines_reason(
    athena: AthenaQueryRunner, local: LocalQueryRunner
) -> None:
    sql = "SELECT no_such_column FROM radstream.telemetry"
    with pytest.raises(QueryFailed, match=r"FAILED: .*no_such_column") as caught:
        athena.run_sql(sql)
    assert caught.value.code == "QUERY_FAILED"
    with pytest.raises(QueryFailed, match="no_such_column"):
        local.run_sql(sql)


@slow
def test_ministack_ignores_execution_parameters(raw_athena: AthenaQueryRunner) -> None:
    # What ministack 1.5.33 does: it never reads ExecutionParameters and hands the text,
    # ? included, to DuckDB, which fails the execution for want of values.
    with pytest.raises(
        QueryFailed, match="Values were not provided for the following parameters: 1, 2"
    ):
        raw_athena.run_named("success_rate")


@slow
def test_ministack_runs_athena_sql_untranslated(
    raw_athena: AthenaQueryRunner, local: LocalQueryRunner
) -> None:
    # No sqlglot on ministack's side: what DuckDB happens to share with Trino runs...
    sql = (
        "SELECT stage, count(*) AS n, count_if(status = 'ok') AS ok, arbitrary(stage) AS s, "
        "max(date_diff('millisecond', start_ts, end_ts)) AS longest_ms "
        "FROM radstream.telemetry GROUP BY stage ORDER BY stage"
    )
    _assert_same(raw_athena.run_sql(sql), local.run_sql(sql))
    # ...and Trino's approx_percentile does not exist there.
    with pytest.raises(QueryFailed, match="approx_percentile does not exist"):
        raw_athena.run_sql(
            "SELECT approx_percentile(duration_ms, 0.5) AS p FROM radstream.telemetry"
        )


@slow
def test_cli_query_runs_on_the_stacks_workgroup(
    aws_lake: Lake, local: LocalQueryRunner, tmp_path: Path
) -> None:
    common = ["--region", REGION, "--endpoint-url", aws_lake.url, "--data-dir", str(tmp_path)]
    done = CliRunner().invoke(
        app, ["query", "success_rate", "--stack", STACK, "--format", "json", *common]
    )
    assert done.exit_code == 0, done.output
    assert json.loads(done.stdout) == local.run_named("success_rate").records()
    # The stack's own workgroup ran it, not the one the other tests use.
    listed = (
        AwsTarget(REGION, aws_lake.url)
        .client("athena")
        .list_query_executions(WorkGroup=f"{STACK}-wg")
    )
    assert len(listed["QueryExecutionIds"]) == 1
    missing = CliRunner().invoke(app, ["query", "success_rate", "--stack", "nope", *common])
    assert missing.exit_code == 2 and "STACK_NOT_FOUND" in missing.output


@slow
@pytest.mark.parametrize("name", sorted(named_queries()))
def test_the_emulator_mode_needs_no_hook(
    name: str, raw_athena: AthenaQueryRunner, local: LocalQueryRunner, aws_lake: Lake
) -> None:
    """``sql_engine="duckdb"`` (what ``for_stack`` picks with an endpoint URL): the DuckDB
    translation and literal values, on ministack as it is, give the local answers."""
    emulated = AthenaQueryRunner(
        raw_athena._client, workgroup=WORKGROUP, poll_s=0.05, sql_engine="duckdb"
    )
    params = {"start_date": aws_lake.day, "end_date": aws_lake.day}
    query = named_queries()[name]
    given = {k: v for k, v in params.items() if k in query.params}
    _assert_same(emulated.run_named(name, given), local.run_named(name, given))
    hostile = "SELECT count(*) AS n FROM radstream.telemetry WHERE stage = :stage"
    assert emulated.run_sql(hostile, {"stage": "x' OR 1=1 --"}).rows == [(0,)]
