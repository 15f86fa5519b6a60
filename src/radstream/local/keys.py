"""Object-key safety: a key may never name a path outside its bucket folder."""

from __future__ import annotations

import re

from radstream.errors import StoreKeyInvalid

_SEGMENT_RE = re.compile(r"[^\x00-\x1f/\\]+")


def check_key(key: str) -> str:
    """Return ``key`` if it is a safe relative key, else raise ``StoreKeyInvalid``."""
    if not key or len(key) > 1024 or key.startswith("/"):
        raise StoreKeyInvalid(f"object key {key!r} is empty, too long or absolute")
    for segment in key.split("/"):
        if segment in ("", ".", "..") or not _SEGMENT_RE.fullmatch(segment):
            raise StoreKeyInvalid(f"object key {key!r} has an unsafe segment {segment!r}")
    return key


def check_bucket(bucket: str, known: tuple[str, ...]) -> str:
    """Return ``bucket`` if it is one of ``known``, else raise ``StoreKeyInvalid``."""
    if bucket not in known:
        raise StoreKeyInvalid(f"unknown bucket {bucket!r}; buckets are {', '.join(known)}")
    return bucket
