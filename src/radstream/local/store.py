"""Folder object store: ``{data_dir}/buckets/{bucket}/{key}``.

Writes go to a temporary file in the bucket's ``.tmp`` folder and are renamed into place,
so a reader never sees half an object, even if the writer is killed. Each put then records
an "object created" event in the engine database, which is how an upload made by one
process reaches the workers of another.

With ``fsync=True`` an object is durable when ``put`` returns: its content is fsynced before
the rename, and the folder that holds it after (a rename lives in the directory, so without
that a power loss can bring back the old entry or none), as are the parents of any folder
the put created. ``delete`` fsyncs the folder too, so an outcome replaced by the opposite
one stays replaced.

Storage faults (a read-only folder, a full disk, a denied permission, an I/O error) raise
:class:`~radstream.errors.StoreUnavailable`, a retryable error that the runner retries for
the outage budget, never a bare ``OSError`` that would end the worker; an event that the
database cannot record raises :class:`~radstream.errors.DatabaseUnavailable`.
"""

from __future__ import annotations

import errno
import hashlib
import os
import sqlite3
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Protocol

from radstream.errors import DatabaseUnavailable, StoreObjectMissing, StoreUnavailable
from radstream.layout import STORE_BUCKETS, check_bucket, check_key
from radstream.stages.ports import ObjectInfo

_TMP = ".tmp"
_FILE_MODE = 0o600
_FOLDER_MODE = 0o700


class ObjectCreatedListener(Protocol):
    """Receives an event after every successful put."""

    def object_created(self, info: ObjectInfo) -> None:
        """Record that ``info`` now exists."""
        ...


class FolderStore:
    """An :class:`~radstream.stages.ports.ObjectStore` on the local file system."""

    def __init__(
        self,
        root: Path,
        listener: ObjectCreatedListener | None = None,
        *,
        fsync: bool = False,
        buckets: tuple[str, ...] = STORE_BUCKETS,
    ) -> None:
        self.root = root
        self.buckets = buckets
        self._listener = listener
        # fsync makes objects survive power loss, not just process death; it costs
        # a few ms per put on most disks, so it is opt-in.
        self._fsync = fsync
        # Objects are medical images and their results: private to the user (0700
        # folders, 0600 files), whatever the umask would allow.
        root.mkdir(mode=_FOLDER_MODE, parents=True, exist_ok=True)
        for bucket in buckets:
            (root / bucket).mkdir(mode=_FOLDER_MODE, exist_ok=True)
            (root / bucket / _TMP).mkdir(mode=_FOLDER_MODE, exist_ok=True)

    def path(self, bucket: str, key: str) -> Path:
        """File-system path of an object (validated: it cannot leave the bucket)."""
        return self.root / check_bucket(bucket, self.buckets) / check_key(key)

    def put(self, bucket: str, key: str, data: bytes) -> ObjectInfo:
        """Write ``data`` atomically, then raise the object-created event."""
        target = self.path(bucket, key)
        tmp = self.root / bucket / _TMP / uuid.uuid4().hex
        with storage_errors("write", bucket, key):
            try:
                self._write(tmp, target, data)
            except BaseException:
                # A full disk leaves a partial temporary file: do not let it fill more.
                tmp.unlink(missing_ok=True)
                raise
            modified = target.stat().st_mtime
        info = ObjectInfo(
            bucket=bucket, key=key, etag=etag_of(data), size=len(data), modified=modified
        )
        if self._listener is not None:
            try:
                self._listener.object_created(info)
            except sqlite3.Error as exc:
                raise DatabaseUnavailable(
                    f"stored {bucket}/{key} but could not record its event: {exc}"
                ) from exc
        return info

    def _write(self, tmp: Path, target: Path, data: bytes) -> None:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, _FILE_MODE)
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            if self._fsync:
                fh.flush()
                os.fsync(fh.fileno())
        try:
            os.replace(tmp, target)
        except FileNotFoundError:  # first object in this folder: cheaper than mkdir every time
            self._make_folder(target.parent)
            os.replace(tmp, target)
        if self._fsync:
            fsync_dir(target.parent)

    def get(self, bucket: str, key: str) -> bytes:
        """Read an object, or raise ``StoreObjectMissing``."""
        path = self.path(bucket, key)
        with storage_errors("read", bucket, key):
            try:
                return path.read_bytes()
            except (FileNotFoundError, IsADirectoryError):
                raise StoreObjectMissing(f"no object {bucket}/{key}") from None

    def head(self, bucket: str, key: str) -> ObjectInfo | None:
        """Metadata of an object (ETag computed from content), or None."""
        path = self.path(bucket, key)
        with storage_errors("read", bucket, key):
            try:
                data = path.read_bytes()
                mtime = path.stat().st_mtime
            except (FileNotFoundError, IsADirectoryError):
                return None
        return ObjectInfo(
            bucket=bucket, key=key, etag=etag_of(data), size=len(data), modified=mtime
        )

    def size(self, bucket: str, key: str) -> int | None:
        """Size in bytes from the file system, without reading the object."""
        path = self.path(bucket, key)
        with storage_errors("read", bucket, key):
            try:
                return path.stat().st_size
            except FileNotFoundError:
                return None

    def exists(self, bucket: str, key: str) -> bool:
        """True if the object exists."""
        return self.path(bucket, key).is_file()

    def list(self, bucket: str, prefix: str = "") -> list[str]:
        """Keys under ``prefix`` (a key prefix, not only a folder), sorted."""
        base = self.root / check_bucket(bucket, self.buckets)
        folder, _, _ = prefix.rpartition("/")
        start = base / folder if folder else base
        if not start.is_dir():
            return []
        keys: list[str] = []
        for dirpath, dirnames, filenames in os.walk(start):
            if Path(dirpath) == base:
                dirnames[:] = [d for d in dirnames if d != _TMP]
            rel = Path(dirpath).relative_to(base).as_posix()
            for name in filenames:
                key = name if rel == "." else f"{rel}/{name}"
                if key.startswith(prefix):
                    keys.append(key)
        return sorted(keys)

    def delete(self, bucket: str, key: str) -> None:
        """Remove an object if present (durably with ``fsync``)."""
        path = self.path(bucket, key)
        with storage_errors("delete", bucket, key):
            try:
                path.unlink()
            except FileNotFoundError:
                return
            if self._fsync:
                fsync_dir(path.parent)

    def _make_folder(self, folder: Path) -> None:
        missing: list[Path] = []
        walk = folder
        while not walk.exists() and walk != self.root:
            missing.append(walk)
            walk = walk.parent
        for created in reversed(missing):
            created.mkdir(mode=_FOLDER_MODE, exist_ok=True)
        if self._fsync:
            # Each new folder is an entry in its parent: sync them top-down, so the entry
            # of every folder on the way to the object survives a power loss.
            for created in reversed(missing):
                fsync_dir(created.parent)


@contextmanager
def storage_errors(action: str, bucket: str, key: str) -> Iterator[None]:
    """Turn an ``OSError`` of the file system into :class:`StoreUnavailable` (retryable)."""
    try:
        yield
    except OSError as exc:
        reason = errno.errorcode.get(exc.errno or 0, "EIO")
        raise StoreUnavailable(
            f"cannot {action} {bucket}/{key}: {exc.strerror or exc}",
            errno=reason,
            bucket=bucket,
        ) from exc


def fsync_dir(folder: Path) -> None:
    """fsync a directory, making the entries created, renamed or removed in it durable."""
    fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def etag_of(data: bytes) -> str:
    """Content tag of an object: the first 128 bits of its SHA-256, in hex.

    S3 uses MD5 for single-part ETags; SHA-256 is about twice as fast here (CPU SHA
    extensions) and collision-resistant, and nothing compares ETags across engines.
    """
    return hashlib.sha256(data).hexdigest()[:32]
