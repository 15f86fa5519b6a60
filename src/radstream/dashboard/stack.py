"""The dashboard of a deployed stack: the same named queries, run on the stack's Athena.

Nothing is computed differently on a stack: the figures are the queries of
``athena_queries.sql`` with the same parameters, sent to the stack's Athena workgroup (its
``AthenaWorkGroup`` output) over its Glue table, by
:class:`~radstream.aws.athena_runner.AthenaQueryRunner`. The engine panel shows the state
machine's executions by status.
"""

from __future__ import annotations

from contextlib import nullcontext

from starlette.applications import Starlette

from radstream.aws.athena_runner import AthenaQueryRunner
from radstream.aws.session import StackRef
from radstream.dashboard.app import create_app
from radstream.dashboard.engine import StackEngineWatch
from radstream.dashboard.figures import QuerySource


def athena_source(runner: AthenaQueryRunner) -> QuerySource:
    """Every refresh runs on ``runner`` (a botocore client is safe to share across threads)."""
    return lambda: nullcontext(runner)


STACK_REFRESH_S = 60.0
"""A stack's page refreshes every minute by default: each refresh runs about fifteen Athena
queries, each billed (10 MB at least) and each taking seconds."""

PARALLEL_QUERIES = 8
"""A refresh's figure queries run this many at once (Athena runs them side by side; the
account's limit on concurrent queries is far above)."""


def stack_dashboard(
    stack: StackRef,
    *,
    token: str | None = None,
    refresh_s: float = STACK_REFRESH_S,
    poll_s: float = 0.5,
) -> Starlette:
    """The dashboard app over ``stack``. Raises
    :class:`~radstream.errors.StackNotFound` when there is no such stack or workgroup."""
    runner = AthenaQueryRunner.for_stack(stack, poll_s=poll_s)
    return create_app(
        athena_source(runner),
        engine=StackEngineWatch(stack),
        parallel=PARALLEL_QUERIES,
        token=token,
        refresh_s=refresh_s,
    )
