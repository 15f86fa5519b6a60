"""The named queries of ``athena_queries.sql``: parsed, listed, and given their parameters."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from functools import cache
from importlib import resources

from radstream.errors import ConfigInvalid, RadStreamError

QUERY_FILE = "athena_queries.sql"
_HEADER = re.compile(r"^--\s*(name|description|params):\s*(.*?)\s*$")
_PLACEHOLDER = re.compile(r"(?<![:\w]):([A-Za-z_][A-Za-z0-9_]*)")
_DATE = re.compile(r"\d{4}-\d{2}-\d{2}")


class QueryUnknown(RadStreamError):
    """No named query has that name."""

    code = "QUERY_UNKNOWN"
    hint = "List the queries with `radstream query --list`."


class QueryParamInvalid(RadStreamError):
    """A query parameter is missing, unknown or malformed."""

    code = "QUERY_PARAM_INVALID"
    hint = "Pass parameters as --param name=value; dates are YYYY-MM-DD."


@dataclass(frozen=True)
class NamedQuery:
    """One query of the file, in Athena SQL."""

    name: str
    description: str
    sql: str
    defaults: dict[str, str] = field(default_factory=dict)

    @property
    def params(self) -> list[str]:
        """Parameter names used in the SQL, in order of first use."""
        return list(dict.fromkeys(_PLACEHOLDER.findall(self.sql)))

    def bind(self, given: dict[str, str]) -> dict[str, str]:
        """Values for every parameter: given ones over defaults; unknown or missing refused."""
        unknown = set(given) - set(self.params)
        if unknown:
            raise QueryParamInvalid(
                f"query {self.name} has no parameter {', '.join(sorted(unknown))}; "
                f"it takes {', '.join(self.params) or 'none'}"
            )
        values = {**self.defaults, **given}
        missing = [p for p in self.params if p not in values]
        if missing:
            raise QueryParamInvalid(f"query {self.name} needs {', '.join(missing)}")
        for key, value in values.items():
            if key.endswith("_date") and not _DATE.fullmatch(value):
                raise QueryParamInvalid(f"{key}={value!r} is not a date (YYYY-MM-DD)")
        return {p: values[p] for p in self.params}


def parse_queries(text: str) -> dict[str, NamedQuery]:
    """Split a query file on ``-- name:`` headers."""
    queries: dict[str, NamedQuery] = {}
    header: dict[str, str] = {}
    body: list[str] = []

    def flush() -> None:
        if "name" not in header:
            return
        sql = "\n".join(body).strip().rstrip(";").strip()
        if not sql or "description" not in header:
            raise ConfigInvalid(f"query {header['name']} lacks a description or SQL")
        defaults = dict(
            item.strip().split("=", 1)
            for item in header.get("params", "").split(",")
            if item.strip()
        )
        queries[header["name"]] = NamedQuery(header["name"], header["description"], sql, defaults)

    for line in text.splitlines():
        match = _HEADER.match(line)
        if match and match.group(1) == "name":
            flush()
            header, body = {"name": match.group(2)}, []
        elif match and "name" in header and not body:
            header[match.group(1)] = match.group(2)
        elif "name" in header:
            body.append(line)
    flush()
    return queries


@cache
def named_queries() -> dict[str, NamedQuery]:
    """The queries shipped with RadStream, by name."""
    text = resources.files("radstream.lake").joinpath(QUERY_FILE).read_text(encoding="utf-8")
    return parse_queries(text)


def get_query(name: str) -> NamedQuery:
    """A shipped query by name, or ``QueryUnknown``."""
    try:
        return named_queries()[name]
    except KeyError:
        raise QueryUnknown(f"no query named {name!r}") from None
