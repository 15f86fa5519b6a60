"""One model instance: a worker process that loads the ONNX model once and runs batches.

The parent (``radstream.serving.server``) talks to it over a ``multiprocessing`` Pipe:

* worker → parent, once: ``("ready", pid)`` after loading, or
  ``("error", code, message, retryable)`` if loading failed (then the worker exits);
* parent → worker: a float32 batch ``[N, C, S, S]``, or ``None`` to stop;
* worker → parent, per batch: ``("ok", logits)`` or ``("error", code, message, retryable)``.

This module imports only numpy and the model runtime, so a spawned worker starts quickly.
"""

from __future__ import annotations

import signal
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

from radstream.errors import RadStreamError, error_from_exception


def _error_reply(exc: BaseException) -> tuple[str, str, str, bool]:
    if isinstance(exc, ValueError):
        return ("error", "KSERVE_BAD_REQUEST", str(exc), False)
    err: RadStreamError = error_from_exception(exc)
    return ("error", err.code, err.message, err.retryable)


def worker_main(conn: Connection, model_path: str, intra_op_threads: int) -> None:
    """Entry point of an instance process (the target of a spawned ``Process``)."""
    # The parent owns Ctrl-C and SIGTERM: it stops its instances itself, in order.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    import os

    from radstream.model.runtime import OnnxModel

    try:
        model = OnnxModel.load(Path(model_path), intra_op_threads=intra_op_threads)
    except BaseException as exc:
        conn.send(_error_reply(exc))
        conn.close()
        return
    conn.send(("ready", os.getpid()))
    while True:
        try:
            batch: Any = conn.recv()
        except (EOFError, OSError):
            return  # the parent went away
        if batch is None:
            conn.close()
            return
        try:
            reply: tuple[Any, ...] = ("ok", model.predict_logits(batch))
        except Exception as exc:
            reply = _error_reply(exc)
        try:
            conn.send(reply)
        except (BrokenPipeError, OSError):
            return
