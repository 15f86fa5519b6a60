"""One model instance: a worker process that loads the ONNX model once and runs batches.

The parent (``radstream.serving.instances``) talks to it over a ``multiprocessing`` Pipe:

* worker → parent, once: ``("ready", pid)`` after loading, or
  ``("error", code, message, retryable)`` if loading failed (then the worker exits);
* parent → worker: a float32 batch ``[N, C, S, S]``, or ``None`` to stop;
* worker → parent, per batch: ``("ok", logits)`` or ``("error", code, message, retryable)``.

This module imports only numpy and the model runtime, so a spawned worker starts quickly.
"""

from __future__ import annotations

import os
import signal
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Literal

import numpy as np
import numpy.typing as npt

from radstream.errors import RadStreamError, error_from_exception

ReadyReply = tuple[Literal["ready"], int]
OkReply = tuple[Literal["ok"], npt.NDArray[np.float32]]
ErrorReply = tuple[Literal["error"], str, str, bool]
"""``("error", code, message, retryable)``: a typed error, rebuilt by the parent."""
WorkerReply = ReadyReply | OkReply | ErrorReply
Batch = npt.NDArray[np.float32] | None
"""What the parent sends: a batch, or None to stop."""


def error_reply(exc: BaseException) -> ErrorReply:
    """The reply that reports ``exc`` to the parent (a ValueError is a bad request)."""
    if isinstance(exc, ValueError):
        return ("error", "KSERVE_BAD_REQUEST", str(exc), False)
    err: RadStreamError = error_from_exception(exc)
    return ("error", err.code, err.message, err.retryable)


def worker_main(
    conn: Connection,
    model_path: str,
    intra_op_threads: int,
    precision: str = "fp32",
    runtime: str = "onnxruntime",
    allow_unverified: bool = False,
) -> None:
    """Entry point of an instance process (the target of a spawned ``Process``).

    The model is loaded as the pipeline's workers load it (runtime, precision and the
    fidelity gate of ``radstream.model.backends``).
    """
    # The parent owns Ctrl-C and SIGTERM: it stops its instances itself, in order.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    from radstream.model.backends import load_backend

    try:
        model = load_backend(
            Path(model_path),
            precision=precision,
            runtime=runtime,
            intra_op_threads=intra_op_threads,
            allow_unverified=allow_unverified,
        )
    except BaseException as exc:
        conn.send(error_reply(exc))
        conn.close()
        return
    ready: ReadyReply = ("ready", os.getpid())
    conn.send(ready)
    while True:
        try:
            batch: Batch = conn.recv()
        except (EOFError, OSError):
            return  # the parent went away
        if batch is None:
            conn.close()
            return
        reply: OkReply | ErrorReply
        try:
            reply = ("ok", model.predict_logits(batch))
        except Exception as exc:
            reply = error_reply(exc)
        try:
            conn.send(reply)
        except (BrokenPipeError, OSError):
            return
