"""The embedded engine's parts, wired for one process: database, executor and store."""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass

from radstream.errors import DatabaseUnavailable, StoreUnavailable
from radstream.local.database import connect
from radstream.local.executor import Executor
from radstream.local.store import FolderStore
from radstream.settings import Settings


@dataclass
class LocalEngine:
    """What any process needs to upload to, or work for, the local pipeline."""

    settings: Settings
    conn: sqlite3.Connection
    executor: Executor
    store: FolderStore

    @classmethod
    def open(cls, settings: Settings) -> LocalEngine:
        """Open (creating if needed) the engine under ``settings.data_dir``.

        A database or folder that cannot be opened or created (a full disk, a read-only
        mount) raises :class:`DatabaseUnavailable` or :class:`StoreUnavailable`, which the
        CLI reports as one message, not a traceback.
        """
        try:
            conn = connect(settings.db_path, fsync=settings.engine.fsync)
        except sqlite3.Error as exc:
            raise DatabaseUnavailable(
                f"cannot open the engine database {settings.db_path}: {exc}"
            ) from exc
        except OSError as exc:
            raise DatabaseUnavailable(
                f"cannot open the engine database {settings.db_path}: {exc.strerror or exc}"
            ) from exc
        executor = Executor(
            conn, lease_s=settings.engine.lease_s, max_takeovers=settings.engine.max_takeovers
        )
        try:
            store = FolderStore(
                settings.data_dir / "buckets", listener=executor, fsync=settings.engine.fsync
            )
        except OSError as exc:
            conn.close()
            raise StoreUnavailable(
                f"cannot open the object store under {settings.data_dir}: {exc.strerror or exc}"
            ) from exc
        return cls(settings=settings, conn=conn, executor=executor, store=store)

    def close(self) -> None:
        """Close the database connection."""
        self.conn.close()

    def __enter__(self) -> LocalEngine:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
