"""``radstream dashboard``: the live dashboard over the local telemetry lake, or a stack's."""

from __future__ import annotations

import ipaddress
from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape

from radstream.cli.app import (
    AwsEndpointOpt,
    DataDir,
    RegionOpt,
    app,
    console,
    settings_for,
    stack_ref,
)
from radstream.cli.tokens import read_token


def dashboard_token(token: str | None, token_file: Path | None) -> str | None:
    """The token the dashboard requires: from ``--token-file`` or ``--token``; None for none."""
    return read_token(token, token_file)


def is_loopback(host: str) -> bool:
    """Whether ``host`` is reachable from this machine only."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


@app.command()
def dashboard(
    host: Annotated[str, typer.Option(help="Address to listen on")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on")] = 8050,
    data_dir: DataDir = None,
    token: Annotated[
        str | None, typer.Option(help="Require this token (Bearer header, or open /?token=…)")
    ] = None,
    token_file: Annotated[
        Path | None, typer.Option(help="Read the token from this file (kept off the command line)")
    ] = None,
    refresh_s: Annotated[
        float | None,
        typer.Option(
            min=1.0, help="Seconds between the page's refreshes [default: 5; 60 with --stack]"
        ),
    ] = None,
    stack: Annotated[
        str | None,
        typer.Option("--stack", help="Show this deployed stack: its queries run on its Athena"),
    ] = None,
    region: RegionOpt = None,
    endpoint_url: AwsEndpointOpt = None,
) -> None:
    """Serve a live dashboard of the lake's named queries (offline: nothing from a CDN)."""
    import uvicorn

    from radstream.dashboard.app import REFRESH_S, create_app
    from radstream.dashboard.engine import LocalEngineWatch

    secret = dashboard_token(token, token_file)
    settings = settings_for(data_dir)
    if stack:
        from radstream.dashboard.stack import STACK_REFRESH_S, stack_dashboard

        # Fails here, before serving, when the stack or its workgroup is not there.
        served = stack_dashboard(
            stack_ref(settings, stack, region, endpoint_url),
            token=secret,
            refresh_s=refresh_s or STACK_REFRESH_S,
        )
        what = f"stack {stack}"
    else:
        served = create_app(
            settings.lake_dir,
            engine=LocalEngineWatch(settings.db_path),
            token=secret,
            refresh_s=refresh_s or REFRESH_S,
        )
        what = str(settings.lake_dir)
    if secret is None and not is_loopback(host):
        console.print(
            f"[yellow]warning[/yellow]: listening on {escape(host)} without a token: anyone who "
            "reaches this address sees the dashboard; give --token-file"
        )
    shown = f"[{host}]" if ":" in host else host
    console.print(
        f"dashboard of {escape(what)} on http://{escape(shown)}:{port}/"
        + ("?token=…" if secret else "")
    )
    uvicorn.run(served, host=host, port=port, log_level="warning")
