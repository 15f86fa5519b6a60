"""Names that must be unique in an account and region (or across all of S3), from the stack.

Two stacks side by side (staging beside prod, the B arm of an experiment) must not share
one: CloudFormation refuses the second with ``AlreadyExists``. Every named resource of the
template (functions, layers, log groups, the state machine, the workgroup) is prefixed with
the stack name, and the two names that cannot take the stack name as it is are made here:

* the Glue database: Athena accepts only lower-case letters, digits and ``_`` in it;
* the code bucket that ``deploy`` creates before the stack exists, whose name is global
  across S3, limited to 63 characters and to lower case.

Both are lower case, so two stack names that differ only in case (CloudFormation keeps
them apart) get a short hash of the exact name as well. Everything else is left to
CloudFormation, which generates unique physical names (buckets, roles, streams).
"""

from __future__ import annotations

import hashlib
import re

from radstream.lake.glue import DATABASE

BUCKET_NAME_MAX = 63
"""S3's limit on a bucket name."""
CODE_BUCKET_PART = "code"
_HASH_CHARS = 8
# Prefixes and suffixes S3 reserves, which no general-purpose bucket name may use.
_RESERVED_PREFIXES = ("xn--", "sthree-", "amzn-s3-demo-")
_BUCKET_NAME = re.compile(r"[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]")
_REGION = re.compile(r"[a-z]{2}(-[a-z]+)+-\d{1,2}")


def stack_hash(stack: str) -> str:
    """A short hash of the exact (case-sensitive) stack name."""
    return hashlib.sha256(stack.encode()).hexdigest()[:_HASH_CHARS]


def glue_database_name(stack: str) -> str:
    """The Glue database of ``stack``'s telemetry lake: ``radstream_{stack}``, lower case,
    ``-`` as ``_``, plus a hash of the name when it has upper-case letters."""
    name = f"{DATABASE}_{stack.lower().replace('-', '_')}"
    if stack != stack.lower():
        name += f"_{stack_hash(stack)}"
    return name


def is_valid_bucket_name(name: str) -> bool:
    """Whether S3 accepts ``name`` for a general-purpose bucket (the rules that can bite a
    generated name: length, characters, ends, reserved prefixes and suffixes)."""
    return (
        bool(_BUCKET_NAME.fullmatch(name))
        and ".." not in name
        and not name.startswith(_RESERVED_PREFIXES)
        and not name.endswith(("-s3alias", "--ol-s3", "--x-s3", "--table-s3", ".mrap"))
    )


def code_bucket_name(stack: str, account: str, region: str) -> str:
    """The code bucket of ``stack`` in ``account`` and ``region``: valid and unique.

    ``{stack}-code-{account}-{region}`` when that is a valid name (every short, lower-case
    stack name: the name earlier versions used). Otherwise the stack part is cut to what
    fits and followed by a hash of the exact stack name, so the account and the region are
    always there whole (two regions never collide) and the name never ends in ``-``.
    """
    if not re.fullmatch(r"\d{12}", account):
        raise ValueError(f"account {account!r} is not a 12-digit AWS account id")
    if not _REGION.fullmatch(region):
        raise ValueError(f"region {region!r} is not an AWS region name")
    tail = f"-{CODE_BUCKET_PART}-{account}-{region}"
    plain = f"{stack}{tail}"
    if stack == stack.lower() and is_valid_bucket_name(plain):
        return plain
    # The hashed form starts with "rs-", which no reserved prefix does, and keeps as much
    # of the stack name as fits for people reading the bucket list.
    hashed_tail = f"-{stack_hash(stack)}{tail}"
    room = BUCKET_NAME_MAX - len("rs-") - len(hashed_tail)
    head = re.sub(r"[^a-z0-9-]", "", stack.lower())[:room].strip("-")
    name = f"rs-{head}{hashed_tail}" if head else f"rs{hashed_tail}"
    if not is_valid_bucket_name(name):  # pragma: no cover - the construction rules it out
        raise ValueError(f"no valid code bucket name for stack {stack!r} in {region}")
    return name
