"""``dicom listen``: a DICOM C-STORE receiver that feeds the local pipeline."""

from __future__ import annotations

import logging
import signal
import threading
from types import FrameType
from typing import Annotated

import typer
from rich.markup import escape

from radstream.cli.app import DataDir, app, console, out, settings_for
from radstream.cli.handler import CliState
from radstream.logs import configure

dicom_app = typer.Typer(help="DICOM networking: receive images from modalities and PACS.")
app.add_typer(dicom_app, name="dicom")


@dicom_app.command(
    help="Receive images by DICOM C-STORE (CR, DX, Secondary Capture; C-ECHO answered) and "
    "put each one, with a sidecar made from its header, into the local pipeline: a running "
    "`radstream serve` processes it, or a later `radstream run --until-idle`. Stop with "
    "Ctrl-C or SIGTERM."
)
def listen(
    ctx: typer.Context,
    host: Annotated[
        str, typer.Option(help="Address to listen on (0.0.0.0: every interface)")
    ] = "127.0.0.1",
    port: Annotated[int, typer.Option(min=0, max=65535, help="TCP port")] = 11112,
    ae_title: Annotated[str, typer.Option("--ae-title", help="This receiver's AE title")] = (
        "RADSTREAM"
    ),
    allow_ae: Annotated[
        list[str] | None,
        typer.Option(
            "--allow-ae", help="Accept associations only from this calling AE title (repeatable)"
        ),
    ] = None,
    max_associations: Annotated[
        int, typer.Option(min=1, help="Associations served at once; more are refused")
    ] = 4,
    data_dir: DataDir = None,
) -> None:
    """Run the C-STORE receiver until interrupted."""
    from radstream.dicom import InstanceWriter, Receiver, ReceiverConfig, StoredInstance
    from radstream.local.engine import LocalEngine

    state = ctx.find_root().obj
    if isinstance(state, CliState):
        configure(state.log_level, state.log_format)
    # pynetdicom narrates every PDU at INFO; its warnings (refused associations) remain.
    logging.getLogger("pynetdicom").setLevel(logging.WARNING)
    settings = settings_for(data_dir)
    config = ReceiverConfig(
        host=host,
        port=port,
        ae_title=ae_title,
        allow_ae=tuple(allow_ae or ()),
        max_associations=max_associations,
        max_instance_bytes=settings.imaging.max_file_bytes,
    )

    def stored(instance: StoredInstance) -> None:
        out.print(f"stored   {escape(instance.sidecar.key)}", highlight=False)

    stop = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        stop.set()

    with LocalEngine.open(settings) as engine:
        receiver = Receiver(config, InstanceWriter(engine.store), on_stored=stored)
        receiver.start()
        previous = {s: signal.signal(s, on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
        try:
            bound_host, bound_port = receiver.address
            allowed = ", ".join(config.allow_ae) or "any"
            console.print(
                f"listening on {bound_host}:{bound_port} as {escape(ae_title)} "
                f"(calling AE: {escape(allowed)}); data in {escape(str(settings.data_dir))}"
            )
            while not stop.wait(0.5):
                pass
        finally:
            for signum, handler in previous.items():
                signal.signal(signum, handler)
            receiver.stop()
    console.print("receiver stopped")
