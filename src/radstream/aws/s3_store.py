"""The :class:`~radstream.stages.ports.ObjectStore` port on Amazon S3.

Stages name buckets by role (``images``, ``results``, ``telemetry``, ``artifacts``); the
stack's real bucket names are mapped here, so stage code is the same on both engines.
The "object created" event the folder store raises itself comes, on S3, from S3's own
EventBridge notifications.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

from botocore.exceptions import ClientError

from radstream.errors import (
    StoreAccessDenied,
    StoreConflict,
    StoreKeyInvalid,
    StoreObjectMissing,
)
from radstream.layout import check_key
from radstream.stages.ports import ObjectInfo

_MISSING = {"NoSuchKey", "404", "NotFound"}
# 412: the key exists. 409: another conditional write to it is still in flight, so there
# is nothing to read yet: that is retried (StoreConflict is transient).
_TAKEN = {"PreconditionFailed", "412"}
_DENIED = {"AccessDenied", "403", "Forbidden"}
_IN_FLIGHT = {"ConditionalRequestConflict", "409"}


def _code(exc: ClientError) -> str:
    return str(exc.response.get("Error", {}).get("Code", ""))


def _typed(exc: ClientError, bucket: str, key: str, operation: str) -> Exception:
    """A refused request as a typed error; other errors stay as they are."""
    if _code(exc) in _DENIED:
        return StoreAccessDenied(f"{operation} {bucket}/{key} was refused (403)")
    original: Exception = exc
    return original


class S3ObjectStore:
    """Objects in the stack's S3 buckets, addressed by bucket role and key."""

    def __init__(self, client: Any, buckets: Mapping[str, str]) -> None:
        self._s3 = client
        self._buckets = dict(buckets)

    def bucket_name(self, bucket: str) -> str:
        """The S3 bucket behind a role; raises ``StoreKeyInvalid`` for an unknown role."""
        try:
            return self._buckets[bucket]
        except KeyError:
            raise StoreKeyInvalid(
                f"unknown bucket {bucket!r}; buckets are {', '.join(self._buckets)}"
            ) from None

    def put(self, bucket: str, key: str, data: bytes) -> ObjectInfo:
        """Upload ``data`` in one PUT (S3 PUTs are atomic: readers see all or nothing)."""
        name = self.bucket_name(bucket)
        try:
            reply = self._s3.put_object(Bucket=name, Key=check_key(key), Body=data)
        except ClientError as exc:
            raise _typed(exc, bucket, key, "PUT") from exc
        return ObjectInfo(
            bucket=bucket,
            key=key,
            etag=str(reply.get("ETag", "")).strip('"'),
            size=len(data),
            modified=datetime.now().timestamp(),
        )

    def put_if_absent(self, bucket: str, key: str, data: bytes) -> bytes:
        """Write ``data`` only if ``key`` is absent; return what the key holds afterwards.

        A conditional PUT (``If-None-Match: *``): of several concurrent writers exactly one
        wins, and each learns who, by comparing the returned bytes with its own.
        """
        try:
            self._s3.put_object(
                Bucket=self.bucket_name(bucket), Key=check_key(key), Body=data, IfNoneMatch="*"
            )
        except ClientError as exc:
            if _code(exc) in _IN_FLIGHT:
                raise StoreConflict(f"a concurrent conditional write to {bucket}/{key}") from exc
            if _code(exc) not in _TAKEN:
                raise _typed(exc, bucket, key, "PUT") from exc
            return self.get(bucket, key)
        return data

    def get(self, bucket: str, key: str) -> bytes:
        """The object's bytes; ``StoreObjectMissing`` when it is absent."""
        try:
            reply = self._s3.get_object(Bucket=self.bucket_name(bucket), Key=check_key(key))
        except ClientError as exc:
            if _code(exc) in _MISSING:
                raise StoreObjectMissing(f"no object {bucket}/{key}") from None
            raise _typed(exc, bucket, key, "GET") from exc
        body: bytes = reply["Body"].read()
        return body

    def head(self, bucket: str, key: str) -> ObjectInfo | None:
        """The object's metadata, or None when absent."""
        try:
            reply = self._s3.head_object(Bucket=self.bucket_name(bucket), Key=check_key(key))
        except ClientError as exc:
            if _code(exc) in _MISSING:
                return None
            raise _typed(exc, bucket, key, "HEAD") from exc
        return ObjectInfo(
            bucket=bucket,
            key=key,
            etag=str(reply.get("ETag", "")).strip('"'),
            size=int(reply.get("ContentLength", 0)),
            modified=reply["LastModified"].timestamp(),
        )

    def size(self, bucket: str, key: str) -> int | None:
        """The object's size without reading it, or None when absent."""
        info = self.head(bucket, key)
        return None if info is None else info.size

    def list(self, bucket: str, prefix: str = "") -> list[str]:
        """Keys under ``prefix``, sorted (every page of ListObjectsV2)."""
        keys: list[str] = []
        paginator = self._s3.get_paginator("list_objects_v2")
        for page in paginator.paginate(Bucket=self.bucket_name(bucket), Prefix=prefix):
            keys.extend(item["Key"] for item in page.get("Contents", []))
        return sorted(keys)

    def etags(self, bucket: str, prefix: str = "") -> dict[str, str]:
        """Key → ETag of every object under ``prefix``, from the listing alone (no HEADs)."""
        found: dict[str, str] = {}
        paginator = self._s3.get_paginator("list_objects_v2")
        for page in paginator.paginate(Bucket=self.bucket_name(bucket), Prefix=prefix):
            for item in page.get("Contents", []):
                found[item["Key"]] = str(item.get("ETag", "")).strip('"')
        return found

    def delete(self, bucket: str, key: str) -> None:
        """Remove an object; S3 answers success for an absent key too."""
        try:
            self._s3.delete_object(Bucket=self.bucket_name(bucket), Key=check_key(key))
        except ClientError as exc:
            raise _typed(exc, bucket, key, "DELETE") from exc
