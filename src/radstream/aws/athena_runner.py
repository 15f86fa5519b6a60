"""Run RadStream's Athena SQL on Athena itself: the named queries, against a deployed stack.

The local runner (:mod:`radstream.lake.duckdb_runner`) translates the very same SQL to
DuckDB; this one sends it to Athena as written and returns the same :class:`QueryResult`,
so ``radstream query`` prints both alike.

Parameters stay parameters on both engines. Locally ``:name`` is a DuckDB prepared
parameter; here it becomes a positional ``?`` whose value travels in Athena's
``ExecutionParameters``. Athena inserts each of those strings as a SQL literal, so each
value is written as the literal that means what the local binding means: a ``str`` binds
as VARCHAR in DuckDB, so it is sent quoted (``'it''s'``), never spliced into the query.
"""

from __future__ import annotations

import itertools
import math
import re
import time
from collections.abc import Callable, Mapping
from typing import Any, Literal

from botocore.exceptions import BotoCoreError, ClientError
from sqlglot import TokenType, exp
from sqlglot.dialects.dialect import Dialect

from radstream.aws.session import StackRef
from radstream.errors import QueryFailed, StackNotFound
from radstream.lake.dialect import QuerySyntaxError, athena_to_duckdb, parse_athena
from radstream.lake.duckdb_runner import QueryResult
from radstream.lake.glue import DATABASE, TABLE
from radstream.lake.queries import QueryParamInvalid, get_query

__all__ = [
    "DATABASE_OUTPUT",
    "WORKGROUP_OUTPUT",
    "AthenaQueryRunner",
    "ParamValue",
    "athena_literal",
    "positional_names",
    "qualify",
    "to_inline",
    "to_positional",
]

SqlEngine = Literal["athena", "duckdb"]
"""What runs the SQL behind the Athena API: Athena (Trino), or DuckDB in an emulator."""

ParamValue = str | int | float | bool | None
"""What a query parameter may be; named queries always bind ``str`` (see ``NamedQuery.bind``)."""

WORKGROUP_OUTPUT = "AthenaWorkGroup"
"""The stack output that names the stack's Athena workgroup."""
DATABASE_OUTPUT = "GlueDatabase"
"""The stack output that names the stack's Glue database (one per stack)."""
_TABLE_REFERENCE = re.compile(rf"\b{DATABASE}\.{TABLE}\b")

_PAGE_SIZE = 1000  # GetQueryResults' maximum
AthenaJson = dict[str, Any]
"""A request to or reply from Athena's API (botocore speaks plain JSON)."""
_FINAL_STATES = frozenset({"SUCCEEDED", "FAILED", "CANCELLED"})
_INT_TYPES = frozenset({"tinyint", "smallint", "integer", "int", "bigint"})
_FLOAT_TYPES = frozenset({"double", "float", "real", "decimal"})
_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
# Tokens whose text may look like a name but is not one: ':"x"' and ":'x'" are no parameters.
_NOT_NAMES = frozenset({TokenType.STRING, TokenType.IDENTIFIER, TokenType.NATIONAL_STRING})


def athena_literal(value: ParamValue) -> str:
    """The SQL literal Athena should insert for ``value``, typed as DuckDB would bind it.

    DuckDB types a prepared parameter by its Python type, so the literal follows the type,
    never the text: ``"5"`` stays the string ``'5'`` (as it does locally), ``5`` is ``5``.
    """
    if value is None:
        return "NULL"
    if isinstance(value, bool):  # before int: bool is an int subclass
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if not math.isfinite(value):
            raise QueryParamInvalid(f"{value!r} has no SQL literal")
        text = repr(value)
        # Trino reads 0.5 as DECIMAL; an exponent makes it DOUBLE, which is what DuckDB
        # binds a Python float as.
        return text if "e" in text else f"{text}E0"
    if isinstance(value, str):
        return "'" + value.replace("'", "''") + "'"
    raise QueryParamInvalid(f"a query parameter cannot be a {type(value).__name__}")


def _placeholders(athena_sql: str) -> list[tuple[int, int, str]]:
    """``(start, end, name)`` of every ``:name`` in the text, in order of appearance.

    sqlglot's tokenizer knows string literals, quoted identifiers and comments, so a ``:``
    inside those is no placeholder. Tokens keep their offsets, which the parse tree does
    not, so the text can be edited in place and reaches Athena otherwise as written.
    """
    tokens = Dialect.get_or_raise("athena").tokenize(athena_sql)
    found: list[tuple[int, int, str]] = []
    for colon, name in itertools.pairwise(tokens):
        if (
            colon.token_type == TokenType.COLON
            and name.token_type not in _NOT_NAMES  # a keyword (":date") is a name here
            and _NAME.fullmatch(name.text)
            and name.start == colon.end + 1  # ":name", not ": name"
        ):
            found.append((colon.start, name.end + 1, name.text))
    if any(t.token_type == TokenType.PLACEHOLDER for t in tokens):
        raise QueryParamInvalid("write parameters as :name; a bare ? cannot be given a value")
    return found


def positional_names(athena_sql: str) -> list[str]:
    """The parameter name behind each ``?`` of :func:`to_positional`'s text, in order."""
    return [name for _, _, name in _placeholders(athena_sql)]


def to_positional(
    athena_sql: str, params: Mapping[str, ParamValue] | None = None
) -> tuple[str, list[str]]:
    """Athena SQL with each ``:name`` turned into ``?``, and the ``ExecutionParameters``.

    A name used twice gives two ``?`` and two values, in the order they appear. Missing or
    unused parameters are refused, as DuckDB refuses them locally.
    """
    return _bind(athena_sql, params, inline=False)


def to_inline(athena_sql: str, params: Mapping[str, ParamValue] | None = None) -> str:
    """Athena SQL with each ``:name`` replaced by its literal (as Athena binds a ``?``).

    For an emulated Athena that ignores ``ExecutionParameters`` (ministack's). The values
    are the same quoted literals that travel as parameters to the real service.
    """
    sql, _ = _bind(athena_sql, params, inline=True)
    return sql


def _bind(
    athena_sql: str, params: Mapping[str, ParamValue] | None, *, inline: bool
) -> tuple[str, list[str]]:
    given = dict(params or {})
    tree = parse_athena(athena_sql)  # a syntax error is reported as the local runner does
    found = _placeholders(athena_sql)
    parsed = sorted(p.name for p in tree.find_all(exp.Placeholder))
    if parsed != sorted(name for _, _, name in found):
        # The tokens and the parser disagree on what is a parameter: do not guess.
        raise QuerySyntaxError(f"cannot tell the parameters of this query apart: {parsed}")
    names = list(dict.fromkeys(name for _, _, name in found))
    missing = [n for n in names if n not in given]
    if missing:
        raise QueryParamInvalid(f"no value for {', '.join(missing)}")
    unused = sorted(set(given) - set(names))
    if unused:
        raise QueryParamInvalid(f"the query has no parameter {', '.join(unused)}")
    pieces: list[str] = []
    values: list[str] = []
    last = 0
    for start, end, name in found:
        literal = athena_literal(given[name])
        pieces += [athena_sql[last:start], literal if inline else "?"]
        values.append(literal)
        last = end
    pieces.append(athena_sql[last:])
    return "".join(pieces), [] if inline else values


def _convert(text: str | None, athena_type: str) -> Any:
    """One result value: Athena returns every datum as text; the column type says what it is."""
    if text is None:
        return None
    base = athena_type.lower().split("(")[0].strip()
    if base in _INT_TYPES:
        return int(text)
    if base in _FLOAT_TYPES:
        return float(text)
    if base == "boolean":
        return text.lower() == "true"
    return text


def qualify(sql: str, database: str) -> str:
    """``sql`` with the shipped queries' ``radstream.telemetry`` naming the table in
    ``database`` instead: each stack has its own Glue database (two stacks side by side)."""
    return _TABLE_REFERENCE.sub(f"{database}.{TABLE}", sql)


class AthenaQueryRunner:
    """Athena, through a botocore ``athena`` client, in one workgroup.

    The workgroup supplies the result location (and its limits), so queries need no
    ``ResultConfiguration`` of their own.
    """

    def __init__(
        self,
        client: Any,
        *,
        workgroup: str,
        database: str = DATABASE,
        poll_s: float = 0.2,
        timeout_s: float = 300,
        sleep: Callable[[float], None] = time.sleep,
        sql_engine: SqlEngine = "athena",
    ) -> None:
        self._client = client
        self.sql_engine = sql_engine
        self.workgroup = workgroup
        self.database = database
        self._poll_s = poll_s
        self._timeout_s = timeout_s
        self._sleep = sleep

    @classmethod
    def for_stack(cls, stack: StackRef, **options: Any) -> AthenaQueryRunner:
        """A runner on ``stack``'s workgroup (its ``AthenaWorkGroup`` output).

        ``options`` go to the constructor (``poll_s``, ``timeout_s``, …). Raises
        :class:`~radstream.errors.StackNotFound` when there is no such stack or output.
        """
        outputs = stack.outputs()
        workgroup = outputs.get(WORKGROUP_OUTPUT)
        if not workgroup:
            raise StackNotFound(
                f"stack {stack.name!r} has no {WORKGROUP_OUTPUT} output; is it a RadStream stack?"
            )
        # Emulators (an --endpoint-url) run Athena's SQL on DuckDB: ministack does.
        options.setdefault("sql_engine", "duckdb" if stack.target.endpoint_url else "athena")
        if outputs.get(DATABASE_OUTPUT):
            options.setdefault("database", outputs[DATABASE_OUTPUT])
        return cls(stack.target.client("athena"), workgroup=workgroup, **options)

    def run_named(self, name: str, params: Mapping[str, str] | None = None) -> QueryResult:
        """Run a query of ``athena_queries.sql`` by name, defaults filled in."""
        query = get_query(name)
        return self.run_sql(query.sql, query.bind(dict(params or {})))

    def run_sql(
        self, athena_sql: str, params: Mapping[str, ParamValue] | None = None
    ) -> QueryResult:
        """Run Athena SQL with ``:name`` parameters bound; wait for it; return its rows.

        Raises :class:`~radstream.errors.QueryFailed` when Athena refuses, fails or
        cancels the query, or it runs past ``timeout_s`` (it is then stopped).
        """
        athena_sql = qualify(athena_sql, self.database)
        if self.sql_engine == "duckdb":
            # An emulated Athena that runs the text on DuckDB as sent: give it the same
            # DuckDB SQL the local runner runs, values bound as literals.
            sql, values = athena_to_duckdb(to_inline(athena_sql, params)), list[str]()
        else:
            sql, values = to_positional(athena_sql, params)
        request: AthenaJson = {
            "QueryString": sql,
            "WorkGroup": self.workgroup,
            "QueryExecutionContext": {"Database": self.database},
        }
        if values:  # Athena refuses an empty list
            request["ExecutionParameters"] = values
        start = self._call("start_query_execution", **request)
        query_id: str = start["QueryExecutionId"]
        execution = self._wait(query_id)
        return self._results(query_id, execution.get("StatementType") == "DML")

    def _call(self, operation: str, **kwargs: Any) -> AthenaJson:
        # A refusal (bad workgroup, malformed query, throttling past botocore's retries)
        # is a failed query to the user, with Athena's own words.
        try:
            reply: AthenaJson = getattr(self._client, operation)(**kwargs)
        except ClientError as exc:
            raise QueryFailed(f"Athena refused {operation}: {exc}") from None
        except BotoCoreError as exc:
            raise QueryFailed(f"cannot reach Athena: {exc}") from None
        return reply

    def _wait(self, query_id: str) -> AthenaJson:
        """Poll until the query ends; its ``QueryExecution`` once it succeeded."""
        deadline = time.monotonic() + self._timeout_s
        waited = 0.0
        while True:
            reply = self._call("get_query_execution", QueryExecutionId=query_id)
            execution: AthenaJson = reply["QueryExecution"]
            status = execution.get("Status", {})
            state = status.get("State", "")
            if state == "SUCCEEDED":
                return execution
            if state in _FINAL_STATES:
                reason = status.get("StateChangeReason") or "no reason given"
                raise QueryFailed(f"Athena query {query_id} {state}: {reason}", query_id=query_id)
            # The clock bounds real runs; the sum of sleeps bounds runs with a fake sleep.
            if time.monotonic() >= deadline or waited >= self._timeout_s:
                # Stop it, or it keeps scanning (and billing) after we gave up.
                self._call("stop_query_execution", QueryExecutionId=query_id)
                raise QueryFailed(
                    f"Athena query {query_id} still {state or 'pending'} after "
                    f"{self._timeout_s:g} s; stopped it",
                    query_id=query_id,
                )
            self._sleep(self._poll_s)
            waited += self._poll_s

    def _results(self, query_id: str, has_header: bool) -> QueryResult:
        """Every page of the results, values typed by the result set's column types."""
        columns: list[str] = []
        types: list[str] = []
        rows: list[tuple[Any, ...]] = []
        token: str | None = None
        first = True
        while True:
            request: AthenaJson = {"QueryExecutionId": query_id, "MaxResults": _PAGE_SIZE}
            if token:
                request["NextToken"] = token
            page = self._call("get_query_results", **request)
            result_set = page.get("ResultSet", {})
            if first:
                info = result_set.get("ResultSetMetadata", {}).get("ColumnInfo", [])
                columns = [c.get("Label") or c["Name"] for c in info]
                types = [c.get("Type", "varchar") for c in info]
            page_rows = result_set.get("Rows", [])
            if first and has_header:
                page_rows = page_rows[1:]  # a SELECT's first row repeats the column names
            first = False
            for row in page_rows:
                data = row.get("Data", [])
                rows.append(
                    tuple(
                        _convert(d.get("VarCharValue"), t) for d, t in zip(data, types, strict=True)
                    )
                )
            token = page.get("NextToken")
            if not token:
                return QueryResult(columns=columns, rows=rows)
